"""The GPU slot allocator: concurrent real processes, a fake device count, exec semantics, release on SIGKILL."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
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


def wrapper_env(fake_count: int | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    if "CUDA_VISIBLE_DEVICES" not in extra:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    if gpu_slots.SCHEDULER_JOB_ENV not in extra:
        env.pop(gpu_slots.SCHEDULER_JOB_ENV, None)
    if fake_count is not None:
        env[gpu_slots.FAKE_COUNT_ENV] = str(fake_count)
    return env


def start_wrapped(slots_dir: Path | None, command: list[str], fake_count: int | None, *extra: str, cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    slots = ["--slots-dir", str(slots_dir)] if slots_dir is not None else []
    return subprocess.Popen(
        [sys.executable, "-m", "iid_distill.gpu_slots", *slots, *extra, "--", *command],
        cwd=cwd,
        env=wrapper_env(fake_count, **(env or {})),
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


def test_a_job_that_requires_a_gpu_and_finds_none_fails_in_one_line(tmp_path):
    """The workflow's GPU jobs (device auto or cuda) never turn into silent CPU runs."""
    marker = tmp_path / "ran"
    holder = start_wrapped(tmp_path / "slots", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], 0, "--require-gpu")
    _, err = holder.communicate(timeout=120)
    assert holder.returncode == 2 and not marker.exists()
    assert err.startswith("gpu_slots: error: this GPU job finds no CUDA device (torch ") and "set device: cpu" in err
    assert len(err.strip().splitlines()) == 1
    done = start_wrapped(tmp_path / "slots", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], 1, "--require-gpu")
    assert done.wait(timeout=120) == 0 and marker.exists()  # with a GPU (here a fake one) it runs


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
    follower = start_wrapped(slots, [sys.executable, "-c", "raise SystemExit(3)"], 1, "--timeout", "300")
    follower.communicate(timeout=600)
    assert follower.returncode == 3  # got the device (not EXIT_TIMEOUT) and the command's own exit code came back


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


ENV_REPORT = "import json, os, sys; json.dump({k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'IID_DISTILL_GPU_SLOT')}, open(sys.argv[1], 'w'))"


def test_slurm_assigned_gpus_are_used_without_locks(tmp_path):
    """With cgroup limits every Slurm job sees its own GPU as 0: two jobs on one node must not wait for each other."""
    logs, release = tmp_path / "logs", tmp_path / "release"
    logs.mkdir()
    jobs = []
    for job_id in ("101", "102"):
        slurm = {gpu_slots.SCHEDULER_JOB_ENV: job_id, "CUDA_VISIBLE_DEVICES": "0"}
        # --timeout: were the second job made to wait for the first one's lock, it would give up instead of hanging
        jobs.append(start_wrapped(tmp_path / "slots", [sys.executable, "-c", HOLDER, str(logs), f"job{job_id}", str(release)], 1,
                                  "--timeout", "120", env=slurm))
    for job in jobs:
        assert job.stdout.readline().strip() == "started"  # both run at once
    release.touch()
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err
    results = [json.loads((logs / f"job{job_id}.json").read_text()) for job_id in ("101", "102")]
    assert [(result["device"], result["slot"]) for result in results] == [("0", "slurm:0"), ("0", "slurm:0")]
    assert not (tmp_path / "slots").exists()  # no lock was taken


def test_slurm_job_without_gpu_runs_on_the_cpu(tmp_path):
    holder = start_wrapped(None, [sys.executable, "-c", ENV_REPORT, str(tmp_path / "env.json")], 0,
                           env={gpu_slots.SCHEDULER_JOB_ENV: "7", "CUDA_VISIBLE_DEVICES": ""})
    _, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err
    assert json.loads((tmp_path / "env.json").read_text()) == {"CUDA_VISIBLE_DEVICES": "", "IID_DISTILL_GPU_SLOT": "cpu"}


def test_several_gpus_in_one_slurm_allocation_are_shared_out_per_job(tmp_path):
    environ = {gpu_slots.SCHEDULER_JOB_ENV: "7", gpu_slots.FAKE_COUNT_ENV: "2"}
    first, second = gpu_slots.choose_slot(tmp_path, 0, environ), gpu_slots.choose_slot(tmp_path, 0, environ)
    other_job = gpu_slots.choose_slot(tmp_path, 0, {**environ, gpu_slots.SCHEDULER_JOB_ENV: "8"})
    try:
        assert (first.device, second.device, other_job.device) == ("0", "1", "0")  # job 8's device 0 is another GPU
        assert not first.scheduler and gpu_slots.lock_path(tmp_path / "slurm-job-7", "0").exists()
        with pytest.raises(gpu_slots.GpuSlotTimeout):
            gpu_slots.choose_slot(tmp_path, 0, environ)
    finally:
        for slot in (first, second, other_job):
            slot.release()


def test_two_checkouts_share_the_machine_wide_locks(tmp_path):
    """No --slots-dir: the default is one folder per machine (under TMPDIR), not one per working directory."""
    machine_tmp = tmp_path / "tmp"
    machine_tmp.mkdir()
    checkouts = [tmp_path / "checkout-a", tmp_path / "checkout-b"]
    for checkout in checkouts:
        checkout.mkdir()
    env, logs, release = {"TMPDIR": str(machine_tmp)}, tmp_path / "logs", tmp_path / "release"
    logs.mkdir()
    holder = start_wrapped(None, [sys.executable, "-c", HOLDER, str(logs), "holder", str(release)], 1, cwd=checkouts[0], env=env)
    assert holder.stdout.readline().strip() == "started"
    waiter = start_wrapped(None, [sys.executable, "-c", "pass"], 1, "--timeout", "0.5", cwd=checkouts[1], env=env)
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == gpu_slots.EXIT_TIMEOUT, err  # the other checkout's job holds the machine's GPU 0
    release.touch()
    assert holder.wait(timeout=600) == 0
    assert gpu_slots.lock_path(machine_tmp / "iid-distill-gpu-slots", "0").exists()
    assert not any((checkout / ".snakemake").exists() for checkout in checkouts)


def test_a_file_system_without_locks_is_a_one_line_error(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(gpu_slots.fcntl, "flock", no_flock)
    with pytest.raises(gpu_slots.GpuSlotError, match=r"cannot lock .*gpu-0.lock: the file system does not support file locks .*--slots-dir"):
        gpu_slots.try_acquire(tmp_path, ["0"])


def test_importing_the_allocator_does_not_import_torch():
    """The wrapper runs before every GPU job: it imports torch only to count real devices."""
    code = "import sys, iid_distill.gpu_slots; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], env=wrapper_env(None), capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "False", result.stderr
