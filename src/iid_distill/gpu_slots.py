"""One GPU per workflow job: a device allocator built on file locks.

Snakemake's ``resources: gpu=1`` only counts how many GPU jobs run at once; it does not say which device each job
may use, so two concurrent jobs on a 2-GPU machine would both land on ``cuda:0``. The wrapper

    python -m iid_distill.gpu_slots [--slots-dir DIR] [--timeout S] -- iid-distill distill ...

takes an exclusive ``fcntl.flock`` on a free device's lock file ``<slots dir>/<host>/gpu-<id>.lock``, sets
``CUDA_VISIBLE_DEVICES=<id>`` (and ``IID_DISTILL_GPU_SLOT=<id>``) and then *replaces itself* with the command
(``exec``): the locked file descriptor is inherited, so the lock lives exactly as long as the command's process and
the kernel releases it when that process exits or is killed (SIGKILL included); no wrapper process is left to clean
up. The command sees its device as ``cuda:0``, so it should run with ``--device auto`` or ``--device cuda``.

The slots dir is machine-wide by default (``$TMPDIR/iid-distill-gpu-slots``, or ``IID_DISTILL_GPU_SLOTS_DIR``), so
two checkouts, or DVC's temporary experiment copies, on one machine never take the same GPU. Lock files are per
host, so a slots dir on a shared file system never makes jobs on different nodes wait for each other.

Under a scheduler that assigns devices itself (a Slurm job: ``SLURM_JOB_ID`` is set) the allocator steps aside when
the job sees one device or none: that device is the job's own, and with cgroup device limits every job sees its GPU
as ``0``, so locking by that name would make jobs on different GPUs wait for each other. A Slurm job that sees
several devices (a whole Snakemake run inside one allocation) locks among them in a folder of its own job id.

With no GPU the command runs on the CPU: no lock is taken and ``CUDA_VISIBLE_DEVICES`` is set to the empty string
(so ``--device auto`` resolves to the CPU) and ``IID_DISTILL_GPU_SLOT=cpu``. With ``--require-gpu`` (the workflow's
GPU jobs) the wrapper fails with one line instead, so a CPU-only torch or a node without a GPU is never a silent CPU run. When every device is busy the wrapper
waits (polling) until one is free, or fails after ``--timeout`` seconds.

Devices: ``torch.cuda.device_count()``, named by their ``CUDA_VISIBLE_DEVICES`` entries when that variable is set.
``IID_DISTILL_FAKE_GPU_COUNT=N`` replaces the count (tests, or to cap the devices used). This module imports torch
only to count real devices.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from iid_distill.utils import UserError

SLOTS_DIR_ENV = "IID_DISTILL_GPU_SLOTS_DIR"
FAKE_COUNT_ENV = "IID_DISTILL_FAKE_GPU_COUNT"
SCHEDULER_JOB_ENV = "SLURM_JOB_ID"
SLOT_ENV = "IID_DISTILL_GPU_SLOT"
CPU_SLOT = "cpu"
EXIT_TIMEOUT = 75  # EX_TEMPFAIL: no device became free in time
EXIT_NOT_FOUND = 127  # the command could not be started, as in a shell


class GpuSlotError(UserError):
    """Bad wrapper arguments or an unusable slots directory."""


class GpuSlotTimeout(GpuSlotError):
    """No device became free within the timeout."""


@dataclass
class GpuSlot:
    """A held device (``device`` is its CUDA_VISIBLE_DEVICES entry) or the CPU (``device`` None, no lock)."""

    device: str | None
    lock_fd: int | None = None
    scheduler: bool = False  # the scheduler assigned the device: leave CUDA_VISIBLE_DEVICES as it is

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` with the job's device made the only visible one (none at all on the CPU)."""
        env = dict(environ)
        if self.scheduler:
            env[SLOT_ENV] = f"slurm:{self.device}" if self.device is not None else CPU_SLOT
            return env
        env["CUDA_VISIBLE_DEVICES"] = self.device if self.device is not None else ""
        env[SLOT_ENV] = self.device if self.device is not None else CPU_SLOT
        return env

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the last descriptor of the open file drops the flock
            self.lock_fd = None


def visible_devices(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The devices a job may be given, as CUDA_VISIBLE_DEVICES entries (``[]``: CPU only)."""
    fake = environ.get(FAKE_COUNT_ENV)
    if fake is not None:
        if not fake.strip().isdigit():
            raise GpuSlotError(f"{FAKE_COUNT_ENV}={fake!r}: expected a non-negative integer")
        count = int(fake)
    else:
        import torch  # only here: the fake count (tests) needs no torch import

        count = torch.cuda.device_count()
    listed = [entry.strip() for entry in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    if "CUDA_VISIBLE_DEVICES" in environ and fake is None:
        return listed[:count]
    return [str(index) for index in range(count)]


def default_slots_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Machine-wide: ``IID_DISTILL_GPU_SLOTS_DIR``, else ``<temp dir>/iid-distill-gpu-slots``."""
    return Path(environ.get(SLOTS_DIR_ENV) or Path(tempfile.gettempdir()) / "iid-distill-gpu-slots")


def scheduler_job(environ: Mapping[str, str] = os.environ) -> str | None:
    """The id of the scheduler job this process runs in (Slurm), or None outside one."""
    return environ.get(SCHEDULER_JOB_ENV) or None


def lock_path(slots_dir: str | os.PathLike, device: str, host: str | None = None) -> Path:
    """``<slots dir>/<host>/gpu-<device>.lock`` (device ids such as GPU UUIDs are kept as file-name-safe text)."""
    safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in device)
    return Path(slots_dir) / (host or socket.gethostname()) / f"gpu-{safe}.lock"


