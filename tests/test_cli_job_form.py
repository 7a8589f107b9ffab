"""The form in which the workflow calls the CLI: each job's whole configuration resolved once (iid_distill.jobs) and
passed as --job JSON, so the job reads no params file (a method id may come from a --configfile overlay; a null source
means the official layout); by hand, the CLI resolves the same config through the same functions."""

from __future__ import annotations

import json

import pytest
import torch

from iid_distill import cli
from iid_distill.config import load_params
from iid_distill.jobs import distill_job, evaluate_job, job_text, read_job
from iid_distill.synthetic import load_synthetic_set
from iid_distill.utils import UserError

TINY = {"batch_real": 8, "arch_kwargs": {"width": 8}, "iterations": 1}


@pytest.fixture()
def broken_params(tmp_path, monkeypatch):
    """A working directory whose ./params.yaml cannot be read: a job that read it would fail."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("distill: [unclosed\n")
    return tmp_path


def test_a_job_config_runs_without_reading_params_yaml(digits, broken_params, capsys):
    # the merged config of a workflow run: an overlay defines 'mine_cm' and nulls the digits source
    merged = {"device": "cpu", "data": {"cache_dir": str(digits.cache_path.parent), "sources": {"digits": None}},
              "distill": {"settings": "code", "methods": {"mine_cm": {"method": "dm", "constraints": "cm"}}}}
    job = distill_job(merged, "digits", 2, "mine_cm", overrides=TINY)
    assert job["data"]["source"] is None and job["distill"]["constraints"] == "cm" and job["evaluation"] is None
    out = broken_params / "mine.pt"
    assert cli.main(["distill", "--job", job_text(job), "--out", str(out)]) == 0, capsys.readouterr().err
    sset = load_synthetic_set(out)
    assert sset.meta["method_id"] == "mine_cm" and sset.meta["params"]["provenance"] == {"method_id": "mine_cm", "settings": "code"}
    assert sset.meta["params"]["lambda_cm"] == 0.01  # the code's DM weight
    assert json.loads(out.with_suffix(".json").read_text())["method_id"] == "mine_cm"
    # the same job from a file (@FILE), and an evaluation job, also read nothing else
    (broken_params / "job.json").write_text(job_text(job))
    assert cli.main(["distill", "--job", "@job.json", "--out", "again.pt"]) == 0, capsys.readouterr().err
    assert torch.equal(load_synthetic_set("again.pt").images, sset.images)
    evaluation = evaluate_job(merged, "digits", overrides={"epochs": 1, "arch_kwargs": {"width": 8}}, seeds=[0])
    assert cli.main(["evaluate", "mine.pt", "--job", job_text(evaluation), "--out", "evals.json"]) == 0, capsys.readouterr().err
    assert [record["seed"] for record in json.loads((broken_params / "evals.json").read_text())] == [0]


def test_by_hand_and_job_forms_resolve_the_same_config(digits, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("device: cpu\ndistill:\n  settings: paper\n  common: {batch_real: 8}\n  methods:\n    dm_cm: {lambda_cm: 0.2}\n")
    cache = str(digits.cache_path.parent)
    by_hand = tmp_path / "by_hand.pt"
    argv = ["distill", "--dataset", "digits", "--ipc", "2", "--method-id", "dm_cm", "--iterations", "1", "--set", "arch_kwargs={width: 8}",
            "--params", str(params), "--cache-dir", cache, "--out", str(by_hand)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    job = distill_job(load_params(params), "digits", 2, "dm_cm", overrides={"iterations": 1, "arch_kwargs": {"width": 8}}, cache_dir=cache)
    from_job = tmp_path / "from_job.pt"
    assert cli.main(["distill", "--job", job_text(job), "--out", str(from_job)]) == 0, capsys.readouterr().err
    first, second = load_synthetic_set(by_hand), load_synthetic_set(from_job)
    assert torch.equal(first.images, second.images)
    assert first.meta["params"] == second.meta["params"] and first.meta["params"]["lambda_cm"] == 0.2


def test_a_job_refuses_configuration_flags_and_bad_job_text(tmp_path, capsys):
    job = job_text(distill_job({}, "digits", 1, "dm"))
    cases = {
        ("distill", "--job", job, "--iterations", "3", "--out", "x.pt"): "--job carries the whole configuration; drop --iterations",
        ("distill", "--job", job, "--params", "p.yaml", "--out", "x.pt"): "drop --params",
        ("evaluate", "s.pt", "--job", job, "--out", "x.json"): "a distill job given to `iid-distill evaluate`",
        ("distill", "--job", "{not json", "--out", "x.pt"): "--job: not valid JSON",
        ("distill", "--job", json.dumps({"kind": "distill"}), "--out", "x.pt"): "the distill job has no 'data'",
        ("distill", "--out", "x.pt", "--method-id", "dm"): "distill: --dataset is required (or pass the whole job as --job)",
        ("distill", "--job", "@missing.json", "--out", "x.pt"): "--job @missing.json: file not found",
    }
    for argv, message in cases.items():
        assert cli.main(list(argv)) == 2
        assert message in capsys.readouterr().err, argv
    extra = json.loads(job) | {"surprise": 1}
    with pytest.raises(UserError, match="'surprise' is not a field of a distill job"):
        read_job(json.dumps(extra), "distill")


def test_every_option_has_help_in_plain_text_and_the_version_prints(capsys):
    from iid_distill import __version__

    parser = cli.build_parser()
    missing, texts = [], []

    def walk(command, path):
        for action in command._actions:
            texts.append(action.help or "")
            if action.help is None:
                missing.append((path, action.option_strings or action.dest))
            if isinstance(getattr(action, "choices", None), dict):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
                    texts.append(sub.description or "")

    walk(parser, [])
    assert not missing
    assert not any("``" in text for text in texts + [parser.description])  # no reStructuredText markup in --help
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"iid-distill {__version__}"


def test_verbosity_flags(digits, tmp_path, capsys, monkeypatch):
    from iid_distill.utils import NO_PROGRESS_ENV

    monkeypatch.setenv(NO_PROGRESS_ENV, "")  # restored after the test: -q sets it
    argv = ["data", "info", "digits", "--cache-dir", str(digits.cache_path.parent), "--params", str(tmp_path / "none.yaml")]
    (tmp_path / "none.yaml").write_text("{}\n")
    assert cli.main(["-v", *argv]) == 0
    assert "iid-distill: data job resolved from" in capsys.readouterr().err  # -v: each job's resolved config
    assert cli.main(argv) == 0
    assert "job resolved" not in capsys.readouterr().err
    assert cli.main(["-q", *argv]) == 0
    import logging
    import os

    logging.getLogger("iid_distill.pretrain").info("an info message")
    logging.getLogger("iid_distill.utils").warning("a warning")
    err = capsys.readouterr().err
    assert "an info message" not in err and "iid-distill: a warning" in err and os.environ[NO_PROGRESS_ENV] == "1"
    from iid_distill.log import configure_logging

    configure_logging(False, False)  # back to the default level for later tests
