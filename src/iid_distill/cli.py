"""The iid-distill command line: defaults come from params.yaml, flags override them."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import build_dataclass, default_params_file, field_names, keyword_option_names, load_params, parse_yaml
from .jobs import continual_job, coreset_job, data_job, distill_job, evaluate_job, job_text, needs_pool, pretrain_job, read_job
from .outputs import guard_outputs, output_lock
from .utils import PRECISIONS, UserError, resolve_device, run_with_restart

log = logging.getLogger("iid_distill.cli")
# Options that are not configuration (paths, resume and overwrite choices): the only ones --job may come with.
DATASET_HELP = "cifar10|cifar100|svhn|tinyimagenet|mnist|fashionmnist|digits (required)"
RUN_OPTIONS = {"help", "job", "out", "grid", "pool", "work_dir", "force", "restart", "restart_if_stale", "set_path", "set_paths", "whole_dataset"}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None, help="params file (default: ./params.yaml if present)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda[:N] (default: params 'device', else auto)")


def _add_set_option(parser: argparse.ArgumentParser, what: str, keys: Sequence[str]) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help=f"override {what} (YAML value); repeatable. Keys: {', '.join(sorted(keys))}")


def _add_job_option(parser: argparse.ArgumentParser, kind: str) -> None:
    """--job: the workflow's form, one resolved config (iid_distill.jobs) instead of params file and flags."""
    parser.add_argument("--job", default=None, metavar="JSON",
                        help=f"the {kind} job's whole configuration as iid_distill.jobs resolves it (JSON text, or @FILE): "
                             "no params file is read, and configuration flags are refused (the workflow's form)")
    parser.set_defaults(job_kind=kind, config_flags=[(action.dest, action.option_strings[0] if action.option_strings else action.dest)
                                                     for action in parser._actions if action.dest not in RUN_OPTIONS])


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace existing output files (a finished result is otherwise kept)")


def _add_settings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", choices=["code", "paper"], default=None,
                        help="IID objective of the authors' code, which produced the paper's numbers, or of the paper text "
                             "(default: params distill.settings, else code)")


def _add_resume_options(parser: argparse.ArgumentParser, state: str) -> None:
    parser.add_argument("--restart", action="store_true", help=f"discard {state} instead of resuming from it")
    parser.add_argument("--restart-if-stale", dest="restart_if_stale", action="store_true",
                        help=f"resume from {state} of the same settings, but discard (with a message) one of other settings, data or device")


def _guarded(args: argparse.Namespace, outputs: Sequence[Any], inputs: Sequence[Any] = ()):
    """Every file the command writes, checked and locked for the run (iid_distill.outputs); ``None`` entries are skipped."""
    return guard_outputs([path for path in outputs if path is not None], [path for path in inputs if path is not None],
                         force=getattr(args, "force", False))


def _add_data_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, help="image folder, .tar.gz or official layout dir (default: params data.sources)")
    parser.add_argument("--cache-dir", default=None, help="prepared-data cache (default: params data.cache_dir)")


