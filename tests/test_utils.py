import logging
import os
import platform
import stat
import sys

import pytest

from iid_distill.utils import atomic_path, atomic_write_text, keep_freed_memory, run_with_restart


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write_text("done", target)
    assert target.read_text() == "done"


def test_atomic_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text("x", tmp_path / "f.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_run_with_restart_reraises_or_restarts_on_stale_state():
    class Stale(Exception):
        pass

    calls = []

    def run(restart):
        calls.append(restart)
        if not restart:
            raise Stale("saved for other settings")
        return "fresh"

    # read the warning at its logger: where it is printed depends on whether a CLI test configured logging before
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("iid_distill.utils")
    logger.addHandler(handler)
    try:
        with pytest.raises(Stale):
            run_with_restart(run, restart=False, restart_if_stale=False, stale=Stale, what="checkpoint")
        assert run_with_restart(run, restart=False, restart_if_stale=True, stale=Stale, what="checkpoint") == "fresh"
    finally:
        logger.removeHandler(handler)
    assert calls == [False, False, True]
    assert [record.getMessage() for record in records] == ["discarding checkpoint that does not fit this run (saved for other settings)"]


def test_keep_freed_memory_applies_to_cpu_work_only():
    assert keep_freed_memory("cuda") is False and keep_freed_memory("cuda:1") is False  # no CUDA needed: nothing is set
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory("cpu") is on_glibc and keep_freed_memory() is on_glibc  # idempotent
