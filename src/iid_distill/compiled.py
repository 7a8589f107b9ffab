"""``torch.compile`` where it pays: the distiller's network passes in long CPU runs, with an eager fallback.

Inductor fuses what eager PyTorch runs as separate memory passes (GroupNorm, ReLU, average pooling, their backward)
around oneDNN's convolutions. Measured in situ on 2 AMD EPYC Zen 4 cores, CIFAR-10 IPC 10 (reports/benchmarks.md):
DM 2.94 -> 2.17 s per iteration, IDM+IID 21.7 -> 18.3 s (bf16: 14.3 -> 9.8 s), DM+IID unchanged within noise. The
evaluation's training step is NOT compiled: there it was slower (0.49 against 0.35 s per epoch at IPC 10). Compiling
costs 5-90 s per process (measured; less once torch's on-disk cache holds the graphs), so ``auto`` compiles only long runs.

Compiled kernels compute the same arithmetic in another order: results equal the eager ones to float32 rounding
(tests/test_compiled.py), like two machines running the same code. The mode is part of a run's settings and records.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

__all__ = ["COMPILE_MODES", "Compiled", "compile_wanted", "valid_compile_mode"]

COMPILE_MODES = ("auto", True, False)

log = logging.getLogger(__name__)


def compile_wanted(mode: str | bool, device: torch.device, work: float, auto_threshold: float) -> bool:
    """Whether to compile: ``True`` always, ``False`` never, ``auto`` on the CPU when ``work`` reaches ``auto_threshold``.

    ``auto`` leaves CUDA eager: the compiled CUDA path has not been measured against eager yet.
    """
    if not valid_compile_mode(mode):
        raise ValueError(f"compile = {mode!r}: expected auto, true or false")
    if mode == "auto":
        return device.type == "cpu" and work >= auto_threshold
    return mode


def valid_compile_mode(mode: object) -> bool:
    return any(mode is choice or (type(mode) is type(choice) and mode == choice) for choice in COMPILE_MODES)


class Compiled:
    """``function`` compiled on first use, or ``function`` itself when ``enabled`` is false.

    If compiling fails (no C++ compiler, an operator inductor cannot lower), the failure is logged once and this
    wrapper runs ``function`` eagerly from then on; an error after a successful compiled call propagates.
    """

    def __init__(self, function: Callable[..., Any], enabled: bool, name: str) -> None:
        self.function, self.name = function, name
        self._compiled = torch.compile(function) if enabled else None
        self._proven = False

    @property
    def active(self) -> bool:
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.function(*args, **kwargs)
        if self._proven:
            return self._compiled(*args, **kwargs)
        try:
            result = self._compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 -- any compile failure falls back to the same eager function
            log.warning("torch.compile of %s failed (%s: %s); running it eagerly", self.name, type(error).__name__, str(error).splitlines()[0][:200])
            self._compiled = None
            return self.function(*args, **kwargs)
        self._proven = True
        return result