def _job(args: argparse.Namespace, build: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The command's job config: read from --job, else resolved from the params file and the flags by ``build``."""
    if args.job is None:
        job = build(load_params(args.params))
        log.debug("%s job resolved from %s and the flags: %s", args.job_kind, args.params or default_params_file(), job_text(job))
        return job
    given = [flag for dest, flag in args.config_flags if getattr(args, dest, None) not in (None, False, [])]
    if given:
        raise UserError(f"{args.job_kind}: --job carries the whole configuration; drop {given[0]} (or drop --job)")
    return read_job(args.job, args.job_kind)


def _required(args: argparse.Namespace, *names: str) -> None:
    """Flags a command needs when it resolves its own config (with --job, the job carries them)."""
    for name in names:
        if getattr(args, name) is None:
            raise UserError(f"{args.job_kind}: --{name.replace('_', '-')} is required (or pass the whole job as --job)")


def _data_source(args: argparse.Namespace) -> dict[str, Any]:
    return {"source": args.source, "cache_dir": args.cache_dir}


def _load_data(job: dict[str, Any]):
    from .data import load_dataset

    data = job["data"]
    return load_dataset(data["dataset"], source=data["source"], cache_dir=data["cache_dir"])


def _data_job(args: argparse.Namespace) -> dict[str, Any]:
    def build(params: dict[str, Any]) -> dict[str, Any]:
        _required(args, "name")
        return data_job(params, args.name, **_data_source(args), download=getattr(args, "download", False))

    return _job(args, build)


def cmd_data_info(args: argparse.Namespace) -> None:
    from .data import dataset_info

    print(json.dumps(dataset_info(_load_data(_data_job(args))), indent=2))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from .data import prepare_dataset

    job = _data_job(args)
    data = job["data"]
    print(prepare_dataset(data["dataset"], download=job["download"], force=args.force, source=data["source"], cache_dir=data["cache_dir"]))


def cmd_coreset(args: argparse.Namespace) -> None:
    from .coreset import select_coreset
    from .synthetic import save_image_grid, save_synthetic_set

    def build(params: dict[str, Any]) -> dict[str, Any]:
        _required(args, "dataset", "method", "ipc")
        overrides = _with_flags(_parse_set_options(args.overrides), {key: getattr(args, key) for key in ("embed_arch", "embed_epochs", "forgetting_epochs")})
        return coreset_job(params, args.dataset, args.method, args.ipc, seed=args.seed, overrides=overrides, **_data_source(args), device=args.device)

    job = _job(args, build)
    with _guarded(args, [args.out, args.grid], [job["data"]["source"]]):
        sset = select_coreset(job["method"], _load_data(job), job["ipc"], job["seed"], resolve_device(job["device"]), **job["options"])
        save_synthetic_set(sset, args.out)
        if args.grid:
            save_image_grid(sset, args.grid)
    print(args.out)


def _evaluation_dataclass(evaluation: dict[str, Any]):
    from .evaluate import EvalConfig

    return build_dataclass(EvalConfig, evaluation, "evaluation")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_synthetic_sets, evaluate_whole_dataset, write_records
    from .synthetic import load_synthetic_set

    sets_given, outs = args.set_paths or [], args.out
    if bool(sets_given) == (args.whole_dataset is not None):
        raise UserError("evaluate: pass either synthetic-set files SET... or --whole-dataset NAME (the full training split)")
    if len(outs) != max(1, len(sets_given)):
        raise UserError(f"evaluate: --out takes one records file per set ({max(1, len(sets_given))}), got {len(outs)}")
    if len({os.path.abspath(out) for out in outs}) != len(outs):
        raise UserError("evaluate: --out names one records file twice; give each set its own")
    # read after the job config, so a bad job is reported before the sets are opened
    synthetic_sets = functools.cache(lambda: [load_synthetic_set(path) for path in sets_given])

    def build(params: dict[str, Any]) -> dict[str, Any]:
        flags = {"arch": args.arch, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "dsa": False if args.no_dsa else None}
        overrides = _with_flags(_parse_set_options(args.overrides), flags, fixed={"seeds": "--seeds"})
        dataset = args.whole_dataset if not sets_given else synthetic_sets()[0].meta["dataset"]
        return evaluate_job(params, dataset, overrides=overrides, seeds=args.seeds, **_data_source(args), device=args.device)

    job = _job(args, build)
    ssets = synthetic_sets()
    config, seeds, dataset_name = _evaluation_dataclass(job["evaluation"]), job["seeds"], job["data"]["dataset"]
    for path, sset in zip(sets_given, ssets):
        if sset.meta["dataset"] != dataset_name:
            raise UserError(f"evaluate: {path} is {sset.meta['dataset']}, but the job's data is {dataset_name}")
    if args.whole_dataset is not None and args.whole_dataset != dataset_name:
        raise UserError(f"evaluate: --whole-dataset is {args.whole_dataset}, but the job's data is {dataset_name}")
    with _guarded(args, outs, [*sets_given, job["data"]["source"]]):
        dataset, device = _load_data(job), resolve_device(job["device"])
        if not ssets:
            results = [(f"{dataset_name} whole dataset", evaluate_whole_dataset(dataset, config, seeds, device))]
        else:
            records = evaluate_synthetic_sets(ssets, dataset, config, seeds, device)
            results = [(f"{dataset_name} ipc={sset.meta['ipc']} method={sset.meta['method']}", one) for sset, one in zip(ssets, records)]
        for (_, records), out in zip(results, outs):
            write_records(records, out)
    for (what, records), out in zip(results, outs):
        accs = [record["acc"] for record in records]
        print(f"{what} arch={config.arch}: acc per seed {', '.join(f'{a:.2f}' for a in accs)} (mean {sum(accs) / len(accs):.2f}) -> {out}")


def _with_flags(overrides: dict[str, Any], flags: dict[str, Any], fixed: dict[str, str] | None = None) -> dict[str, Any]:
    """``overrides`` (from --set) plus the named flags given (``{key: value}``, None = not given).

    A key set both ways is refused unless the values agree, and a key in ``fixed`` (``{key: its flag}``) can only be
    given by that flag: a job's identity (IPC, method) never comes from a --set that silently wins over a flag.
    """
    for key, flag in (fixed or {}).items():
        if key in overrides:
            raise UserError(f"--set {key}=...: {key} is given by {flag}, not by --set; drop the --set")
    merged = dict(overrides)
    for key, value in flags.items():
        if value is None:
            continue
        if key in overrides and overrides[key] != value:
            raise UserError(f"--set {key}={overrides[key]!r} contradicts the flag for {key} ({value!r}); pass one of them")
        merged[key] = value
    return merged


def _parse_set_options(items: Sequence[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``["lr_img=0.2", "arch_kwargs={width: 16}"]`` -> ``{"lr_img": 0.2, "arch_kwargs": {"width": 16}}`` (YAML values)."""
    import yaml

    values: dict[str, Any] = {}
    for item in items or []:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise UserError(f"{flag} {item!r}: expected key=value")
        if key.strip() in values:
            raise UserError(f"{flag} {item!r}: {key.strip()} is set twice; give it once")
        try:
            values[key.strip()] = parse_yaml(text)
        except yaml.YAMLError as error:
            raise UserError(f"{flag} {item!r}: value is not valid YAML ({str(error).splitlines()[0]})") from None
    return values


def cmd_distill(args: argparse.Namespace) -> None:
    from .distill import CheckpointError, DistillConfig, method_id_of, output_paths, run_distillation
    from .pretrain import default_pool_dir

    def build(params: dict[str, Any]) -> dict[str, Any]:
        _required(args, "dataset", "ipc")
        if (args.method_id is None) == (args.method is None):
            raise UserError("distill: pass --method-id ID (dm, dm_iid, idm_iid, ...) or --method HOST [--constraints ...]")
        if args.constraints is not None and args.method is None:
            raise UserError("distill: --constraints goes with --method; a --method-id names its constraints itself")
        method_id = args.method_id or method_id_of(args.method, args.constraints or "none")
        flags = {"iterations": args.iterations, "seed": args.seed, "eval_every": args.eval_every, "precision": args.precision}
        identity = {"ipc": "--ipc", "method": "--method-id (or --method)", "constraints": "--method-id (or --constraints)"}
        return distill_job(params, args.dataset, args.ipc, method_id, settings_source=args.settings,
                           overrides=_with_flags(_parse_set_options(args.overrides), flags, fixed=identity),
                           eval_overrides=_parse_set_options(args.eval_overrides, "--eval-set"), eval_seeds=args.eval_seeds,
                           **_data_source(args), device=args.device)

    job = _job(args, build)
    config = build_dataclass(DistillConfig, job["distill"], "distill")
    outputs = output_paths(args.out)
    written = [outputs[name] for name in ("set", "record", "grid")] + ([outputs["eval_csv"]] if config.eval_every > 0 else [])
    with _guarded(args, written, [job["data"]["source"]]):
        dataset = _load_data(job)
        pool_dir = args.pool if args.pool is not None else (default_pool_dir(dataset.spec.name, config.cc_arch) if config.uses_cc else None)
        eval_config = _evaluation_dataclass(job["evaluation"]) if job["evaluation"] is not None else None
        run = functools.partial(run_distillation, config, dataset, args.out, resolve_device(job["device"]), pool_dir=pool_dir,
                                eval_config=eval_config, eval_seeds=job["eval_seeds"] or [0],
                                provenance={"method_id": job["method_id"], "settings": job["settings_source"]})
        record = run_with_restart(run, restart=args.restart, restart_if_stale=args.restart_if_stale, stale=CheckpointError, what="checkpoint")
    speed = f"{record['it_per_s']:.2f} it/s" if record["it_per_s"] else "no iterations left"
    resumed = f" (resumed at iteration {record['resumed_from']})" if record["resumed_from"] is not None else ""
    print(f"{record['method']} {dataset.spec.name} ipc={config.ipc}: {config.iterations} iterations{resumed}, {speed} -> {args.out}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain import PretrainConfig, default_pool_dir, pretrain_pool

    def build(params: dict[str, Any]) -> dict[str, Any]:
        _required(args, "dataset")
        overrides = _with_flags(_parse_set_options(args.overrides), {key: getattr(args, key) for key in ("num_models", "epochs")})
        return pretrain_job(params, args.dataset, overrides=overrides, **_data_source(args), device=args.device)

    job = _job(args, build)
    config = build_dataclass(PretrainConfig, job["pretrain"], "pretrain")
    dataset = _load_data(job)
    out_dir = args.out or default_pool_dir(dataset.spec.name, config.arch)
    with output_lock(out_dir):  # resumable, so an existing pool is continued, never replaced: only a second writer is refused
        entries = pretrain_pool(dataset, config, out_dir, resolve_device(job["device"]))
    accuracies = [entry["test_acc"] for entry in entries]
    print(f"{config.arch} pool for {dataset.spec.name}: {len(entries)} models x {config.epochs} epochs, "
          f"test accuracy {min(accuracies):.2f}..{max(accuracies):.2f}% -> {out_dir}")


def cmd_show(args: argparse.Namespace) -> None:
    from .synthetic import load_synthetic_set, save_image_grid

    with _guarded(args, [args.out], [args.set_path]):
        save_image_grid(load_synthetic_set(args.set_path), args.out)
    print(args.out)


def _add_continual_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``iid-distill continual``."""
    from .coreset import coreset_methods

    parser.add_argument("--dataset", default=None, help=DATASET_HELP)
    parser.add_argument("--method", default=None,
                        help=f"coreset method ({', '.join(coreset_methods())}) or distill method id (dm, dm_iid, idm, idm_iid, ...) (required)")
    parser.add_argument("--steps", type=int, default=None, help="number of class-incremental steps (must divide the classes) (required)")
    parser.add_argument("--order", type=int, default=None, help="class order index (the permutation's seed), e.g. 0..4 (required)")
    parser.add_argument("--ipc", type=int, default=None, help="memory images per class (the paper: 20) (required)")
    parser.add_argument("--out", required=True, help="continual record to write (.json)")
    parser.add_argument("--models-per-step", dest="models_per_step", type=int, default=None, help="evaluation models trained per step (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="synthesis seed of every step (default: distill settings' seed, else 0)")
    parser.add_argument("--work-dir", dest="work_dir", default=None, help="per-step sets and progress (default: <out stem>.steps)")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="override a DistillConfig field (distill methods) or select_coreset option (coreset methods); YAML value; repeatable")
    parser.add_argument("--eval-set", dest="eval_overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="override an EvalConfig field (epochs, arch, arch_kwargs, ...); YAML value; repeatable")
    _add_settings_option(parser)
    parser.add_argument("--pool", default=None, help="CC pool pre-trained on the FULL dataset (default: results/pools/<dataset>-<cc_arch>, the workflow's)")
    add_force_option(parser)
    _add_resume_options(parser, "the work dir's progress and checkpoints")
    _add_data_source(parser)
    _add_common(parser)
    _add_job_option(parser, "continual")


def cmd_continual(args: argparse.Namespace) -> dict[str, Any]:
    """``iid-distill continual``: resolve settings from params + flags (or take --job), run, print a one-line summary."""
    from .continual import StaleProgressError, run_continual

    def build(params: dict[str, Any]) -> dict[str, Any]:
        _required(args, "dataset", "method", "steps", "order", "ipc")
        identity = {"ipc": "--ipc", "method": "--method", "constraints": "--method"}
        overrides = _with_flags(_parse_set_options(args.overrides), {"seed": args.seed}, fixed=identity)
        seed = overrides.pop("seed", None)  # --seed or --set seed=: every step's synthesis seed (coresets take it as an argument)
        return continual_job(params, args.dataset, args.method, steps=args.steps, order=args.order, ipc=args.ipc,
                             models_per_step=args.models_per_step, seed=seed, overrides=overrides,
                             eval_overrides=_parse_set_options(args.eval_overrides, "--eval-set"), settings_source=args.settings,
                             **_data_source(args), device=args.device)

    job = _job(args, build)
    with _guarded(args, [args.out], [job["data"]["source"]]):
        dataset, device = _load_data(job), resolve_device(job["device"])
        pool = None
        if needs_pool(job):
            from .pretrain import FeaturePool, default_pool_dir

            cc_arch = job["distill"]["cc_arch"]
            pool_dir = args.pool if args.pool is not None else default_pool_dir(dataset.spec.name, cc_arch)
            pool = FeaturePool.load(pool_dir, dataset.spec, device, arch=cc_arch, dataset_sha256=dict(dataset.sha256))
        run = functools.partial(run_continual, dataset, job["method"], job["steps"], job["order"], job["ipc"], args.out, device,
                                eval_config=_evaluation_dataclass(job["evaluation"]), distill_settings=job["distill"],
                                coreset_options=job["coreset"], models_per_step=job["models_per_step"], seed=job["seed"], pool=pool,
                                work_dir=args.work_dir)
        record = run_with_restart(run, restart=args.restart, restart_if_stale=args.restart_if_stale, stale=StaleProgressError, what="progress")
    last = [r["acc"] for r in record["records"] if r["step"] == job["steps"]]
    print(f"{record['method_label']} {dataset.spec.name} {job['steps']} steps, order {job['order']}: accuracy after the last step "
          f"{sum(last) / len(last):.2f} (mean of {len(last)} models) -> {args.out}")
    return record


def data_label_option(text: str) -> tuple[str, str]:
    dataset, separator, label = text.partition("=")
    if not separator or not dataset.strip() or not label.strip():
        raise argparse.ArgumentTypeError(f"--data-label {text!r}: expected DATASET=LABEL, e.g. cifar10='CIFAR-10 (JPEG copy)'")
    return dataset.strip().lower(), label.strip()


def _add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .report.records import DEFAULT_PAPER_YAML

    parser.add_argument("--runs", required=True, help="runs table CSV written by `iid-distill aggregate`")
    parser.add_argument("--out", required=True, help="output folder for table*.md/.tex, summary.json and figures")
    parser.add_argument("--paper", default=None,
                        help=f"the paper's numbers (default: {DEFAULT_PAPER_YAML} if present, else the copy the package carries)")
    parser.add_argument("--data-label", dest="data_labels", type=data_label_option, action="append", default=[], metavar="DATASET=LABEL",
                        help="display name of a dataset, e.g. cifar10='CIFAR-10 (JPEG copy)' (repeatable)")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="write only the tables and summary.json")
    parser.add_argument("--sweeps", nargs="+", default=[], metavar="CSV",
                        help="sweep tables from `iid-distill aggregate-sweep` (Table 5: cc_beta; Figure 4: lambda_cc, lambda_cm)")
    parser.add_argument("--convergence", nargs="+", default=[], metavar="CSV",
                        help="accuracy-vs-iteration files <stem>.eval.csv of `iid-distill distill --eval-every` (Figure 5)")
    parser.add_argument("--continual", nargs="+", default=[], metavar="JSON", help="continual-learning records (Figure 7)")
    parser.add_argument("--cross-arch-dataset", dest="cross_arch_dataset", default="cifar10",
                        help="dataset of Tables 3 and 4 (default: cifar10, the paper's; others get no paper numbers)")
    parser.add_argument("--compression-dataset", dest="compression_dataset", default="cifar10",
                        help="dataset of Table 7 and Figure 6 (default: cifar10, the paper's; others get no paper numbers)")
    parser.add_argument("--compression-ipcs", dest="compression_ipcs", type=int, nargs="+", default=None, metavar="N",
                        help="IPC rows of Table 7 and Figure 6 (default: the paper's IPCs plus any run)")
    parser.add_argument("--ablation-datasets", dest="ablation_datasets", nargs="+", default=None, metavar="DATASET",
                        help="datasets of Table 6 (default: cifar10 cifar100, the paper's; others get no paper numbers)")
    add_force_option(parser)
    return parser


def _add_aggregate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--records", required=True, nargs="+", help="JSON records files written by `iid-distill evaluate`")
    parser.add_argument("--out", required=True, help="runs table CSV to write")
    parser.add_argument("--expect-seeds", dest="expect_seeds", type=int, default=None, metavar="N",
                        help="fail (writing nothing) unless every (dataset, ipc, method, arch) has seeds 0..N-1")
    add_force_option(parser)
    return parser


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--name", required=True, help="sweep name, e.g. table5_beta, figure4_lambda_cc, figure4_lambda_cm")
    parser.add_argument("--parameter", required=True, help="the swept synthetic-set parameter, e.g. cc_beta, lambda_cc, lambda_cm")
    parser.add_argument("--records", required=True, nargs="+", help="JSON records files written by `iid-distill evaluate`")
    parser.add_argument("--out", required=True, help="sweep table CSV to write")
    add_force_option(parser)
    return parser


def cmd_report(args: argparse.Namespace) -> list[Path]:
    from .config import packaged_file
    from .report import render_report
    from .report.records import DEFAULT_PAPER_YAML

    paper = args.paper or (DEFAULT_PAPER_YAML if Path(DEFAULT_PAPER_YAML).exists() else packaged_file("paper_numbers.yaml"))
    return render_report(args.runs, paper, args.out, dict(args.data_labels), figures=args.figures, sweeps=args.sweeps,
                         convergence=args.convergence, continual=args.continual, cross_arch_dataset=args.cross_arch_dataset,
                         compression_dataset=args.compression_dataset, compression_ipcs=args.compression_ipcs,
                         ablation_datasets=args.ablation_datasets, force=args.force)


def cmd_aggregate(args: argparse.Namespace) -> Path:
    from .report import check_complete, collect_records, expected_seed_keys, write_runs_table

    with _guarded(args, [args.out], args.records):
        runs = collect_records(args.records)
        if args.expect_seeds is not None:
            check_complete(runs, expected_seed_keys(runs, args.expect_seeds))
        return write_runs_table(runs, args.out)


def cmd_aggregate_sweep(args: argparse.Namespace) -> Path:
    from .report import collect_sweep_records, write_sweep_table

    with _guarded(args, [args.out], args.records):
        return write_sweep_table(collect_sweep_records(args.records, args.name, args.parameter), args.out)


def _add_figure_set_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `iid-distill tsne` and `iid-distill grids`."""
    parser.add_argument("sets", nargs="+", metavar="SET", help="synthetic-set files (.pt)")
    parser.add_argument("--out", required=True, help="output stem: writes STEM.png and STEM.pdf")
    parser.add_argument("--titles", nargs="+", default=None, metavar="T", help="one panel title per SET (default: '<method>, IPC <ipc>')")
    parser.add_argument("--title", dest="suptitle", default=None, help="figure title")
    parser.add_argument("--data-label", dest="data_labels", type=data_label_option, action="append", default=[], metavar="DATASET=LABEL",
                        help="display name of a dataset, e.g. cifar10='CIFAR-10 (JPEG copy)' (repeatable)")
    parser.add_argument("--source", default=None, help="dataset source, only to read class names of CIFAR-100 / Tiny ImageNet")
    parser.add_argument("--cache-dir", dest="cache_dir", default=None, help="prepared-data cache, only to read class names of CIFAR-100 / Tiny ImageNet")
    add_force_option(parser)


def _add_tsne_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _add_figure_set_options(parser)
    parser.add_argument("--pool", default=None, help="pre-trained pool (default: results/pools/<dataset>-ResNet18, the workflow's)")
    parser.add_argument("--model-index", dest="model_index", type=int, default=0, help="which pool model gives the features (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="t-SNE random state (default 0)")
    parser.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity (default: min(30, (N - 1) / 3))")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda[:N] for the feature network (default auto)")
    return parser


def cmd_tsne(args: argparse.Namespace) -> list[Path]:
    from .report.figures import figure_files
    from .visualize import render_tsne_figure

    with _guarded(args, figure_files(args.out), args.sets):
        paths = render_tsne_figure(args.sets, args.titles, args.pool, args.out, resolve_device(args.device), args.seed, suptitle=args.suptitle,
                                   perplexity=args.perplexity, model_index=args.model_index, data_labels=dict(args.data_labels),
                                   source=args.source, cache_dir=args.cache_dir)
    print("\n".join(str(path) for path in paths))
    return paths


def _add_grids_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .visualize import DEFAULT_IMAGES_PER_CLASS, DEFAULT_MAX_CLASSES

    _add_figure_set_options(parser)
    parser.add_argument("--max-classes", dest="max_classes", type=int, default=DEFAULT_MAX_CLASSES,
                        help=f"show at most this many classes per set, titled 'partial' (default {DEFAULT_MAX_CLASSES})")
    parser.add_argument("--images-per-class", dest="images_per_class", type=int, default=DEFAULT_IMAGES_PER_CLASS,
                        help=f"images shown per class (default {DEFAULT_IMAGES_PER_CLASS})")
    return parser


def cmd_grids(args: argparse.Namespace) -> list[Path]:
    from .report.figures import figure_files
    from .visualize import render_image_grid_figure

    with _guarded(args, figure_files(args.out), args.sets):
        paths = render_image_grid_figure(args.sets, args.titles, args.out, max_classes=args.max_classes, images_per_class=args.images_per_class,
                                         suptitle=args.suptitle, data_labels=dict(args.data_labels), source=args.source, cache_dir=args.cache_dir)
    print("\n".join(str(path) for path in paths))
    return paths


def _add_data_command(commands) -> None:
    data = commands.add_parser("data", help="prepare and inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", help="info or prepare")
    info = data_commands.add_parser("info", help="print one JSON object describing a prepared dataset")
    prepare = data_commands.add_parser("prepare", help="read a dataset source once into the tensor cache")
    prepare.add_argument("--download", action="store_true", help="download the official files through torchvision")
    prepare.add_argument("--force", action="store_true", help="rebuild the cache even if it exists")
    for sub in (info, prepare):
        sub.add_argument("name", nargs="?", default=None, help="cifar10|cifar100|svhn|tinyimagenet|mnist|fashionmnist|digits")
        _add_data_source(sub)
        sub.add_argument("--params", default=None, help="params file (default: ./params.yaml if present)")
        _add_job_option(sub, "data")
    info.set_defaults(func=cmd_data_info)
    prepare.set_defaults(func=cmd_data_prepare)


def _add_coreset_command(commands) -> None:
    from .coreset import coreset_methods, select_coreset

    coreset = commands.add_parser("coreset", help=f"select IPC real images per class ({'|'.join(coreset_methods())})")
    coreset.add_argument("--dataset", default=None, help=DATASET_HELP)
    coreset.add_argument("--method", default=None, choices=coreset_methods(), help="selection method (required)")
    coreset.add_argument("--ipc", type=int, default=None, help="images per class to select (required)")
    coreset.add_argument("--seed", type=int, default=None, help="selection seed (default 0)")
    coreset.add_argument("--out", required=True, help="synthetic-set file to write (.pt)")
    coreset.add_argument("--grid", default=None, help="also write the image grid PNG here")
    coreset.add_argument("--embed-arch", dest="embed_arch", default=None, help="herding / k-center embedding network (default: params coreset.embed_arch)")
    coreset.add_argument("--embed-epochs", dest="embed_epochs", type=int, default=None, help="epochs to train the embedding network (default: params)")
    coreset.add_argument("--forgetting-epochs", dest="forgetting_epochs", type=int, default=None, help="epochs that count forgetting events (default: params)")
    _add_set_option(coreset, "a select_coreset option", keyword_option_names(select_coreset))
    _add_data_source(coreset)
    _add_common(coreset)
    add_force_option(coreset)
    _add_job_option(coreset, "coreset")
    coreset.set_defaults(func=cmd_coreset)


def _add_evaluate_command(commands) -> None:
    from .evaluate import EvalConfig

    evaluate = commands.add_parser("evaluate", help="train fresh networks on a synthetic set and test them")
    evaluate.add_argument("set_paths", metavar="SET", nargs="*", default=None,
                          help="synthetic-set files (.pt) of one dataset; several train together where seed batching is on (auto: CUDA)")
    evaluate.add_argument("--whole-dataset", dest="whole_dataset", default=None, metavar="NAME",
                          help="instead of SET: train on the dataset's whole training split (records: method whole, ipc 0)")
    evaluate.add_argument("--out", required=True, nargs="+", help="JSON records to write, one per seed: one file per SET, in order")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=None, help="evaluation seeds, one trained network each (default: params evaluation.seeds)")
    evaluate.add_argument("--arch", default=None, help="network to train (default: params evaluation.arch, ConvNet)")
    evaluate.add_argument("--epochs", type=int, default=None, help="training epochs (default: params evaluation.epochs, 1000)")
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="training batch size (default: params, 256)")
    evaluate.add_argument("--lr", type=float, default=None, help="learning rate (default: params, 0.01)")
    evaluate.add_argument("--no-dsa", dest="no_dsa", action="store_true", help="train without DSA augmentation")
    _add_set_option(evaluate, "an EvalConfig field", field_names(EvalConfig))
    _add_data_source(evaluate)
    _add_common(evaluate)
    add_force_option(evaluate)
    _add_job_option(evaluate, "evaluate")
    evaluate.set_defaults(func=cmd_evaluate)


def _add_distill_command(commands) -> None:
    from .distill import HOSTS
    from .distill.settings import setting_help

    distill = commands.add_parser("distill", help="distil a dataset with DM or IDM, optionally with the IID constraints")
    distill.add_argument("--dataset", default=None, help=DATASET_HELP)
    distill.add_argument("--ipc", type=int, default=None, help="synthetic images per class (required)")
    distill.add_argument("--method-id", dest="method_id", default=None,
                         help=f"a method id: <host>, <host>_cc, <host>_cm or <host>_iid for a registered host ({', '.join(HOSTS)}, "
                              "or one of params 'plugins'), or a params distill.methods id")
    distill.add_argument("--method", default=None, help=f"instead of --method-id: the host ({', '.join(HOSTS)}, ...)")
    distill.add_argument("--constraints", default=None, choices=["none", "cc", "cm", "cc+cm"], help="with --method: IID constraints (cc+cm = IID)")
    distill.add_argument("--out", required=True, help="synthetic-set file (.pt); <stem>.json, <stem>.png (and <stem>.eval.csv) go beside it")
    distill.add_argument("--pool", default=None, help="pre-trained pool for 'cc' (default: results/pools/<dataset>-<cc_arch>, the workflow's)")
    distill.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                         help="override a DistillConfig field (YAML value; the method id and --ipc give method, constraints and "
                              f"ipc); repeatable. Keys (a host's in brackets): {setting_help()}")
    _add_settings_option(distill)
    distill.add_argument("--iterations", type=int, default=None, help="distillation iterations (default: params distill.common, 20000)")
    distill.add_argument("--seed", type=int, default=None, help="the run's seed: initial images and every draw (default 0)")
    distill.add_argument("--eval-every", dest="eval_every", type=int, default=None, help="evaluate every N iterations into <stem>.eval.csv (0 = off)")
    distill.add_argument("--eval-set", dest="eval_overrides", action="append", default=None, metavar="KEY=VALUE",
                         help="with --eval-every: override an EvalConfig field of the periodic evaluation (default: params evaluation)")
    distill.add_argument("--eval-seeds", dest="eval_seeds", type=int, nargs="+", default=None,
                         help="with --eval-every: evaluation seeds (default: params evaluation.seeds)")
    distill.add_argument("--precision", choices=PRECISIONS, default=None, help="fp32 (exact) or bf16 autocast (the fast mode)")
    _add_resume_options(distill, "an existing <out>.ckpt")
    _add_data_source(distill)
    _add_common(distill)
    add_force_option(distill)
    _add_job_option(distill, "distill")
    distill.set_defaults(func=cmd_distill)


def _add_pretrain_command(commands) -> None:
    from .pretrain import PretrainConfig

    pretrain = commands.add_parser("pretrain", help="train the pool of feature networks for IID's class-centralisation constraint")
    pretrain.add_argument("--dataset", default=None, help=DATASET_HELP)
    pretrain.add_argument("--out", default=None, help="pool directory (default: results/pools/<dataset>-<arch>, the workflow's)")
    pretrain.add_argument("--num-models", dest="num_models", type=int, default=None, help="networks in the pool (default: params pretrain.num_models)")
    pretrain.add_argument("--epochs", type=int, default=None, help="training epochs of each network (default: params pretrain.epochs)")
    _add_set_option(pretrain, "a PretrainConfig field", field_names(PretrainConfig))
    _add_data_source(pretrain)
    _add_common(pretrain)
    _add_job_option(pretrain, "pretrain")
    pretrain.set_defaults(func=cmd_pretrain)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="iid-distill", description="The iid-distill command line: defaults come from params.yaml, flags override them.")
    parser.add_argument("--version", action="version", version=f"iid-distill {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also debug messages (e.g. each job's resolved config)")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below; COMMAND --help for its options")

    _add_data_command(commands)
    _add_coreset_command(commands)
    _add_evaluate_command(commands)
    _add_distill_command(commands)
    _add_pretrain_command(commands)

    show = commands.add_parser("show", help="write the image grid of a synthetic set")
    show.add_argument("set_path", metavar="SET", help="synthetic-set file (.pt)")
    show.add_argument("--out", required=True, help="image grid to write (.png)")
    add_force_option(show)
    show.set_defaults(func=cmd_show)

    continual = commands.add_parser("continual", help="class-incremental learning with a synthetic memory (Figure 7): one class order")
    _add_continual_arguments(continual)
    continual.set_defaults(func=cmd_continual)

    tsne = commands.add_parser("tsne", help="t-SNE of synthetic sets' features through a pool network (Figures 1 and 3)")
    _add_tsne_arguments(tsne)
    tsne.set_defaults(func=cmd_tsne)
    grids = commands.add_parser("grids", help="image grids of synthetic sets, one panel per set (Figure 8)")
    _add_grids_arguments(grids)
    grids.set_defaults(func=cmd_grids)

    aggregate = commands.add_parser("aggregate", help="collect per-seed evaluation records into one tidy runs table (CSV)")
    _add_aggregate_arguments(aggregate)
    aggregate.set_defaults(func=lambda args: print(cmd_aggregate(args)))
    aggregate_sweep = commands.add_parser("aggregate-sweep", help="collect one sweep's evaluation records into a sweep table (CSV)")
    _add_sweep_arguments(aggregate_sweep)
    aggregate_sweep.set_defaults(func=lambda args: print(cmd_aggregate_sweep(args)))
    report = commands.add_parser("report", help="render tables, summary.json and figures beside the paper's numbers")
    _add_report_arguments(report)
    report.set_defaults(func=lambda args: print("\n".join(str(path) for path in cmd_report(args))))
    _add_campaign_command(commands)
    return parser


def _add_campaign_command(commands) -> None:
    campaign = commands.add_parser("campaign", help="the workflow's compute jobs as a plan file, and running one where "
                                   "Snakemake is not (a GPU lease)")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="COMMAND", help="plan or run")
    plan = sub.add_parser("plan", help="write the compute jobs of the workflow's default target for params + overlays")
    plan.add_argument("--params", default="params.yaml", help="the params file the workflow reads (default: params.yaml)")
    plan.add_argument("--configfile", nargs="+", default=[], help="overlays merged over it, as `snakemake --configfile`")
    plan.add_argument("--out", required=True, help="plan file to write (.json)")
    add_force_option(plan)
    plan.set_defaults(func=cmd_campaign_plan)
    run = sub.add_parser("run", help="run a plan's jobs in its order from the repository root (needs only torch)")
    run.add_argument("plan_path", metavar="PLAN", help="plan file (iid-distill campaign plan)")
    run.add_argument("--parallel", type=int, default=1, help="jobs at once (they share the device; default 1)")
    run.add_argument("--threads", type=int, default=2, help="CPU threads of each job (default 2)")
    run.add_argument("--deadline-s", type=float, default=None, help="stop running jobs this many seconds from the start "
                     "(distillations resume from their checkpoints next time)")
    run.add_argument("--summary", default=None, help="JSON file for each job's status and wall time, rewritten as jobs end")
    add_force_option(run)
    run.set_defaults(func=cmd_campaign_run)


def cmd_campaign_plan(args: argparse.Namespace) -> None:
    from .campaign import campaign_jobs, workflow_config, write_plan

    jobs = campaign_jobs(workflow_config(args.params, args.configfile))
    path = write_plan(jobs, args.out, sources=[args.params, *args.configfile], force=args.force)
    print(f"{path}: {len(jobs)} jobs")


def cmd_campaign_run(args: argparse.Namespace) -> None:
    from collections import Counter

    from .campaign import CampaignError, read_plan, run_plan
    from .outputs import output_lock
    from .utils import atomic_write_json

    jobs = read_plan(args.plan_path)
    results: dict[str, dict] = {}

    def report(name, status, wall_s):
        results[name] = {"status": status, "wall_s": wall_s}
        print(f"iid-distill: campaign: {name}: {status} ({wall_s} s)", flush=True)
        if args.summary:
            atomic_write_json(results, args.summary)

    # a second run of the same plan is refused, not raced; an existing summary is kept without --force
    with output_lock(args.plan_path), _guarded(args, [args.summary], [args.plan_path]):
        summary = run_plan(jobs, parallel=args.parallel, threads=args.threads, deadline_s=args.deadline_s, on_change=report)
        counts = Counter(entry["status"] for entry in summary)
        if args.summary:
            atomic_write_json({"jobs": summary, "counts": dict(sorted(counts.items()))}, args.summary)
    print("iid-distill: campaign: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    if counts["failed"] or counts["partial"]:
        raise CampaignError(f"{counts['failed']} failed, {counts['partial']} with partial outputs (see the jobs' logs)")


def main(argv: Sequence[str] | None = None) -> int:
    from .log import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        args.func(args)
    except UserError as error:
        print(f"iid-distill: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file the more specific checks did not anticipate: still one line, naming it
        where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None) or "input/output"
        print(f"iid-distill: error: {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