def try_acquire(slots_dir: str | os.PathLike, devices: Sequence[str]) -> GpuSlot | None:
    """Lock the first free device of ``devices`` without waiting; None when all are held."""
    for device in devices:
        path = lock_path(slots_dir, device)
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except OSError as error:  # ENOLCK, ENOSYS, EOPNOTSUPP: a file system without flock (some network mounts)
            os.close(fd)
            raise GpuSlotError(f"cannot lock {path}: the file system does not support file locks ({error.strerror}); "
                               f"pass --slots-dir on a local file system (or set {SLOTS_DIR_ENV})") from None
        return GpuSlot(device, fd)
    return None


def _open_lock_file(path: Path) -> int:
    """Open (creating) a lock file that every user of the machine can lock: folders 1777, files 0666."""
    try:
        for folder in (path.parent.parent, path.parent):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                _chmod_quietly(folder, 0o1777)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY)  # another user's lock file: a read-only descriptor can hold a flock too
        except OSError as error:
            raise GpuSlotError(f"cannot open GPU lock file {path}: {error.strerror}; pass --slots-dir DIR") from None
        return fd
    except OSError as error:
        raise GpuSlotError(f"cannot create GPU lock file {path}: {error.strerror}; pass --slots-dir DIR") from None
    _chmod_quietly(path, 0o666)
    return fd


def _chmod_quietly(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EACCES):  # another user's folder or file: theirs to set
            raise


def acquire(slots_dir: str | os.PathLike, devices: Sequence[str], timeout: float | None = None, poll_s: float = 0.5) -> GpuSlot:
    """A free device of ``devices`` (waiting until one is free, at most ``timeout`` seconds), or the CPU if none exist."""
    if not devices:
        return GpuSlot(None)
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        slot = try_acquire(slots_dir, devices)
        if slot is not None:
            return slot
        if deadline is not None and time.monotonic() >= deadline:
            raise GpuSlotTimeout(f"no free GPU among {', '.join(devices)} within {timeout:g} s (held: see {Path(slots_dir) / socket.gethostname()})")
        if not announced:
            print(f"gpu_slots: all {len(devices)} GPU(s) busy, waiting for a free one", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_s)


def record_holder(slot: GpuSlot, command: Sequence[str]) -> None:
    """Write who holds the device into its lock file (diagnostics only: the flock, not the text, is the lock)."""
    if slot.lock_fd is None:
        return
    text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n"
    try:
        os.ftruncate(slot.lock_fd, 0)
        os.pwrite(slot.lock_fd, text.encode(), 0)
    except OSError:
        pass  # a read-only descriptor (another user's lock file): the lock holds, the note is skipped


def choose_slot(slots_dir: str | os.PathLike | None, timeout: float | None, environ: Mapping[str, str] = os.environ) -> GpuSlot:
    """The device this job runs on: the scheduler's when it assigned one, else a locked free one, else the CPU."""
    devices = visible_devices(environ)
    job = scheduler_job(environ)
    if job is not None and len(devices) <= 1:
        return GpuSlot(devices[0] if devices else None, scheduler=True)
    root = Path(slots_dir) if slots_dir is not None else default_slots_dir(environ)
    if job is not None:
        root = root / f"slurm-job-{job}"  # several devices inside one allocation: theirs alone, named as the job sees them
    return acquire(root, devices, timeout)


def run_with_slot(command: Sequence[str], slots_dir: str | os.PathLike | None = None, timeout: float | None = None,
                  require_gpu: bool = False) -> int:
    """Acquire a device and ``exec`` ``command`` on it; returns only if the command cannot be started."""
    slot = choose_slot(slots_dir, timeout)
    if require_gpu and slot.device is None:
        raise GpuSlotError(no_gpu_message())
    record_holder(slot, command)
    if slot.lock_fd is not None:
        os.set_inheritable(slot.lock_fd, True)  # the command inherits the lock and holds it until it exits
    env = slot.environment(os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), env)
    except OSError as error:
        slot.release()
        print(f"gpu_slots: error: cannot run {command[0]!r}: {error.strerror}", file=sys.stderr)
        return EXIT_NOT_FOUND
    raise AssertionError("unreachable: exec returned")  # pragma: no cover


def no_gpu_message() -> str:
    """Why a GPU job found no device, and how to run on the CPU instead."""
    import torch

    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    return (f"this GPU job finds no CUDA device ({build}{seen}); to run the workflow on the CPU, set device: cpu "
            "(snakemake --config device=cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m iid_distill.gpu_slots",
        description="Run a command on a free GPU (CUDA_VISIBLE_DEVICES set to it), or on the CPU when there is none.",
    )
    parser.add_argument("--slots-dir", default=None,
                        help=f"lock files go under DIR/<host>/ (default: ${SLOTS_DIR_ENV}, else <temp dir>/iid-distill-gpu-slots, machine-wide)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds with no free GPU (default: wait)")
    parser.add_argument("--require-gpu", action="store_true", help="fail when there is no GPU, instead of running on the CPU")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if not command:
            raise GpuSlotError("no command given; usage: python -m iid_distill.gpu_slots -- COMMAND [ARGS...]")
        return run_with_slot(command, args.slots_dir, args.timeout, require_gpu=args.require_gpu)
    except GpuSlotError as error:
        print(f"gpu_slots: error: {error}", file=sys.stderr)
        return EXIT_TIMEOUT if isinstance(error, GpuSlotTimeout) else 2


if __name__ == "__main__":
    sys.exit(main())
