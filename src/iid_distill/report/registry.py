"""The report's outputs, declared once: each table and figure is one :class:`ReportOutput` entry.

``render.render_report_files`` renders every entry; the workflow (``iid_distill.plan`` -> ``common.smk``) lists the
files of the entries its config enables as the report rule's outputs; ``dvc.yaml`` is checked against the entries by a
test (``tests/test_report_registry.py``). A new table is one :func:`register_report_output` call with its renderer,
plus its golden file and caption (``workflow/report/<stem>.rst``): docs/new_table_or_figure.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from iid_distill.report.cells import render_table1, render_table2, render_table6
from iid_distill.report.grids import render_table3, render_table4, render_table5, render_table7
from iid_distill.report.hosts import render_hosts_table
from iid_distill.report.pools import render_pool_table

KINDS = {
    "table": ("md", "tex"),  # rendered by the report from a RenderedTable
    "figure": ("png", "pdf", "csv"),  # drawn by the report, with the points it draws (DVC plots read the .csv)
    "set_figure": ("png", "pdf"),  # drawn from the synthetic sets by its own workflow rule (t-SNE, image grids)
}
LAMBDA_PARAMETERS = ("lambda_cc", "lambda_cm")  # the sweeps Figure 4 draws


@dataclass(frozen=True)
class ReportInputs:
    """Everything a renderer may read, parsed once by the report."""

    runs: pd.DataFrame  # the default evaluation protocol's runs
    paper: Mapping[str, Any]
    data_labels: Mapping[str, str]
    sweeps: pd.DataFrame
    convergence: pd.DataFrame | None
    continual: pd.DataFrame | None
    cross_arch_dataset: str
    compression_dataset: str
    compression_ipcs: Sequence[int]
    compression_wanted: bool
    ablation_datasets: Sequence[str]
    all_runs: pd.DataFrame  # every protocol's: Tables 1 and 2 show the others in rows of their own


@dataclass(frozen=True)
class ReportOutput:
    """One table or figure. ``render(inputs)``: a table's RenderedTable, or a figure's (Figure, points) or None where
    its input is absent (set figures: None, their rule draws them). ``in_workflow(config)``: whether the workflow's
    merged config builds it."""

    stem: str
    kind: str
    render: Callable[[ReportInputs], Any] | None
    in_workflow: Callable[[Mapping[str, Any]], bool]

    def files(self) -> list[str]:
        return [f"{self.stem}.{suffix}" for suffix in KINDS[self.kind]]


REPORT_OUTPUTS: dict[str, ReportOutput] = {}


def register_report_output(output: ReportOutput) -> ReportOutput:
    if output.kind not in KINDS:
        raise ValueError(f"report output {output.stem!r}: kind {output.kind!r} is not one of {', '.join(KINDS)}")
    if output.stem in REPORT_OUTPUTS:
        raise ValueError(f"report output {output.stem!r} is already registered")
    REPORT_OUTPUTS[output.stem] = output
    return output


def report_outputs(kind: str) -> list[ReportOutput]:
    return [output for output in REPORT_OUTPUTS.values() if output.kind == kind]


def _always(config: Mapping[str, Any]) -> bool:
    return True


def _when(plan_function: str, *args: Any) -> Callable[[Mapping[str, Any]], bool]:
    """A workflow predicate from an iid_distill.plan function (imported when asked: plan reads this registry)."""
    def predicate(config: Mapping[str, Any]) -> bool:
        from iid_distill import plan

        return bool(getattr(plan, plan_function)(config, *args))

    return predicate


def _lambda_sweeps(config: Mapping[str, Any]) -> bool:
    from iid_distill import plan

    return any(sweep["parameter"] in LAMBDA_PARAMETERS for sweep in plan.enabled_sweeps(config).values())


def _figure_block(name: str) -> Callable[[Mapping[str, Any]], bool]:
    def predicate(config: Mapping[str, Any]) -> bool:
        from iid_distill import plan

        return plan.is_enabled(config["figures"].get(name))

    return predicate


# ------------------------------------------------------------------------------------------ the figures' drawers


def _figure4(inputs: ReportInputs):
    from iid_distill.report import plots  # matplotlib only when figures are drawn

    lambdas = inputs.sweeps.loc[inputs.sweeps["parameter"].isin(LAMBDA_PARAMETERS)].reset_index(drop=True)
    if not len(lambdas):
        return None
    return plots.plot_sweeps(lambdas, inputs.paper, data_labels=inputs.data_labels), plots.sweep_curves(lambdas)


def _figure5(inputs: ReportInputs):
    from iid_distill.report import plots

    if inputs.convergence is None:
        return None
    conv = inputs.convergence
    return plots.plot_convergence(conv, inputs.paper, data_labels=inputs.data_labels), plots.convergence_curves(conv)


def _figure6(inputs: ReportInputs):
    from iid_distill.report import plots

    if not inputs.compression_wanted:
        return None
    dataset, ipcs = inputs.compression_dataset, list(inputs.compression_ipcs)
    fig = plots.plot_compression(inputs.runs, inputs.paper, dataset, ipcs, data_labels=inputs.data_labels)
    return fig, plots.compression_curves(inputs.runs, dataset, ipcs)


def _figure7(inputs: ReportInputs):
    from iid_distill.report import plots

    if inputs.continual is None:
        return None
    return plots.plot_continual(inputs.continual, data_labels=inputs.data_labels), plots.continual_curves(inputs.continual)


for _output in (
    ReportOutput("table1", "table", lambda i: render_table1(i.all_runs, i.paper, i.data_labels), _always),
    ReportOutput("table2", "table", lambda i: render_table2(i.all_runs, i.paper, i.data_labels), _always),
    ReportOutput("table3", "table", lambda i: render_table3(i.runs, i.paper, i.cross_arch_dataset, i.data_labels), _always),
    ReportOutput("table4", "table", lambda i: render_table4(i.runs, i.paper, i.cross_arch_dataset, i.data_labels), _always),
    ReportOutput("table5", "table", lambda i: render_table5(i.sweeps, i.paper, i.data_labels), _always),
    ReportOutput("table6", "table", lambda i: render_table6(i.runs, i.paper, i.data_labels, datasets=i.ablation_datasets), _always),
    ReportOutput("table7", "table", lambda i: render_table7(i.runs, i.paper, i.compression_dataset, i.compression_ipcs, i.data_labels),
                 _always),
    ReportOutput("table_hosts", "table", lambda i: render_hosts_table(i.runs, i.data_labels), _when("grid_enabled", "hosts")),
    ReportOutput("table_pools", "table", lambda i: render_pool_table(i.runs, i.data_labels), _always),
    ReportOutput("figure1_tsne", "set_figure", None, _figure_block("tsne")),
    ReportOutput("figure3_tsne_sweep", "set_figure", None, _figure_block("tsne_sweep")),
    ReportOutput("figure4_lambda", "figure", _figure4, _lambda_sweeps),
    ReportOutput("figure5_convergence", "figure", _figure5, _when("convergence_cells")),
    ReportOutput("figure6_compression", "figure", _figure6, _when("grid_enabled", "high_ipc")),
    ReportOutput("figure7_continual", "figure", _figure7, _when("continual_cells")),
    ReportOutput("figure8_images", "set_figure", None, _figure_block("image_grids")),
):
    register_report_output(_output)
