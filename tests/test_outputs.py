"""The output guard (iid_distill.outputs) through every writing command: no finished file, input or second output is
replaced without --force, and a second writer of one file is refused at once (issue 29, causes 1, 2 and 10)."""

from __future__ import annotations

import json
import threading

import pytest

from iid_distill import cli
from iid_distill.outputs import OutputError, check_outputs, guard_outputs, lock_path, output_lock
from test_bad_input import cli_error, digest
from test_report import GOLDEN, PAPER_YAML

DISTILL = ["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm", "--iterations", "1", "--device", "cpu",
           "--cache-dir", "cache"]


def test_distill_record_would_overwrite_its_own_set(in_workdir, capsys):
    message = cli_error([*DISTILL, "--out", "x.json"], capsys)
    assert "x.json" in message and "two of its outputs" in message
    assert not (in_workdir / "x.json").exists()


def test_distill_refuses_an_existing_record_beside_a_new_set(in_workdir, capsys):
    (in_workdir / "r.json").write_text('{"finished": true}\n')
    message = cli_error([*DISTILL, "--out", "r.pt"], capsys)
    assert "r.json exists (a finished result)" in message
    assert json.loads((in_workdir / "r.json").read_text()) == {"finished": True}
    (in_workdir / "r.json").unlink()


def test_show_coreset_and_aggregate_never_write_over_an_input(in_workdir, capsys):
    before = digest(in_workdir / "s.pt")
    assert "also an input" in cli_error(["show", "s.pt", "--out", "s.pt", "--force"], capsys)
    assert "s.pt exists (a finished result)" in cli_error(
        ["coreset", "--dataset", "digits", "--method", "random", "--ipc", "1", "--out", "new.pt", "--grid", "s.pt",
         "--device", "cpu", "--cache-dir", "cache"], capsys)
    assert "two of its outputs" in cli_error(
        ["coreset", "--dataset", "digits", "--method", "random", "--ipc", "1", "--out", "new.pt", "--grid", "new.pt",
         "--device", "cpu", "--cache-dir", "cache"], capsys)
    assert digest(in_workdir / "s.pt") == before and not (in_workdir / "new.pt").exists()
    (in_workdir / "e.json").write_text("[]\n")
    assert "also an input" in cli_error(["aggregate", "--records", "e.json", "--out", "e.json", "--force"], capsys)
    assert (in_workdir / "e.json").read_text() == "[]\n"


def test_a_second_writer_is_refused_while_the_first_runs(in_workdir, capsys):
    with output_lock(in_workdir / "c.json"):
        message = cli_error(["evaluate", "s.pt", "--out", "c.json", "--seeds", "0", "--epochs", "1", "--device", "cpu",
                             "--cache-dir", "cache"], capsys)
    assert "another run is writing this file now" in message
    assert not (in_workdir / "c.json").exists() and not lock_path(in_workdir / "c.json").exists()


def test_evaluate_writes_then_refuses_and_force_replaces(in_workdir, capsys):
    argv = ["evaluate", "s.pt", "--out", "ev.json", "--seeds", "0", "--epochs", "1", "--device", "cpu", "--cache-dir", "cache"]
    assert cli.main(argv) == 0
    first = digest(in_workdir / "ev.json")
    assert "ev.json exists" in cli_error(argv, capsys)
    assert digest(in_workdir / "ev.json") == first
    assert cli.main([*argv, "--force"]) == 0
    assert not lock_path(in_workdir / "ev.json").exists()


def test_lock_is_exclusive_across_threads_and_released(tmp_path):
    target = tmp_path / "out.json"
    errors = []
    with output_lock(target):
        thread = threading.Thread(target=lambda: errors.append(pytest.raises(OutputError, lambda: output_lock(target).__enter__())))
        thread.start()
        thread.join()
    assert len(errors) == 1
    with output_lock(target):  # free again once released
        pass
    assert not lock_path(target).exists()


def test_check_outputs_sees_one_file_under_two_names(tmp_path):
    (tmp_path / "real.csv").write_text("x\n")
    (tmp_path / "alias.csv").symlink_to(tmp_path / "real.csv")
    with pytest.raises(OutputError, match="also an input"):
        check_outputs([tmp_path / "alias.csv"], [tmp_path / "real.csv"], force=True)
    with pytest.raises(OutputError, match="two of its outputs"):
        check_outputs([tmp_path / "a" / ".." / "b.png", tmp_path / "b.png"])
    with pytest.raises(OutputError, match="is a folder"):
        check_outputs([tmp_path], force=True)
    with guard_outputs([tmp_path / "new.csv"], [tmp_path / "real.csv"]) as paths:
        assert paths == [tmp_path / "new.csv"]


def test_report_refuses_to_replace_its_files_without_force(tmp_path, capsys):
    argv = ["report", "--runs", str(GOLDEN / "runs.csv"), "--paper", str(PAPER_YAML), "--out", str(tmp_path / "r"), "--no-figures"]
    assert cli.main(argv) == 0
    before = (tmp_path / "r" / "summary.json").read_bytes()
    assert "exists (a finished result)" in cli_error(argv, capsys)
    assert (tmp_path / "r" / "summary.json").read_bytes() == before
    assert cli.main([*argv, "--force"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["r"]  # no staging folder or lock left
