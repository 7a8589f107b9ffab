"""iid-distill: IID (CVPR 2024) dataset distillation, with DM, IDM and the classic coreset baselines."""

__version__ = "0.1.0"
