"""Implementation versions: what each workflow step computes, numbered.

The workflow re-runs a step's jobs when their resolved settings or this number change, never because a source file
was touched (a comment or a refactor leaves finished results alone). Bump a step's number in the same commit that
changes what it computes; for ``distill`` and ``evaluate`` the golden pins (tests/test_pins.py,
tests/golden/pins.json) fail until the number is bumped and the pins are rewritten with ``UPDATE_GOLDEN=1``.
Force a re-run without a change: ``snakemake --forcerun RULE`` (or ``--forceall``).
"""

IMPLEMENTATION: dict[str, int] = {
    "prepare": 1,    # dataset reading and the tensor cache
    "pretrain": 1,   # the class-centralisation pool
    "coreset": 1,    # Random / Herding / K-Center / Forgetting selection
    "distill": 1,    # DM / IDM with the IID constraints (also the sweeps, the convergence runs and continual's synthesis)
    "evaluate": 1,   # the evaluation protocol
    "continual": 1,  # class-incremental learning
    "figures": 1,    # t-SNE and image-grid figures
    "report": 2,     # tables, figures and the runs table (2: the runs table's cc_pool column; the hosts and pool tables)
}


def implementation_version(step: str) -> str:
    """``step``'s version as the workflow records it, e.g. ``distill-1``; an unknown step is an error."""
    if step not in IMPLEMENTATION:
        raise KeyError(f"unknown workflow step {step!r}; steps: {', '.join(IMPLEMENTATION)}")
    return f"{step}-{IMPLEMENTATION[step]}"
