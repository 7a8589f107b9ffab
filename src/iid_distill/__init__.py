"""iid-distill: IID (CVPR 2024) dataset distillation, with DM, IDM and the classic coreset baselines.

The library face (imported on first use, so ``import iid_distill`` stays light)::

    from iid_distill import load_dataset, distill_dataset, evaluate_set, load_synthetic_set
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "iid_distill.data",
    "load_synthetic_set": "iid_distill.synthetic",
    "save_synthetic_set": "iid_distill.synthetic",
    "distill_dataset": "iid_distill.api",
    "evaluate_set": "iid_distill.api",
    "DistillResult": "iid_distill.api",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'iid_distill' has no attribute {name!r}")
