"""Provenance that names no machine and data that is never stale (issue 29, causes 4, 7 and 8): folder sources keyed by
their content, regular files only, archives capped; pool models byte-reproducible; pool and output paths stored
relative; the committed reports/ hold no absolute machine path."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_fixtures import tar_folder, write_image_folder
from iid_distill.data import DataError, load_dataset
from iid_distill.data import trees
from iid_distill.data.load import _folder_fingerprint
from iid_distill.pretrain import FeaturePool, PretrainConfig, pretrain_pool
from iid_distill.synthetic import load_synthetic_set
from iid_distill.utils import portable_path, sha256_file
from test_pretrain import TINY_CONVNET

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_folders_of_equal_names_and_sizes_but_other_bytes_differ(tmp_path):
    for name, fill in (("a", b"\x00"), ("b", b"\x01")):
        (tmp_path / name / "cls").mkdir(parents=True)
        (tmp_path / name / "cls" / "0.png").write_bytes(fill * 64)
    assert _folder_fingerprint(tmp_path / "a") != _folder_fingerprint(tmp_path / "b")
    before = _folder_fingerprint(tmp_path / "a")
    (tmp_path / "a" / "cls" / "0.png").write_bytes(b"\x02" * 64)  # edited in place, same size
    assert _folder_fingerprint(tmp_path / "a") != before


def test_an_image_edited_in_place_is_read_again(tmp_path):
    write_image_folder(tmp_path / "tree", CLASSES, per_class=1)
    first = load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    write_image_folder(tmp_path / "tree", CLASSES, per_class=1, seed=1)  # same names and sizes, other pixels
    second = load_dataset("cifar10", source=tmp_path / "tree", cache_dir=tmp_path / "cache")
    assert first.cache_path != second.cache_path and first.sha256 != second.sha256


@pytest.mark.parametrize("special", ["fifo", "link to /dev/zero"])
def test_a_folder_with_a_special_file_is_refused_without_hanging(tmp_path, special):
    write_image_folder(tmp_path / "tree", CLASSES, per_class=1)
    target = tmp_path / "tree" / "train" / "cat" / "9999.png"
    os.mkfifo(target) if special == "fifo" else target.symlink_to("/dev/zero")
    result = subprocess.run([sys.executable, "-m", "iid_distill.cli", "data", "info", "cifar10", "--source", str(tmp_path / "tree"),
                             "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 2 and "not a regular file" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_an_archive_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "tree", CLASSES, per_class=1)
    archive = tar_folder(tmp_path / "tree", tmp_path / "tree.tar.gz")
    monkeypatch.setattr(trees, "MAX_ARCHIVE_BYTES", 4096)
    with pytest.raises(DataError, match="once unpacked, too much to hold in memory; extract it"):
        load_dataset("cifar10", source=archive, cache_dir=tmp_path / "cache")


def test_portable_path_never_names_the_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "pool1") == "pool1" == portable_path("pool1")
    assert not portable_path(Path("/") / "elsewhere" / "x").startswith("/")


def test_identical_pool_trainings_give_identical_bytes_and_fingerprints(digits, tmp_path):
    config = PretrainConfig(**{**TINY_CONVNET, "num_models": 1, "epochs": 1})
    for name in ("one", "two"):
        pretrain_pool(digits, config, tmp_path / name, "cpu", progress=False)
    assert sha256_file(tmp_path / "one" / "model_0000.pt") == sha256_file(tmp_path / "two" / "model_0000.pt")
    pools = [FeaturePool.load(tmp_path / name, digits.spec, "cpu", arch="ConvNet") for name in ("one", "two")]
    assert pools[0].fingerprint() == pools[1].fingerprint()
    assert pools[0].describe()["pool"] == "one" and "pool_dir" not in pools[0].describe()
    manifest = json.loads((tmp_path / "one" / "pool.json").read_text())
    assert not str(manifest["dataset_source"] or "").startswith("/")


def test_a_relative_and_an_absolute_pool_path_give_the_same_set(digits, tmp_path, monkeypatch):
    from iid_distill import cli

    monkeypatch.chdir(tmp_path)
    pretrain_pool(digits, PretrainConfig(**{**TINY_CONVNET, "num_models": 1, "epochs": 1}), tmp_path / "pool1", "cpu", progress=False)
    common = ["distill", "--dataset", "digits", "--ipc", "2", "--method-id", "dm_cc", "--iterations", "1", "--device", "cpu",
              "--cache-dir", str(digits.cache_path.parent), "--set", "cc_arch=ConvNet", "--set", "batch_real=8",
              "--set", "arch_kwargs={width: 8}"]
    assert cli.main([*common, "--pool", "pool1", "--out", "rel.pt"]) == 0
    assert cli.main([*common, "--pool", str(tmp_path / "pool1"), "--out", str(tmp_path / "abs.pt")]) == 0
    assert sha256_file(tmp_path / "rel.pt") == sha256_file(tmp_path / "abs.pt")
    record = json.loads((tmp_path / "abs.json").read_text())
    assert record["outputs"]["set"] == "abs.pt" and record["params"]["cc_pool"]["pool"] == "pool1"


MACHINE_PATH = re.compile(r"""["'](/(?:work|tmp|root|home|Users|mnt|scratch|opt|var|data)/[^"']*)["']""")


def test_committed_reports_hold_no_absolute_machine_path():
    found = []
    for path in sorted((REPO / "reports").rglob("*")):
        if path.suffix in (".json", ".csv", ".md", ".yaml", ".tex") and path.is_file():
            found += [f"{path.relative_to(REPO)}: {match}" for match in MACHINE_PATH.findall(path.read_text(errors="replace"))]
    for path in sorted((REPO / "reports").rglob("*.csv")):  # CSV cells are unquoted
        cells = [cell for row in csv.reader(path.read_text().splitlines()) for cell in row]
        found += [f"{path.relative_to(REPO)}: {cell}" for cell in cells if MACHINE_PATH.fullmatch(f'"{cell}"')]
    for path in sorted((REPO / "reports").rglob("*.pt")):
        meta = json.dumps(load_synthetic_set(path).meta)
        found += [f"{path.relative_to(REPO)} meta: {match}" for match in MACHINE_PATH.findall(meta)]
    assert not found, found[:5]


def test_the_report_refuses_a_cell_mixing_sets_protocols_or_data(in_workdir, capsys):
    from iid_distill import cli
    from test_bad_input import cli_error

    assert cli.main(["evaluate", "s.pt", "--out", "mix0.json", "--seeds", "0", "--epochs", "1", "--device", "cpu",
                     "--cache-dir", "cache", "--force"]) == 0
    record = json.loads((in_workdir / "mix0.json").read_text())[0]
    assert record["dataset_sha256"]  # the data the record was trained and tested on
    for name, edit in (("protocol", {"params_hash": "0" * 16}), ("data", {"dataset_sha256": {"train_images": "other"}})):
        (in_workdir / f"mix_{name}.json").write_text(json.dumps([{**record, "seed": 1, **edit}]))
        message = cli_error(["aggregate", "--records", "mix0.json", f"mix_{name}.json", "--out", f"never_{name}.csv"], capsys)
        assert "mixes 2" in message and f"mix_{name}.json" in message
        assert not (in_workdir / f"never_{name}.csv").exists()
    (in_workdir / "mix_same.json").write_text(json.dumps([{**record, "seed": 1}]))
    assert cli.main(["aggregate", "--records", "mix0.json", "mix_same.json", "--out", "mixed_ok.csv", "--force"]) == 0
