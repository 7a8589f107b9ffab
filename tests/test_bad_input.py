"""Bad input through the command line, as a new user would give it: every case ends in one line
``iid-distill: error: ...`` naming the file or key and what to do, exit code 2, no traceback, and nothing half-done
taken for a result (issue: the 14 failures of the bad-input sweep, by cause)."""

from __future__ import annotations

import errno
import json
import hashlib
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch
import yaml

from data_fixtures import tar_folder, write_image_folder
from iid_distill import cli

SRC = Path(__file__).resolve().parents[1] / "src"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI; it must fail with exactly one line on stderr. Returns that line."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iid-distill: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ 1. silently smaller data


@pytest.fixture
def image_tree(tmp_path):
    write_image_folder(tmp_path / "tree", CIFAR10_CLASSES, per_class=2)
    return tmp_path / "tree"


def plain_tar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            handle.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return archive


def test_tar_cut_at_a_member_boundary_is_refused(image_tree, tmp_path, capsys):
    archive = plain_tar(image_tree, tmp_path / "whole.tar")
    with tarfile.open(archive) as handle:
        members = handle.getmembers()
    cut_at = members[len(members) // 2].offset  # the start of a member's header: tarfile would stop quietly here
    (tmp_path / "cut.tar").write_bytes(archive.read_bytes()[:cut_at])
    message = cli_error(["data", "info", "cifar10", "--source", str(tmp_path / "cut.tar"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert "cut.tar" in message and "end-of-archive marker" in message
    assert not list((tmp_path / "cache").glob("*.pt")) if (tmp_path / "cache").exists() else True  # no smaller cache written


def test_tar_with_garbage_instead_of_a_header_is_refused(image_tree, tmp_path, capsys):
    data = plain_tar(image_tree, tmp_path / "whole.tar").read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as handle:
        offset = handle.getmembers()[5].offset
    (tmp_path / "bad.tar").write_bytes(data[:offset] + b"\x07" * 512 + data[offset + 512:])
    message = cli_error(["data", "info", "cifar10", "--source", str(tmp_path / "bad.tar"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert "bad.tar" in message


def test_gzip_crc_error_is_refused(image_tree, tmp_path, capsys):
    data = bytearray(tar_folder(image_tree, tmp_path / "whole.tar.gz").read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC32: the tar inside decompresses fine, the check must catch it
    (tmp_path / "crc.tar.gz").write_bytes(bytes(data))
    message = cli_error(["data", "info", "cifar10", "--source", str(tmp_path / "crc.tar.gz"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert "crc.tar.gz" in message and "CRC" in message


def test_gzip_cut_short_is_refused(image_tree, tmp_path, capsys):
    data = tar_folder(image_tree, tmp_path / "whole.tar.gz").read_bytes()
    (tmp_path / "short.tar.gz").write_bytes(data[: len(data) - 100])
    message = cli_error(["data", "info", "cifar10", "--source", str(tmp_path / "short.tar.gz"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert "short.tar.gz" in message and "corrupt or truncated" in message


def test_whole_tar_archives_still_read(image_tree, tmp_path):
    from iid_distill.data import load_dataset

    for archive in (plain_tar(image_tree, tmp_path / "a.tar"), tar_folder(image_tree, tmp_path / "a.tar.gz")):
        dataset = load_dataset("cifar10", source=archive, cache_dir=tmp_path / "cache")
        assert len(dataset.train) == 20 and len(dataset.test) == 20


def test_unlistable_class_folder_is_refused(image_tree, tmp_path, capsys, monkeypatch):
    hidden = image_tree / "train" / "cat"
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == hidden:  # what an unreadable folder does for a non-root user (root reads everything)
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    message = cli_error(["data", "info", "cifar10", "--source", str(image_tree), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert f"cannot list folder {hidden}" in message and "Permission denied" in message


# ------------------------------------------------------------------------------------------------ 2. tracebacks


def test_cache_dir_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    message = cli_error(["data", "info", "digits", "--cache-dir", str(tmp_path / "file" / "cache")], capsys)
    assert "cannot write" in message and "file/cache" in message


def test_unreadable_archive(image_tree, tmp_path, capsys, monkeypatch):
    archive = tar_folder(image_tree, tmp_path / "a.tar.gz")
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if Path(str(file)) == archive:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    message = cli_error(["data", "info", "cifar10", "--source", str(archive), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert f"cannot read source {archive}" in message and "Permission denied" in message


def test_show_into_a_path_under_a_file(in_workdir, capsys):
    message = cli_error(["show", "s.pt", "--out", "s.pt/grid.png"], capsys)
    assert "cannot write s.pt/grid.png" in message


def test_binary_runs_table(in_workdir, tmp_path, capsys):
    (tmp_path / "runs.csv").write_bytes(bytes(range(256)) * 8)
    message = cli_error(["report", "--runs", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "report")], capsys)
    assert "runs.csv is not a readable CSV" in message


def test_disk_full_message_from_torch_writer(tmp_path, monkeypatch):
    """atomic_torch_save serialises in memory, then writes: a full disk there is one line saying what happened."""
    from iid_distill import utils

    def failing_write(self, data):
        with open(self, "wb") as handle:
            handle.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    monkeypatch.setattr(utils.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=0))
    with pytest.raises(utils.UserError, match=r"cannot write .*out\.pt \(No space left on device\) after .* MB; 0 MB free there; the disk is full"):
        utils.atomic_torch_save({"a": 1}, tmp_path / "out.pt")
    assert not list(tmp_path.iterdir())  # the temp file is gone too


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs (needs root: CI runs as root). Skips, saying why, where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 1 MB tmpfs (CI runs as root)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_while_preparing_data(full_disk, capsys):
    message = cli_error(["data", "prepare", "digits", "--cache-dir", str(full_disk / "cache")], capsys)
    assert "cache/digits-sklearn.pt" in message and "the disk is full" in message
    assert not [path for path in (full_disk / "cache").iterdir() if path.suffix == ".pt" or path.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ 3. types of settings


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr=abc", "params key 'evaluation.lr': expected a number, got 'abc'"),
        ("lr_decay_fraction=abc", "params key 'evaluation.lr_decay_fraction': expected a number"),
        ("epochs=2.5", "params key 'evaluation.epochs': expected an integer, got 2.5"),
        ("dsa=maybe", "params key 'evaluation.dsa': expected true or false"),
        ("arch_kwargs=[1, 2]", "params key 'evaluation.arch_kwargs': expected a mapping"),
    ],
)
def test_evaluation_settings_are_type_checked(in_workdir, capsys, override, message):
    assert message in cli_error(["evaluate", "s.pt", "--out", "e.json", "--device", "cpu", "--set", override], capsys)
    assert not (in_workdir / "e.json").exists()


def test_quoted_number_in_params_fails_before_any_data_is_read(in_workdir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text('evaluation:\n  lr: "0.01"\n')
    message = cli_error(["evaluate", "s.pt", "--out", "e.json", "--params", str(params), "--cache-dir", str(tmp_path / "no-cache")], capsys)
    assert "params key 'evaluation.lr': expected a number, got '0.01' (text)" in message
    assert not (tmp_path / "no-cache").exists()


def test_exponent_numbers_that_yaml_reads_as_text_are_numbers(tmp_path):
    from iid_distill.config import build_dataclass
    from iid_distill.evaluate import EvalConfig

    assert yaml.safe_load("1e-3") == "1e-3"  # PyYAML's YAML 1.1 reading
    assert build_dataclass(EvalConfig, {"weight_decay": "5e-4", "lr": "1E-2"}, "evaluation").weight_decay == 5e-4


def test_distill_settings_are_type_checked(in_workdir, capsys):
    message = cli_error(["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm", "--out", "d.pt", "--device", "cpu",
                         "--set", "lambda_cm=high"], capsys)
    assert "params key 'distill.lambda_cm': expected a number, got 'high'" in message


# ------------------------------------------------------------------------------------------------ 4. --set against flags

DISTILL = ["distill", "--dataset", "digits", "--device", "cpu", "--iterations", "1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*DISTILL, "--ipc", "2", "--method-id", "dm", "--out", "x.pt", "--set", "ipc=3"], "ipc is given by --ipc"),
        ([*DISTILL, "--ipc", "1", "--method-id", "dm", "--out", "x.pt", "--set", "method=idm"], "method is given by --method-id"),
        ([*DISTILL, "--ipc", "1", "--method", "dm", "--out", "x.pt", "--set", "constraints=cc"], "constraints is given by --method-id"),
        ([*DISTILL, "--ipc", "1", "--method-id", "dm", "--out", "x.pt", "--set", "iterations=7"], "--set iterations=7 contradicts"),
        (["evaluate", "s.pt", "--out", "x.json", "--epochs", "3", "--set", "epochs=4"], "--set epochs=4 contradicts"),
        (["evaluate", "s.pt", "--out", "x.json", "--seeds", "0", "--set", "seeds=[1]"], "seeds is given by --seeds"),
        (["evaluate", "s.pt", "--out", "x.json", "--no-dsa", "--set", "dsa=true"], "--set dsa=True contradicts"),
        (["coreset", "--dataset", "digits", "--method", "herding", "--ipc", "1", "--out", "x.pt", "--embed-epochs", "1",
          "--set", "embed_epochs=2"], "--set embed_epochs=2 contradicts"),
        (["pretrain", "--dataset", "digits", "--out", "pool", "--epochs", "1", "--set", "epochs=2"], "--set epochs=2 contradicts"),
    ],
)
def test_set_never_silently_beats_a_named_flag(in_workdir, capsys, argv, message):
    assert message in cli_error(argv, capsys)
    assert not (in_workdir / "x.pt").exists() and not (in_workdir / "x.json").exists()


def test_set_that_agrees_with_the_flag_is_accepted(in_workdir, capsys):
    assert cli.main(["evaluate", "s.pt", "--out", "agree.json", "--epochs", "1", "--set", "epochs=1", "--seeds", "0", "--device", "cpu",
                     "--set", "arch_kwargs={width: 8}"]) == 0


# ------------------------------------------------------------------------------------------------ 5. finished results


def test_distill_does_not_overwrite_a_finished_set(in_workdir, capsys):
    base = [*DISTILL, "--ipc", "1", "--method-id", "dm", "--out", "kept.pt", "--set", "arch_kwargs={width: 8}", "--set", "batch_real=8"]
    assert cli.main(base) == 0
    before = digest(in_workdir / "kept.pt")
    message = cli_error([*base[:-2], "--set", "batch_real=16"], capsys)
    assert "kept.pt exists (a finished result); pass --force to replace it" in message
    assert digest(in_workdir / "kept.pt") == before
    assert cli.main([*base[:-2], "--set", "batch_real=16", "--force"]) == 0
    assert digest(in_workdir / "kept.pt") != before


def test_evaluate_does_not_overwrite_finished_records(in_workdir, capsys):
    base = ["evaluate", "s.pt", "--out", "evals.json", "--epochs", "1", "--seeds", "0", "--device", "cpu", "--set", "arch_kwargs={width: 8}"]
    assert cli.main(base) == 0
    before = digest(in_workdir / "evals.json")
    assert "evals.json exists (a finished result)" in cli_error([*base[:-1], "arch_kwargs={width: 4}"], capsys)
    assert digest(in_workdir / "evals.json") == before
    assert cli.main([*base[:-1], "arch_kwargs={width: 4}", "--force"]) == 0


def test_coreset_does_not_overwrite_a_finished_set(in_workdir, capsys):
    before = digest(in_workdir / "s.pt")
    message = cli_error(["coreset", "--dataset", "digits", "--method", "random", "--ipc", "2", "--out", "s.pt", "--device", "cpu",
                         "--cache-dir", "cache"], capsys)
    assert "s.pt exists" in message and digest(in_workdir / "s.pt") == before


def test_continual_does_not_overwrite_a_finished_record(in_workdir, capsys):
    (in_workdir / "done.json").write_text("{}")
    message = cli_error(["continual", "--dataset", "digits", "--method", "herding", "--steps", "2", "--order", "0", "--ipc", "1",
                         "--out", "done.json", "--device", "cpu"], capsys)
    assert "done.json exists (a finished result)" in message


# ------------------------------------------------------------------------------------------------ 6. an empty runs table


def test_header_only_runs_table_renders_nothing(tmp_path, capsys):
    from iid_distill.report import RUN_COLUMNS

    (tmp_path / "runs.csv").write_text(",".join(RUN_COLUMNS) + "\n")
    message = cli_error(["report", "--runs", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "report")], capsys)
    assert "runs.csv has no rows" in message and "iid-distill aggregate" in message
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------------------------------------------------ set files that cannot load


class _WritesMarker:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def damaged_copies(source: Path, folder: Path) -> dict[str, Path]:
    data = source.read_bytes()
    middle = len(data) // 2
    cases = {"cut.pt": data[:middle], "empty.pt": b"", "text.pt": b"hello, not a set\n", "zeros.pt": bytes(4096),
             "flipped.pt": data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1:]}
    paths = {}
    for name, payload in cases.items():
        paths[name] = folder / name
        paths[name].write_bytes(payload)
    return paths


@pytest.mark.parametrize(
    "name, message",
    [
        ("cut.pt", "its zip archive is damaged or cut short"),
        ("empty.pt", "the file is empty"),
        ("text.pt", "not a torch file"),
        ("zeros.pt", "not a torch file"),
        ("flipped.pt", "images do not match the sha256 recorded in the file"),
    ],
)
def test_damaged_set_files_say_what_is_wrong(in_workdir, tmp_path, capsys, name, message):
    path = damaged_copies(in_workdir / "s.pt", tmp_path)[name]
    error = cli_error(["evaluate", str(path), "--out", str(tmp_path / "e.json")], capsys)
    assert name in error and message in error and "Errno" not in error


def test_code_carrying_set_is_refused_unread_with_the_right_advice(in_workdir, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    torch.save({"format": "iid-distill/synthetic-set", "version": 1, "images": _WritesMarker(marker)}, tmp_path / "evil.pt")
    error = cli_error(["show", str(tmp_path / "evil.pt"), "--out", str(tmp_path / "grid.png")], capsys)
    assert "refused unread" in error and "must never be opened with weights_only=False" in error
    assert "will likely succeed" not in error and not marker.exists()


def test_a_folder_given_as_a_set(in_workdir, capsys):
    (in_workdir / "folder.pt").mkdir(exist_ok=True)
    assert "folder.pt: a folder, not synthetic-set file" in cli_error(["show", "folder.pt", "--out", "g.png"], capsys)


# ------------------------------------------------------------------------------------------------ flags and params files


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "s.pt", "--out", "x.json", "--set", "lr"], "--set 'lr': expected key=value"),
        (["evaluate", "s.pt", "--out", "x.json", "--set", "arch_kwargs={width"], "value is not valid YAML"),
        (["evaluate", "s.pt", "--out", "x.json", "--set", "arch_kwargs={width: 8, width: 16}"], "key 'width' appears twice"),
        (["evaluate", "s.pt", "--out", "x.json", "--set", "lrr=0.1"], "params key 'evaluation.lrr' is unknown"),
        (["evaluate", "s.pt", "--out", "x.json", "--device", "tpu"], "--device tpu: expected auto, cpu or cuda"),
        (["evaluate", "--out", "x.json"], "pass either synthetic-set files SET... or --whole-dataset NAME"),
        (["evaluate", "s.pt", "--out", "x.json", "--params", "absent.yaml"], "absent.yaml: params file not found"),
        (["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dmm", "--out", "x.pt"], "unknown method id 'dmm'"),
        (["distill", "--dataset", "imagenet", "--ipc", "1", "--method-id", "dm", "--out", "x.pt"], "unknown dataset 'imagenet'"),
    ],
)
def test_bad_flags_and_params_name_what_to_fix(in_workdir, capsys, argv, message):
    assert message in cli_error(argv, capsys)


def test_params_file_that_is_not_a_mapping(in_workdir, tmp_path, capsys):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    message = cli_error(["evaluate", "s.pt", "--out", "x.json", "--params", str(tmp_path / "list.yaml")], capsys)
    assert "list.yaml: expected a mapping at the top level, got list" in message


def test_errors_are_one_line_through_the_installed_entry_point(workdir):
    """The same contract from a shell: exit code 2, one stderr line, no traceback."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "iid_distill.cli", "evaluate", "s.pt", "--out", "x.json", "--set", "lr=abc"],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


def test_params_key_given_twice_is_named_with_its_lines(in_workdir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("coreset:\n  embed_epochs: 20\n  net_cache: a\n  net_cache: b\nevaluation: {epochs: 5}\n")
    message = cli_error(["evaluate", "s.pt", "--out", "x.json", "--params", str(params)], capsys)
    assert f"{params}: not valid YAML (key 'net_cache' appears twice (lines 3 and 4); keep one)" in message
    params.write_text("evaluation: {epochs: 5, epochs: 6}\n")
    message = cli_error(["evaluate", "s.pt", "--out", "x.json", "--params", str(params)], capsys)
    assert "key 'epochs' appears twice (lines 1 and 1)" in message


@pytest.mark.parametrize(("argv", "message"), [
    (["coreset", "--dataset", "digits", "--method", "herding", "--ipc", "1", "--out", "n.pt", "--set", "lr=abc"], "'coreset.lr': expected a number"),
    (["coreset", "--dataset", "digits", "--method", "herding", "--ipc", "1", "--out", "n.pt", "--set", "arch_kwargs=5"],
     "'coreset.arch_kwargs': expected a mapping or null"),
    (["coreset", "--dataset", "digits", "--method", "herding", "--ipc", "1", "--out", "n.pt", "--set", "net_cache=5"],
     "'coreset.net_cache': expected a string or null"),
])
def test_coreset_options_are_type_checked(in_workdir, capsys, argv, message):
    assert message in cli_error([*argv, "--device", "cpu", "--cache-dir", "cache"], capsys)


@pytest.mark.parametrize("sources", ["[1, 2]", "5"])
def test_data_sources_must_be_a_mapping(in_workdir, capsys, sources):
    (in_workdir / "sources.yaml").write_text(f"data:\n  sources: {sources}\n")
    message = cli_error(["evaluate", "s.pt", "--out", "n.json", "--params", "sources.yaml", "--epochs", "1"], capsys)
    assert "params key 'data.sources': expected a mapping" in message


@pytest.mark.parametrize("field", ["synthetic_params", "eval_params"])
def test_records_with_a_field_that_is_not_a_mapping(in_workdir, capsys, field):
    assert cli.main(["evaluate", "s.pt", "--out", "base.json", "--seeds", "0", "--epochs", "1", "--device", "cpu",
                     "--cache-dir", "cache", "--force"]) == 0
    record = json.loads((in_workdir / "base.json").read_text())[0]
    (in_workdir / f"bad_{field}.json").write_text(json.dumps([{**record, field: [1]}]))
    message = cli_error(["aggregate", "--records", f"bad_{field}.json", "--out", "n.csv"], capsys)
    assert f"{field} = [1], expected a JSON object" in message


def test_a_dataset_cache_with_foreign_objects_never_advises_weights_only_false(tmp_path):
    import datetime

    from iid_distill.data import DataError, get_spec
    from iid_distill.data.load import _read_cache

    torch.save({"when": datetime.datetime(2026, 1, 1)}, tmp_path / "digits-x.pt")
    with pytest.raises(DataError) as caught:
        _read_cache(tmp_path / "digits-x.pt", get_spec("digits"))
    assert "refused unread" in str(caught.value) and "will likely succeed" not in str(caught.value)


def test_evaluate_pairs_each_set_with_its_records_file(capsys):
    from iid_distill import cli

    assert cli.main(["evaluate", "a.pt", "b.pt", "--out", "a.json"]) == 2
    assert "--out takes one records file per set (2), got 1" in capsys.readouterr().err
    assert cli.main(["evaluate", "a.pt", "b.pt", "--out", "x.json", "./x.json"]) == 2
    assert "--out names one records file twice" in capsys.readouterr().err


def test_evaluate_writes_each_sets_records_from_one_run(in_workdir):
    """Two sets in one call (batched: one stack of 2 sets x 2 seeds) give the records of each set's own call."""
    from iid_distill import cli

    assert cli.main(["coreset", "--dataset", "digits", "--method", "random", "--ipc", "1", "--seed", "1", "--out", "t.pt",
                     "--device", "cpu", "--cache-dir", "cache", "--force"]) == 0
    common = ["--seeds", "0", "1", "--epochs", "1", "--device", "cpu", "--cache-dir", "cache", "--set", "seed_batching=batched", "--force"]
    assert cli.main(["evaluate", "s.pt", "t.pt", "--out", "s2.json", "t2.json", *common]) == 0
    for name in ("s", "t"):
        assert cli.main(["evaluate", f"{name}.pt", "--out", f"{name}1.json", *common]) == 0
        together, alone = (json.loads((in_workdir / f"{name}{n}.json").read_text()) for n in (2, 1))
        assert [r["synthetic_sha256"] for r in together] == [r["synthetic_sha256"] for r in alone]
        assert [r["acc"] for r in together] == pytest.approx([r["acc"] for r in alone], abs=0.2)
    assert json.loads((in_workdir / "s2.json").read_text())[0]["synthetic_sha256"] != json.loads((in_workdir / "t2.json").read_text())[0]["synthetic_sha256"]
