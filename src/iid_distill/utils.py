"""Small helpers shared by every module: atomic writes, hashing, provenance, device choice."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import torch


class UserError(Exception):
    """A problem with the user's input (a file, a key, a flag): printed as one line by the CLI, no traceback."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing half-written is ever visible under the final name. A location that cannot be written, or a full disk,
    is a one-line ``UserError`` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror or error}); choose a writable location") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT) and error.filename not in (None, str(tmp_path), str(path)):
            raise  # an error about another file (an input read inside the block) keeps its own message
        raise write_error(path, tmp_path, error.strerror or str(error)) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_error(path: Path, tmp_path: Path, reason: str) -> UserError:
    """The one-line error for a failed write, with the space left on the filesystem (a full disk is the usual cause)."""
    written = tmp_path.stat().st_size if tmp_path.exists() else 0
    free = shutil.disk_usage(path.parent).free
    advice = "the disk is full: free some space and retry" if free < max(64 << 20, written) else "check the location"
    return UserError(f"cannot write {path} ({reason}) after {written / 2**20:.1f} MB; {free / 2**20:.0f} MB free there; {advice}")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically; the same object gives the same bytes (serialised in memory: torch names
    the zip's root folder after the file it writes, and the temporary name is random)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def portable_path(path: str | os.PathLike) -> str:
    """A path for provenance that names no machine: as given when relative, else relative to the working folder."""
    return Path(path).as_posix() if not Path(path).is_absolute() else Path(os.path.relpath(path)).as_posix()


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def load_torch_file(path: str | os.PathLike, error: type[Exception], problem: str, hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure becomes one ``error`` line:
    ``<path>: <problem> (<reason>)[; <hint>]``."""
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on files it then refuses: the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as cause:  # noqa: BLE001 - any unpickling or I/O failure means the file cannot be used
        raise error(f"{path}: {problem} ({load_failure_reason(cause, path)})" + (f"; {hint}" if hint else "")) from None


def load_failure_reason(cause: BaseException, path: str | os.PathLike) -> str:
    """What went wrong reading a torch file, in words; never torch's advice to retry with weights_only=False."""
    text = str(cause).strip()
    if "Weights only load failed" in text:
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
        what = " ".join(detail.group(1).split())[:160] if detail else "unsupported content"
        return (f"it holds objects other than tensors and plain data, refused unread: {what}; "
                "only files written by iid-distill load, and an untrusted file must never be opened with weights_only=False")
    if isinstance(cause, OSError) and cause.filename is not None:
        return cause.strerror or type(cause).__name__  # permissions, a folder, ...
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        return error.strerror or type(error).__name__
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "its zip archive is damaged or cut short (an interrupted copy?)"
    if "legacy .tar format" in text or head[:1] != b"\x80":
        return "not a torch file: neither a torch zip archive nor a pickle"
    return (text.splitlines() or [type(cause).__name__])[0][:200]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tensor(tensor: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and bytes (contiguous, on CPU)."""
    import torch

    tensor = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """Short stable hash of a parameter dictionary (key order does not matter)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_sha(default: str = "unknown") -> str:
    """Commit of the source tree this package runs from (``+dirty`` if modified), or ``default`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return default
    return sha + ("+dirty" if dirty else "")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16")  # fp32: exact; bf16: autocast of the network passes (the fast mode)


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast of the network passes (the fast mode; callers take their losses in fp32), or nothing for fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_ALLOCATOR_CONFIGURED = False


def keep_freed_memory(device: torch.device | str = "cpu") -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel (once per process),
    for work on ``device``: a no-op (False) for any device but the CPU. Every CPU training or distillation entry calls it.

    By default every block over a (dynamic, at most 32 MB) threshold is a fresh ``mmap`` that the kernel page-faults
    in and that ``free`` unmaps again: with tens of such activation tensors per distillation iteration that was
    1.9 million minor faults and ~4 s of system time per DM iteration on a 2-core CPU (reports/benchmarks.md). With
    mmap off and trimming off, the heap grows to the run's peak once and is reused: a few faults per iteration. The
    heap can fragment, so keep large transient buffers bounded: a 2048-image test pass peaked at 4.1 GB with this
    setting, 2.6 GB without (see ``evaluate.CPU_TEST_BATCH``). A no-op (False) where the C library is not glibc.
    """
    global _ALLOCATOR_CONFIGURED
    import torch

    if torch.device(device).type != "cpu":
        return False
    if _ALLOCATOR_CONFIGURED:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    _ALLOCATOR_CONFIGURED = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    return _ALLOCATOR_CONFIGURED


def cpu_model() -> str:
    """The CPU's model name and its vector extensions that matter for speed, e.g. ``AMD EPYC (avx2, avx512f, avx512_bf16)``."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name} ({', '.join(wanted) or 'no avx2'})"


def device_description(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


NO_PROGRESS_ENV = "IID_DISTILL_NO_PROGRESS"
LOG_PROGRESS_INTERVAL_S = 30.0


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar, off when ``enabled`` is false or IID_DISTILL_NO_PROGRESS is set; into a log file (stderr not a
    terminal) it updates every 30 s instead of ~10 times a second, so workflow logs stay small."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_PROGRESS_INTERVAL_S)
    return tqdm(iterable, disable=not enabled or bool(os.environ.get(NO_PROGRESS_ENV)), **kwargs)


def json_round_trip(value: Any) -> Any:
    """JSON-normalised copy (tuples -> lists, other objects -> str), so settings compare equal after a save/load."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_with_restart(run: Callable[..., Any], *, restart: bool, restart_if_stale: bool, stale: type[Exception], what: str) -> Any:
    """``run(restart=restart)``; on a ``stale`` error (saved state of other settings) re-raise it, or with
    ``restart_if_stale`` say so on stderr and start afresh: the workflow re-runs a job only when its settings or inputs
    changed, so its old state is stale, not resumable."""
    try:
        return run(restart=restart)
    except stale as error:
        if not restart_if_stale:
            raise
        logging.getLogger(__name__).warning("discarding %s that does not fit this run (%s)", what, error)
        return run(restart=True)
