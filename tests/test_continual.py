"""Class-incremental continual learning (Fig. 7): class orders, class subsets, the step loop, resuming and the CLI."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from iid_distill import cli, continual
from iid_distill.continual import (
    ContinualError,
    StaleProgressError,
    class_order,
    class_subset,
    memory_set,
    run_continual,
    step_classes,
)
from iid_distill.data import normalize
from iid_distill.distill import InMemoryPool, resolve_distill_settings
from iid_distill.evaluate import EvalConfig
from iid_distill.models import get_network
from iid_distill.synthetic import load_synthetic_set
from iid_distill.utils import UserError

STEPS, IPC, MODELS = 2, 2, 2
EVAL = EvalConfig(epochs=2, batch_size=16, arch_kwargs={"width": 8})
HERDING = {"embed_epochs": 1, "arch_kwargs": {"width": 8}}
TINY_DISTILL = {"iterations": 3, "batch_real": 16, "arch_kwargs": {"width": 8}, "cc_arch": "ConvNet", "train_steps": 2, "net_batch": 32}


def _run(digits, method, tmp_path, name="run", **kwargs):
    options = dict(eval_config=EVAL, models_per_step=MODELS, progress=False)
    if method == "herding":
        options["coreset_options"] = HERDING
    else:
        options["distill_settings"] = {**resolve_distill_settings({}, "digits", IPC, method), **TINY_DISTILL}
    options.update(kwargs)
    out = tmp_path / f"{name}.json"
    return run_continual(digits, method, STEPS, 0, IPC, out, "cpu", **options), out


@pytest.fixture(scope="module")
def herding_run(digits, tmp_path_factory):
    """One herding run (2 steps x 2 models) shared by the record, memory and resume tests."""
    record, out = _run(digits, "herding", tmp_path_factory.mktemp("herding"))
    return record, out


def test_class_orders_are_seeded_permutations():
    first, again, other = class_order(100, 0), class_order(100, 0), class_order(100, 1)
    assert sorted(first) == list(range(100)) and sorted(other) == list(range(100))
    assert first == again and first != other and first != list(range(100))


def test_step_classes_partition_the_order_and_reject_bad_steps():
    order = class_order(100, 3)
    for steps in (5, 10):
        chunks = step_classes(order, steps)
        assert len(chunks) == steps and all(len(chunk) == 100 // steps for chunk in chunks)
        assert [c for chunk in chunks for c in chunk] == order
    with pytest.raises(ContinualError) as error:
        step_classes(order, 3)
    assert "\n" not in str(error.value) and "divid" in str(error.value)


def test_run_with_steps_not_dividing_the_classes_is_a_one_line_error(digits, tmp_path):
    with pytest.raises(ContinualError) as error:
        run_continual(digits, "herding", 3, 0, IPC, tmp_path / "r.json", "cpu", eval_config=EVAL, coreset_options=HERDING)
    assert "\n" not in str(error.value) and "steps = 3" in str(error.value)
    assert not (tmp_path / "r.json").exists()


def test_class_subset_filters_and_relabels_in_the_given_order(digits):
    classes = [7, 2, 5]
    subset = class_subset(digits, classes)
    for split, parent in ((subset.train, digits.train), (subset.test, digits.test)):
        kept = [i for i in range(len(parent)) if int(parent.labels[i]) in classes]
        assert torch.equal(split.images, parent.images[kept])
        assert split.labels.tolist() == [classes.index(int(parent.labels[i])) for i in kept]
    assert subset.spec.num_classes == 3 and subset.spec.name == "digits" and subset.spec.mean == digits.spec.mean
    assert subset.class_names == [digits.class_names[c] for c in classes]
    reordered = class_subset(digits, [2, 7, 5])
    assert set(subset.sha256) == set(digits.sha256)
    assert all(subset.sha256[k] not in (digits.sha256[k], reordered.sha256[k]) for k in digits.sha256)
    with pytest.raises(ContinualError):
        class_subset(digits, [1, 1])


def test_record_has_one_entry_per_step_and_model_and_the_memory_holds_the_seen_classes(digits, herding_run):
    record, out = herding_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    chunks = step_classes(class_order(10, 0), STEPS)
    assert record["kind"] == "continual" and record["method"] == "herding" and record["method_label"] == "Herding"
    assert record["class_order"] == class_order(10, 0) and record["distill_params"] is None
    assert [(r["step"], r["model_seed"]) for r in record["records"]] == [(s, m) for s in (1, 2) for m in range(MODELS)]
    assert [r["classes_seen"] for r in record["records"]] == [5, 5, 10, 10]
    assert [r["new_classes"] for r in record["records"]] == [chunks[0], chunks[0], chunks[1], chunks[1]]
    assert len({r["train_seed"] for r in record["records"]}) == len(record["records"])
    assert all(0.0 <= r["acc"] <= 100.0 for r in record["records"])
    sets = [load_synthetic_set(path) for path in record["step_sets"]]
    for step, sset in enumerate(sets, start=1):
        seen = sorted(c for chunk in chunks[:step] for c in chunk)
        memory = memory_set(sets[:step])
        assert memory.meta["classes"] == seen
        assert torch.bincount(memory.labels, minlength=10).tolist() == [IPC if c in seen else 0 for c in range(10)]
        assert memory.labels.numel() == record["records"][2 * (step - 1)]["memory_size"]
        # coreset images are real training images: the stored indices (into the full train split) reproduce them
        indices = torch.tensor(sset.meta["indices"])
        assert torch.equal(sset.labels, digits.train.labels[indices])
        assert torch.equal(sset.images, normalize(digits.train.images[indices], digits.spec))
        assert set(sset.labels.tolist()) == set(chunks[step - 1])


def test_resume_reuses_finished_steps_and_refuses_other_settings(digits, herding_run, tmp_path, monkeypatch):
    record, out = herding_run
    work_dir = tmp_path / "work"
    shutil.copytree(record["work_dir"], work_dir)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished step was redone")

    # everything finished: neither synthesis nor training runs again, and the record is the same
    monkeypatch.setattr(continual, "select_coreset", forbidden)
    monkeypatch.setattr(continual, "train_evaluation_networks", forbidden)
    resumed, _ = _run(digits, "herding", tmp_path, name="resumed", work_dir=work_dir)
    assert resumed["records"] == record["records"]

    # killed after step 2's set was written, before its models were tested: only those models train again
    monkeypatch.undo()
    monkeypatch.setattr(continual, "select_coreset", forbidden)
    progress_path = work_dir / "progress.json"
    progress = json.loads(progress_path.read_text())
    progress["steps"][1]["records"] = None
    progress_path.write_text(json.dumps(progress))
    resumed, _ = _run(digits, "herding", tmp_path, name="resumed2", work_dir=work_dir)
    assert resumed["records"] == record["records"]

    with pytest.raises(ContinualError, match="other settings.*models_per_step.*--restart"):
        _run(digits, "herding", tmp_path, name="other", work_dir=work_dir, models_per_step=1)
    (work_dir / "step1.pt").write_bytes(b"changed")
    with pytest.raises(ContinualError, match="step1.pt.*changed"):
        _run(digits, "herding", tmp_path, name="changed", work_dir=work_dir)


@pytest.mark.parametrize("method", ["dm_iid", "idm"])
def test_distillers_build_each_step_from_the_new_classes(digits, tmp_path, method):
    pool = InMemoryPool([get_network("ConvNet", 1, 10, 32, seed=0, width=8)])  # a CC network of the full dataset
    record, _ = _run(digits, method, tmp_path, pool=pool if method == "dm_iid" else None)
    chunks = step_classes(class_order(10, 0), STEPS)
    assert record["distill_params"]["ipc"] == IPC and record["distill_params"]["iterations"] == TINY_DISTILL["iterations"]
    assert len(record["records"]) == STEPS * MODELS
    for step, path in enumerate(record["step_sets"], start=1):
        sset = load_synthetic_set(path, dataset="digits")
        assert sset.meta["classes"] == sorted(chunks[step - 1]) and sset.meta["continual"]["step"] == step
        assert torch.bincount(sset.labels, minlength=10)[chunks[step - 1]].tolist() == [IPC] * len(chunks[step - 1])
        assert sset.expand_factor == (2 if method == "idm" else 1)
        local = json.loads((tmp_path / "run.steps" / f"step{step}.local.json").read_text())
        assert local["params"]["provenance"]["continual"]["new_classes"] == chunks[step - 1]


def test_cc_without_a_pool_is_a_clear_error(digits, tmp_path):
    with pytest.raises(ContinualError, match="--pool"):
        _run(digits, "dm_cc", tmp_path)


def test_cli_runs_end_to_end(digits, tmp_path, capsys, caplog):
    parser = cli.build_parser()  # `iid-distill continual`, as wired
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    out = tmp_path / "cl" / "digits-dm.json"
    argv = [
        "continual", "--dataset", "digits", "--method", "dm", "--steps", "2", "--order", "1", "--ipc", "2", "--out", str(out),
        "--models-per-step", "1", "--set", "iterations=2", "--set", "batch_real=16", "--set", "arch_kwargs={width: 8}",
        "--eval-set", "epochs=1", "--eval-set", "arch_kwargs={width: 8}", "--cache-dir", str(digits.cache_path.parent),
        "--params", str(params), "--device", "cpu",
    ]
    args = parser.parse_args(argv)
    args.func(args)
    record = json.loads(out.read_text())
    assert record["order"] == 1 and record["class_order"] == class_order(10, 1) and record["method_label"] == "DM"
    assert [r["classes_seen"] for r in record["records"]] == [5, 10]
    assert record["eval_params"]["epochs"] == 1 and record["distill_params"]["iterations"] == 2
    assert (tmp_path / "cl" / "digits-dm.steps" / "progress.json").exists()
    assert "accuracy after the last step" in capsys.readouterr().out
    # The workflow re-runs a job whose settings changed: progress of the old settings is refused, or discarded on request.
    # (with --force: the finished record is replaced only when asked; Snakemake deletes it before re-running a job)
    unforced = parser.parse_args([*argv, "--set", "lr_img=0.5"])
    with pytest.raises(UserError, match="digits-dm.json exists"):
        unforced.func(unforced)
    changed = parser.parse_args([*argv, "--set", "lr_img=0.5", "--force"])
    with pytest.raises(StaleProgressError, match="other settings"):
        changed.func(changed)
    stale = parser.parse_args([*argv, "--set", "lr_img=0.5", "--restart-if-stale", "--force"])
    with caplog.at_level(logging.WARNING, logger="iid_distill.utils"):  # read at its logger: stderr depends on earlier tests' logging setup
        stale.func(stale)
    assert "discarding progress" in caplog.text
    assert json.loads(out.read_text())["distill_params"]["lr_img"] == 0.5

