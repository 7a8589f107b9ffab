"""The form in which the workflow calls `iid-distill distill`: every setting on the command line, nothing needed from
the params file on disk (a method id may come from a --configfile overlay; a null source means the official layout)."""

from __future__ import annotations

import json

from iid_distill import cli
from iid_distill.synthetic import load_synthetic_set

TINY = ["--set", "batch_real=8", "--set", "arch_kwargs={width: 8}"]


def test_an_overlay_only_method_id_runs_with_its_base_and_settings_source(digits, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("distill:\n  settings: paper\n  methods:\n    dm_cm: {method: dm, constraints: cm}\n")  # no 'mine_cm'
    out = tmp_path / "mine.pt"
    argv = ["distill", "--dataset", "digits", "--ipc", "2", "--method-id", "mine_cm", "--method", "dm", "--constraints", "cm",
            "--settings", "code", "--iterations", "1", "--out", str(out), "--params", str(params), "--device", "cpu", "--source", "",
            "--cache-dir", str(digits.cache_path.parent), *TINY]
    assert cli.main(argv) == 0, capsys.readouterr().err
    sset = load_synthetic_set(out)
    assert sset.meta["method_id"] == "mine_cm" and sset.meta["params"]["provenance"] == {"method_id": "mine_cm", "settings": "code"}
    assert sset.meta["params"]["lambda_cm"] == 0.01  # the code's DM weight (--settings code), not the params file's 'paper'
    assert json.loads(out.with_suffix(".json").read_text())["method_id"] == "mine_cm"
    # an id the params file knows must have the base it says
    wrong = ["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm_cm", "--method", "dm", "--constraints", "cc",
             "--out", str(tmp_path / "x.pt"), "--params", str(params), "--device", "cpu"]
    assert cli.main(wrong) == 2
    assert "--method-id dm_cm is dm + cm in the params file, not --method dm --constraints cc" in capsys.readouterr().err


def test_every_option_has_help_in_plain_text_and_the_version_prints(capsys):
    import pytest

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
