"""Messages of the package on stderr, for the command line: ``-v`` debug, default info, ``-q`` warnings only."""

from __future__ import annotations

import logging
import os
import sys

from .utils import NO_PROGRESS_ENV


class _StderrHandler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (a StreamHandler keeps the stream it was made with)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: bool, quiet: bool) -> None:
    """Messages of the package on stderr (progress bars stay tqdm's); -q also turns the progress bars off."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger = logging.getLogger("iid_distill")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("iid-distill: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    if quiet:
        os.environ[NO_PROGRESS_ENV] = "1"
