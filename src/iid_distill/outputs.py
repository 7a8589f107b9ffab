"""The one guard every writing command goes through: finished files are never replaced without ``--force``.

:func:`guard_outputs` takes every file a run will write and every file it reads. Before any work it refuses two
outputs that are one file, an output that is an input, an existing output (unless ``force``) and a location that
cannot be written; it then holds an exclusive lock per output for the whole run, so a second writer of the same
file fails at once instead of replacing the first one's result when both finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .utils import UserError

PathLike = str | os.PathLike


class OutputError(UserError):
    """An output that would destroy a finished file, an input, or another run's result."""


def _same_file(first: Path, second: Path) -> bool:
    if first.resolve() == second.resolve():
        return True
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def check_outputs(outputs: Sequence[PathLike], inputs: Iterable[PathLike] = (), *, force: bool = False) -> list[Path]:
    """The checks of :func:`guard_outputs` without the lock; returns the outputs as paths."""
    paths = [Path(path) for path in outputs]
    for index, path in enumerate(paths):
        for other in paths[:index]:
            if _same_file(path, other):
                raise OutputError(f"{path}: the run would write two of its outputs to this one file ({other}); choose another --out")
    for source in (Path(path) for path in inputs):
        for path in paths:
            if _same_file(path, source):
                raise OutputError(f"{path}: this output is also an input of the run; choose another --out")
    for path in paths:
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; choose a file name for the output")
        if path.exists() and not force:
            raise OutputError(f"{path} exists (a finished result); pass --force to replace it, or choose another --out")
        _check_writable(path)
    return paths


def _check_writable(path: Path) -> None:
    """The folder the file goes in exists (or can be made) and can be written: found before the work, not after it."""
    folder = path.parent
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), Path("."))
    if not existing.is_dir():
        raise OutputError(f"cannot write {path} ({existing} is not a folder); choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path} ({existing} is not writable); choose a writable location")


def lock_path(path: PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (through a hidden ``.<name>.lock`` beside it) until the block ends."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock, "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputError(f"{path}: another run is writing this file now; wait for it to finish or choose another --out") from None
        try:
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(lock)):
                break  # the lock file is still the one in the folder, not one its former holder just removed
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        handle.close()


@contextlib.contextmanager
def guard_outputs(outputs: Sequence[PathLike], inputs: Iterable[PathLike] = (), *, force: bool = False) -> Iterator[list[Path]]:
    """Lock every output, then check them (:func:`check_outputs`), run the block; yields the outputs as paths.

    Locking first closes the window in which two runs both see a missing file and both write it.
    """
    inputs = list(inputs)
    check_outputs(outputs, inputs, force=force)  # before the locks, so none is made in a folder that cannot be written
    with contextlib.ExitStack() as stack:
        given = {}  # one lock per file, named as the user gave it
        for path in outputs:
            given.setdefault(Path(path).resolve(), Path(path))
        for resolved in sorted(given):
            stack.enter_context(output_lock(given[resolved]))
        yield check_outputs(outputs, inputs, force=force)
