"""The installed package outside a checkout: `pip install` of the wheel, then the CLI with the defaults it carries
(params.yaml and the paper's numbers in iid_distill/defaults/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # builds and installs a wheel

REPO = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "README.md", "params.yaml", "reports/paper_numbers.yaml", "src")


def test_the_wheel_carries_its_defaults_and_runs_outside_a_checkout(tmp_path):
    source = tmp_path / "source"  # a copy, so the build writes nothing into the checkout
    for name in BUILD_FILES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel")], check=True)
    [wheel] = (tmp_path / "wheel").glob("iid_distill-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"  # no params.yaml, no reports/ here
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), IID_DISTILL_NO_PROGRESS="1")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(tmp_path / "site" / "bin" / "iid-distill"), *args], cwd=elsewhere, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    where = subprocess.run([sys.executable, "-c", "import iid_distill.config as c; print(c.__file__); print(c.default_params_file())"],
                           cwd=elsewhere, env=env, text=True, capture_output=True, check=True).stdout.split()
    assert where[0].startswith(str(tmp_path / "site")) and where[1].startswith(str(tmp_path / "site"))  # the installed copy
    packaged = tmp_path / "site" / "iid_distill" / "defaults"
    assert not (packaged / "params.yaml").is_symlink()  # a real copy in the wheel, not a link into a checkout
    assert yaml.safe_load((packaged / "params.yaml").read_text()) == yaml.safe_load((REPO / "params.yaml").read_text())
    assert (packaged / "paper_numbers.yaml").read_text() == (REPO / "reports" / "paper_numbers.yaml").read_text()
    assert cli("--help").returncode == 0
    out = elsewhere / "dm_cm.pt"
    result = cli("distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm_cm", "--iterations", "1", "--device", "cpu",
                 "--cache-dir", "cache", "--set", "batch_real=8", "--set", "arch_kwargs={width: 8}", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["method_id"] == "dm_cm" and record["params"]["provenance"]["settings"] == "code"  # params.yaml's choice
    evaluation = cli("evaluate", str(out), "--epochs", "1", "--seeds", "0", "--set", "arch_kwargs={width: 8}", "--cache-dir", "cache",
                     "--device", "cpu", "--out", "evals.json")
    assert evaluation.returncode == 0, evaluation.stdout[-3000:]
    assert [r["seed"] for r in json.loads((elsewhere / "evals.json").read_text())] == [0]
