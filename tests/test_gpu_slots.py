"""The GPU slot allocator: concurrent real processes, a fake device count, exec semantics, release on SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iid_distill import gpu_slots

SRC = Path(__file__).resolve().parents[1] / "src"

# A job that records which device it got, claims that device with an O_EXCL marker for its whole run (a second
# holder of the same device at the same time fails to create the marker) and keeps it until the file `release`
# exists (no wall-clock assumption: the test decides when the device may go).
HOLDER = r"""
import json, os, sys, time
log_dir, name, release = sys.argv[1], sys.argv[2], sys.argv[3]
device = os.environ["CUDA_VISIBLE_DEVICES"]
marker = os.path.join(log_dir, f"busy-{device}")
try:
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    clash = False
except FileExistsError:
    clash = True
print("started", flush=True)
while not os.path.exists(release):
    time.sleep(0.05)
if not clash:
    os.close(fd)
    os.unlink(marker)
with open(os.path.join(log_dir, f"{name}.json"), "w") as handle:
    json.dump({"device": device, "slot": os.environ["IID_DISTILL_GPU_SLOT"], "clash": clash, "pid": os.getpid()}, handle)
"""


def wrapper_env(fake_count: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if fake_count is not None:
        env[gpu_slots.FAKE_COUNT_ENV] = str(fake_count)
    return env


def start_wrapped(slots_dir: Path, command: list[str], fake_count: int | None, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "iid_distill.gpu_slots", "--slots-dir", str(slots_dir), *extra, "--", *command],
        env=wrapper_env(fake_count),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_holders_never_share_a_device(tmp_path):
    slots, logs = tmp_path / "slots", tmp_path / "logs"
    logs.mkdir()
    release_first, release_late = tmp_path / "release-first", tmp_path / "release-late"
    release_late.touch()

    def holder(name: str, release: Path) -> subprocess.Popen:
        return start_wrapped(slots, [sys.executable, "-c", HOLDER, str(logs), name, str(release)], 2)

    first = [holder("job0", release_first), holder("job1", release_first)]
    for process in first:
        assert process.stdout.readline().strip() == "started"  # both devices are held from here on
    late = [holder("job2", release_late), holder("job3", release_late)]
    # the late jobs must report that they wait for a device, however long they take to start on a busy machine
    waited = [next((line for line in iter(process.stderr.readline, "") if "busy, waiting" in line), "") for process in late]
    release_first.touch()
    errors = [process.communicate(timeout=600)[1] for process in first + late]
    assert [process.returncode for process in first + late] == [0, 0, 0, 0], errors
    assert all("busy, waiting" in line for line in waited), waited
    results = [json.loads((logs / f"job{index}.json").read_text()) for index in range(4)]
    assert not any(result["clash"] for result in results), results
    assert {results[0]["device"], results[1]["device"]} == {"0", "1"}
    assert {results[2]["device"], results[3]["device"]} <= {"0", "1"}
    assert all(result["slot"] == result["device"] for result in results)
    # exec: the process started by Popen is the job itself, so the lock is held by the job's own pid
    assert [result["pid"] for result in results] == [process.pid for process in first + late]
    assert sorted(path.name for path in (slots / os.uname().nodename).iterdir()) == ["gpu-0.lock", "gpu-1.lock"]


def test_no_device_runs_on_cpu_without_locks(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    script = "import json, os, sys; json.dump({k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'IID_DISTILL_GPU_SLOT')}, open(sys.argv[1], 'w'))"
    holder = start_wrapped(tmp_path / "slots", [sys.executable, "-c", script, str(logs / "env.json")], 0)
    _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert json.loads((logs / "env.json").read_text()) == {"CUDA_VISIBLE_DEVICES": "", "IID_DISTILL_GPU_SLOT": "cpu"}
    assert not (tmp_path / "slots").exists()


def test_killed_job_frees_its_device_and_exit_codes_pass_through(tmp_path):
    slots = tmp_path / "slots"
    sleeper = start_wrapped(slots, [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"], 1)
    assert sleeper.stdout.readline().strip() == "started"  # the device is held now
    lock_text = gpu_slots.lock_path(slots, "0").read_text()
    assert f"pid {sleeper.pid} " in lock_text
    waiter = start_wrapped(slots, [sys.executable, "-c", "pass"], 1, "--timeout", "0.5")
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == gpu_slots.EXIT_TIMEOUT and "no free GPU among 0 within 0.5 s" in err
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait(timeout=30)
    started = time.monotonic()
    follower = start_wrapped(slots, [sys.executable, "-c", "raise SystemExit(3)"], 1, "--timeout", "30")
    follower.communicate(timeout=60)
    assert follower.returncode == 3  # got the device (no timeout) and the command's own exit code came back
    assert time.monotonic() - started < 25


def test_visible_devices_and_usage_errors(tmp_path):
    assert gpu_slots.visible_devices({gpu_slots.FAKE_COUNT_ENV: "3"}) == ["0", "1", "2"]
    assert gpu_slots.visible_devices({gpu_slots.FAKE_COUNT_ENV: "0", "CUDA_VISIBLE_DEVICES": "5"}) == []
    with pytest.raises(gpu_slots.GpuSlotError, match="IID_DISTILL_FAKE_GPU_COUNT='two'"):
        gpu_slots.visible_devices({gpu_slots.FAKE_COUNT_ENV: "two"})
    assert gpu_slots.lock_path(tmp_path, "GPU-1a/2", host="node1") == tmp_path / "node1" / "gpu-GPU-1a_2.lock"
    held = gpu_slots.try_acquire(tmp_path, ["0"])
    assert held is not None and gpu_slots.try_acquire(tmp_path, ["0"]) is None
    held.release()
    again = gpu_slots.try_acquire(tmp_path, ["0"])
    assert again is not None and again.device == "0"
    again.release()
    assert gpu_slots.main([]) == 2
    assert gpu_slots.main(["--slots-dir", str(tmp_path), "--", "no-such-command-iid"]) == gpu_slots.EXIT_NOT_FOUND
