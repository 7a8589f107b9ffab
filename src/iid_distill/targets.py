"""The files the workflow builds, from its merged config: the path templates of every step and the lists of files the
enabled grids and families ask for. ``workflow/rules/common.smk`` holds one :class:`WorkflowFiles` and its rules
read their paths from it; tests/test_plan.py checks the lists here without Snakemake.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import plan


class WorkflowFiles:
    """Path templates (``{dataset}``, ``{ipc}``, ... wildcards) under ``results_dir`` and ``report_dir``, and the file
    lists the workflow's targets are made of."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        results = config["results_dir"].rstrip("/")
        self.results, self.report_dir = results, config["report_dir"].rstrip("/")
        self.logs, self.benchmarks = f"{results}/logs", f"{results}/benchmarks"
        self.data_info = f"{results}/data/{{dataset}}.json"
        # <pool dir>.json: copy of <pool dir>/pool.json once the pool is complete; the pool dir is where the CLI looks
        self.pool_manifest = f"{results}/pools/{{dataset}}-{config['pretrain']['arch']}.json"
        self.pool_variant_manifest = f"{results}/pools/variants/{{dataset}}-{{pool}}.json"  # a named pool (params pools)
        self.set_stem = f"{results}/sets/{{dataset}}/ipc{{ipc}}/{{method}}"
        self.eval_records = f"{results}/evals/{{dataset}}/ipc{{ipc}}/{{method}}.{{arch}}.json"
        self.whole_records = f"{results}/evals/{{dataset}}/whole.{{arch}}.json"
        self.sweep_stem = f"{results}/sweeps/{{sweep}}/{{value}}"
        self.sweep_records = f"{results}/sweeps/{{sweep}}/{{value}}.{{arch}}.json"
        self.sweep_table = f"{results}/sweeps/{{sweep}}.csv"
        self.convergence_stem = f"{results}/convergence/{{dataset}}/ipc{{ipc}}/{{method}}"
        self.continual_record = f"{results}/continual/{{dataset}}/steps{{steps}}/order{{order}}/{{method}}.json"
        self.runs_table = f"{results}/all_runs.csv"
        self.report_summary = f"{self.report_dir}/summary.json"
        self.report_metrics = f"{self.report_dir}/metrics.json"  # accuracy per cell (DVC metrics)

    # ---------------------------------------------------------------------------------------- step outputs

    def pool_files(self, job: Mapping[str, Any]) -> list[str]:
        """The pool manifest a job (iid_distill.jobs) reads: its named pool's, the dataset's default one's, or none
        when its settings use no class centralisation."""
        from .jobs import needs_pool

        if not needs_pool(job):
            return []
        dataset = job["data"]["dataset"]
        if job.get("pool"):
            return [self.pool_variant_manifest.format(dataset=dataset, pool=job["pool"])]
        return [self.pool_manifest.format(dataset=dataset)]

    def evaluation_files(self) -> list[str]:
        """Every records file of the runs table: the grids' sets and the whole-dataset references."""
        config = self.config
        return ([self.eval_records.format(dataset=d, ipc=i, method=m, arch=a) for d, i, m, a in plan.grid_cells(config)]
                + [self.whole_records.format(dataset=d, arch=a) for d, a in plan.whole_cells(config)])

    def sweep_record_files(self, sweep: str) -> list[str]:
        arch = plan.sweep_arch(self.config, sweep)
        return [self.sweep_records.format(sweep=sweep, value=plan.sweep_value_text(value), arch=arch)
                for value in self.config["sweeps"][sweep]["values"]]

    def sweep_table_files(self) -> list[str]:
        return [self.sweep_table.format(sweep=sweep) for sweep in sorted(plan.enabled_sweeps(self.config))]

    def convergence_files(self) -> list[str]:
        return [self.convergence_stem.format(dataset=d, ipc=i, method=m) + ".eval.csv" for d, i, m in plan.convergence_cells(self.config)]

    def continual_files(self) -> list[str]:
        dataset = self.config["continual"].get("dataset")
        return [self.continual_record.format(dataset=dataset, steps=steps, order=order, method=method)
                for steps, order, method in plan.continual_cells(self.config)]

    def set_file(self, dataset: str, ipc: int, method: str) -> str:
        return self.set_stem.format(dataset=dataset, ipc=ipc, method=method) + ".pt"

    def tsne_sets(self) -> list[str]:
        block = self.config["figures"]["tsne"]
        return [self.set_file(block["dataset"], ipc, method) for ipc in block["ipc"] for method in block["methods"]]

    def tsne_sweep(self) -> Mapping[str, Any]:
        return self.config["sweeps"][self.config["figures"]["tsne_sweep"]["sweep"]]

    def tsne_sweep_sets(self) -> list[str]:
        sweep = self.config["figures"]["tsne_sweep"]["sweep"]
        return [self.sweep_stem.format(sweep=sweep, value=plan.sweep_value_text(value)) + ".pt"
                for value in self.config["sweeps"][sweep]["values"]]

    def image_grid_sets(self) -> list[str]:
        block = self.config["figures"]["image_grids"]
        return [self.set_file(dataset, block["ipc"], block["method"]) for dataset in block["datasets"]]

    # ---------------------------------------------------------------------------------------- the report

    def report_file(self, name: str) -> str:
        return f"{self.report_dir}/{name}"

    def figure_files(self, stem: str) -> list[str]:
        return [self.report_file(f"{stem}.{suffix}") for suffix in ("png", "pdf")]  # report.save_figure writes both

    def report_tables(self) -> list[str]:
        return [self.report_file(name) for name in plan.report_table_files(self.config)]

    def report_figure_files(self) -> list[str]:
        return [path for stem in plan.report_figure_stems(self.config) for path in self.figure_files(stem)]

    def figure_data_files(self) -> list[str]:
        """<figure>.csv: the points each report figure draws (DVC plots read them)."""
        return [self.report_file(f"{stem}.csv") for stem in plan.report_figure_stems(self.config)]

    def convergence_table_files(self) -> list[str]:
        """convergence.md (final and best-of-run accuracy of the Figure 5 runs), where convergence runs are enabled."""
        return [self.report_file("convergence.md")] if plan.convergence_cells(self.config) else []

    def set_figure_files(self) -> list[str]:
        return [path for stem in plan.set_figure_stems(self.config) for path in self.figure_files(stem)]

    def report_files(self) -> list[str]:
        """Everything the workflow's default target builds."""
        return (self.report_tables() + [self.report_summary, self.report_metrics] + self.convergence_table_files()
                + self.figure_data_files() + self.report_figure_files() + self.set_figure_files())


__all__ = ["WorkflowFiles"]
