"""Import torchvision safely when its compiled ops do not match the installed torch.

With the CPU build of torch, torchvision's C++ extension fails to load, and its Python side then aborts at
import with ``RuntimeError: operator torchvision::nms does not exist`` (it registers fake kernels for ops whose
schemas only the extension defines). We define those two schemas ourselves, but only after exactly that error:
doing it unconditionally would clash with a working extension (e.g. on a CUDA build).
"""

from __future__ import annotations

import sys
import types

import torch

_MISSING_OP_ERROR = "operator torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fallback_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the schemas


def _forget_partial_import() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> types.ModuleType:
    """Return the ``torchvision`` module, registering the missing op schemas only if its import needs them."""
    global _fallback_library
    try:
        import torchvision
    except RuntimeError as error:
        if _MISSING_OP_ERROR not in str(error):
            raise
        _forget_partial_import()
        _fallback_library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _fallback_library.define(schema)
        import torchvision
    return torchvision
