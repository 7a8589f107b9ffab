"""Resuming a killed ``iid-distill distill`` run gives exactly the uninterrupted result; bad checkpoints are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from iid_distill import cli
from iid_distill.synthetic import load_synthetic_set

pytestmark = pytest.mark.slow  # CLI subprocesses killed and resumed

CLI = [sys.executable, "-m", "iid_distill.cli"]
ITERATIONS = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A params file with tiny IDM settings, the digits cache and a small CC pool (2 ConvNets x 1 epoch, via `iid-distill pretrain`)."""
    root = tmp_path_factory.mktemp("resume")
    cache = root / "data"
    params = {
        "data": {"cache_dir": str(cache)},
        "distill": {
            "settings": "code",
            "common": {"cc_arch": "ConvNet", "arch_kwargs": {"width": 8}, "batch_real": 16, "checkpoint_every": 2, "log_every": 1},
            "methods": {"idm_iid": {"method": "idm", "constraints": "cc+cm", "net_batch": 32, "train_steps": 2, "queue_interval": 3,
                                    "acc_reset_interval": 5}},
        },
    }
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    pretrain = ["pretrain", "--dataset", "digits", "--out", str(root / "pool"), "--num-models", "2", "--epochs", "1", "--device", "cpu",
                "--set", "arch=ConvNet", "--set", "arch_kwargs={width: 4}", "--params", str(params_path)]
    assert cli.main(pretrain) == 0
    return root, params_path


def _command(params_path: Path, out: Path, *extra: str) -> list[str]:
    pool_dir = params_path.parent / "pool"
    return [*CLI, "distill", "--dataset", "digits", "--ipc", "2", "--method-id", "idm_iid", "--pool", str(pool_dir),
            "--iterations", str(ITERATIONS), "--device", "cpu", "--params", str(params_path), "--out", str(out), *extra]


def _environment() -> dict[str, str]:
    # one thread in every run: identical floating-point reductions in the uninterrupted and the resumed runs
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "IID_DISTILL_NO_PROGRESS": "1",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def killed_run(setup):
    """A distillation SIGKILLed after its first checkpoint: (its --out, a copy of the checkpoint it left)."""
    root, params_path = setup
    interrupted = root / "interrupted.pt"
    checkpoint = Path(f"{interrupted}.ckpt")
    process = subprocess.Popen(_command(params_path, interrupted), env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # only a guard against a hang: the loop ends as soon as the checkpoint exists
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed; raise ITERATIONS"
    assert checkpoint.exists() and not interrupted.exists()
    saved = root / "saved.ckpt"
    shutil.copy(checkpoint, saved)  # the foreign-checkpoint test below uses it, whichever test runs first
    return interrupted, saved


def test_killed_run_resumes_to_the_uninterrupted_result(setup, killed_run):
    root, params_path = setup
    interrupted, _ = killed_run
    straight, checkpoint = root / "straight.pt", Path(f"{interrupted}.ckpt")
    resumed = _run(_command(params_path, interrupted))
    assert "resumed at iteration" in resumed.stdout
    assert not checkpoint.exists()
    _run(_command(params_path, straight))
    first, second = load_synthetic_set(straight), load_synthetic_set(interrupted)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.meta["method"] == "IDM+IID" and first.meta["params"]["cc_pool"]["num_models"] == 2
    assert first.meta["params"]["provenance"] == {"method_id": "idm_iid", "settings": "code"} and first.meta["method_id"] == "idm_iid"
    assert first.meta["params"]["lambda_cm"] == 0.03 and first.meta["params"]["net_batch"] == 32  # code settings + params
    record = json.loads(interrupted.with_suffix(".json").read_text())
    assert record["resumed_from"] >= 2 and record["resumed_from"] % 2 == 0
    assert [entry["iteration"] for entry in record["loss_log"]] == list(range(ITERATIONS))


def _cli_error(argv: list[str], capsys) -> str:
    assert cli.main(argv[len(CLI):]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    return message


def test_corrupt_checkpoint_is_refused(setup, capsys):
    root, params_path = setup
    out = root / "corrupt.pt"
    Path(f"{out}.ckpt").write_bytes(b"not a checkpoint at all")
    message = _cli_error(_command(params_path, out), capsys)
    assert "unreadable checkpoint" in message and "--restart" in message and "corrupt.pt.ckpt" in message
    assert not out.exists()


def test_foreign_checkpoint_is_refused_and_restart_discards_it(setup, killed_run, capsys, monkeypatch):
    root, params_path = setup
    _, saved = killed_run
    out = root / "foreign.pt"
    shutil.copy(saved, f"{out}.ckpt")
    message = _cli_error(_command(params_path, out, "--set", "lr_img=0.5"), capsys)
    assert "other settings" in message and "lr_img: 0.2 in checkpoint, 0.5 now" in message and "--restart" in message
    monkeypatch.setenv("IID_DISTILL_NO_PROGRESS", "1")
    assert cli.main(_command(params_path, out, "--seed", "1", "--iterations", "2", "--restart")[len(CLI):]) == 0
    assert out.exists() and not Path(f"{out}.ckpt").exists()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda payload: payload.update(host_generator=torch.zeros(3, dtype=torch.uint8)), "damaged checkpoint, its state cannot be restored"),
    (lambda payload: payload["images"].fill_(float("nan")), "hold NaN or infinite values (corrupt)"),
])
def test_damaged_checkpoint_content_is_one_line_never_blamed_on_lr_img(setup, killed_run, capsys, damage, message):
    root, params_path = setup
    _, saved = killed_run
    out = root / "damaged.pt"
    payload = torch.load(saved, weights_only=True)
    damage(payload)
    torch.save(payload, f"{out}.ckpt")
    text = _cli_error(_command(params_path, out), capsys)
    assert message in text and "lr_img" not in text and not out.exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda entry: entry.pop("test_acc"), "has test_acc None, not a number"),
    (lambda entry: entry.update(file="../../x"), "names file '../../x', not a file inside the pool folder"),
])
def test_a_damaged_pool_manifest_is_one_line(setup, tmp_path, capsys, edit, message):
    root, params_path = setup
    pool = tmp_path / "pool"
    shutil.copytree(root / "pool", pool)
    manifest = json.loads((pool / "pool.json").read_text())
    edit(manifest["models"][0])
    (pool / "pool.json").write_text(json.dumps(manifest))
    command = _command(params_path, tmp_path / "never.pt")
    command[command.index("--pool") + 1] = str(pool)
    assert message in _cli_error(command, capsys)


def test_a_pool_with_nan_weights_is_refused(setup, tmp_path, capsys):
    from iid_distill.utils import sha256_file

    root, params_path = setup
    pool = tmp_path / "pool"
    shutil.copytree(root / "pool", pool)
    state = torch.load(pool / "model_0000.pt", weights_only=True)
    next(iter(state.values())).fill_(float("nan"))
    torch.save(state, pool / "model_0000.pt")
    manifest = json.loads((pool / "pool.json").read_text())
    manifest["models"][0]["sha256"] = sha256_file(pool / "model_0000.pt")
    (pool / "pool.json").write_text(json.dumps(manifest))
    command = _command(params_path, tmp_path / "never.pt")
    command[command.index("--pool") + 1] = str(pool)
    assert "weights hold NaN or infinite values" in _cli_error(command, capsys)
