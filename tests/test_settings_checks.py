"""Settings are never silently wrong (issue 29, causes 3 and 5): NaN and infinities are refused wherever a number
enters (flags, --set, params files, --job, the library's dataclasses), a --job is checked as deeply as params, a key
set twice or a misspelt top-level key is an error, and options that would be ignored are refused."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from iid_distill.config import ConfigError, load_params
from iid_distill.distill import DistillConfig, DistillError
from iid_distill.evaluate import EvalConfig, EvaluationError
from iid_distill.jobs import coreset_job, distill_job, evaluate_job, job_text, pretrain_job, read_job
from iid_distill.pretrain import PoolError, PretrainConfig
from test_bad_input import cli_error

DIGITS = ["--device", "cpu", "--cache-dir", "cache"]
EVALUATE = ["evaluate", "s.pt", "--out", "never.json", "--seeds", "0", "--epochs", "1", *DIGITS]


@pytest.mark.parametrize("argv", [
    [*EVALUATE, "--lr", "nan"],
    [*EVALUATE, "--set", "momentum=.nan"],
    [*EVALUATE, "--set", "weight_decay=.inf"],
    [*EVALUATE, "--set", "arch_kwargs={width: .nan}"],
    ["coreset", "--dataset", "digits", "--method", "herding", "--ipc", "1", "--out", "never.pt", "--set", "lr=.nan", *DIGITS],
    ["pretrain", "--dataset", "digits", "--out", "never_pool", "--set", "lr=.nan", *DIGITS],
    ["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm", "--out", "never.pt", "--set", "lr_img=-.inf", *DIGITS],
])
def test_non_finite_numbers_are_refused_where_they_enter(in_workdir, capsys, argv):
    assert "is not a finite number" in cli_error(argv, capsys)
    assert not any((in_workdir / name).exists() for name in ("never.json", "never.pt", "never_pool"))


@pytest.mark.parametrize(("cls", "error", "field"), [
    (EvalConfig, EvaluationError, "lr"), (PretrainConfig, PoolError, "momentum"), (DistillConfig, DistillError, "arch_kwargs"),
])
def test_library_dataclasses_refuse_nan(cls, error, field):
    value = {"width": float("nan")} if field == "arch_kwargs" else float("nan")
    with pytest.raises(error, match="not a finite number"):
        cls(**{field: value})


def test_a_key_set_twice_and_ignored_options_are_refused(in_workdir, capsys):
    distill = ["distill", "--dataset", "digits", "--ipc", "1", "--method-id", "dm", "--out", "never.pt", *DIGITS]
    assert "lr_img is set twice" in cli_error([*distill, "--set", "lr_img=5", "--set", "lr_img=7"], capsys)
    assert "periodic evaluation, which is off" in cli_error([*distill, "--eval-set", "epochs=3"], capsys)
    assert "periodic evaluation, which is off" in cli_error([*distill, "--eval-seeds", "0", "1"], capsys)


@pytest.mark.parametrize(("text", "message"), [
    ("evalution:\n  epochs: 3\n", "params key 'evalution' is unknown"),
    ("evaluation:\n  seeds: '10'\n", "params key 'evaluation.seeds' = '10': expected a non-empty list"),
    ("evaluation:\n  seeds: [0.5]\n", "params key 'evaluation.seeds' = [0.5]"),
    ("evaluation:\n  seeds: [1, 1]\n", "a seed is given twice"),
])
def test_params_files_are_read_strictly(in_workdir, capsys, text, message):
    (in_workdir / "bad_params.yaml").write_text(text)
    assert message in cli_error([*EVALUATE, "--params", "bad_params.yaml"], capsys)


def _jobs(params):
    return {
        "evaluate": evaluate_job(params, "digits", seeds=[0]),
        "distill": distill_job(params, "digits", 1, "dm"),
        "coreset": coreset_job(params, "digits", "random", 1),
        "pretrain": pretrain_job(params, "digits"),
    }


@pytest.mark.parametrize(("kind", "edit", "message"), [
    ("evaluate", {"evaluation": {}}, "'evaluation' lacks arch, epochs, lr ..."),
    ("distill", {"distill": {"method": "dm", "constraints": "none", "ipc": 1}}, "'distill' lacks"),
    ("evaluate", {"seeds": "10"}, "'--job seeds' = '10'"),
    ("evaluate", {"seeds": [0.5]}, "'--job seeds' = [0.5]"),
    ("distill", {"method_id": 5}, "'method_id' = 5"),
    ("evaluate", {"data": None}, "'data' needs exactly dataset, source and cache_dir"),
    ("evaluate", {"device": 5}, "'device' = 5"),
    ("evaluate", {"data": {"dataset": "digits", "source": None, "cache_dir": 7}}, "cache_dir must be text"),
    ("coreset", {"seed": "x"}, "'seed' = 'x': expected an integer >= 0"),
    ("coreset", {"options": {"lr": float("nan")}}, "'coreset.lr' is not a finite number"),
    ("pretrain", {"pretrain": {"lr": 0.01}}, "'pretrain' lacks"),
])
def test_a_job_is_checked_as_deeply_as_params(kind, edit, message):
    job = _jobs(load_params())[kind]
    read_job(job_text(job), kind)  # the job as iid_distill.jobs writes it is accepted
    with pytest.raises(ConfigError) as caught:
        read_job(job_text({**job, **edit}), kind)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_every_field_of_a_written_job_survives_the_checks():
    for kind, job in _jobs(load_params()).items():
        assert read_job(job_text(job), kind) == job
    assert {field.name for field in dataclasses.fields(EvalConfig)} == set(_jobs(load_params())["evaluate"]["evaluation"])


def test_the_schema_holds_the_blocks_the_declarations_generate():
    from iid_distill.schema import SCHEMA_PATH, with_generated_blocks

    text = (Path(__file__).resolve().parents[1] / SCHEMA_PATH).read_text()
    assert with_generated_blocks(text) == text, "run `make schema`: a setting's declaration changed"


def test_a_hosts_settings_leave_other_hosts_runs_unchanged():
    from iid_distill.distill.settings import DISTILL_SETTINGS, setting_help

    assert DistillConfig().result_hash() == DistillConfig(datadam_power=4.0, m3d_kernels=3).result_hash()
    assert DistillConfig().result_hash() == "0ca716b67f71ffcf"  # DM's identity from before hosts owned settings (IDM's kept in it)
    assert DistillConfig(method="datadam").result_hash() != DistillConfig(method="datadam", datadam_power=4.0).result_hash()
    assert DISTILL_SETTINGS["datadam_power"].metadata["host"] == "datadam" and "datadam_power (datadam)" in setting_help()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"datadam_power": 0.5}, "distill.datadam_power = 0.5: expected a finite number >= 1"),
        ({"m3d_kernels": 0}, "distill.m3d_kernels = 0: expected an integer >= 1"),
        ({"m3d_net_reuse": 2.0}, "distill.m3d_net_reuse = 2.0: expected an integer"),
        ({"compile": 1}, "distill.compile = 1: expected one of auto, true, false"),
        ({"dsa": "yes"}, "distill.dsa = 'yes': expected true or false"),
    ],
)
def test_declared_settings_are_checked_by_their_declaration(values, message):
    with pytest.raises(DistillError, match=re.escape(message)):
        DistillConfig(**values)
