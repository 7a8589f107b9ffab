# Results: every evaluation record -> one runs table (results/all_runs.csv); with the sweep tables, the convergence
# curves and the continual records -> the report (tables beside the paper's numbers, summary.json, figures) in report_dir.


localrules:
    aggregate,
    report,


rule aggregate:
    input:
        records=FILES.evaluation_files(),
    output:
        runs=RUNS_TABLE,
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCHMARKS}/aggregate.tsv"
    conda:
        ENV_FILE
    params:
        implementation=implementation("report"),
        expect=expect_seeds_flag,
    shell:
        "iid-distill aggregate --records {input.records} --out {output.runs} {params.expect} > {log} 2>&1"


rule report:
    input:
        runs=RUNS_TABLE,
        sweeps=FILES.sweep_table_files(),
        convergence=FILES.convergence_files(),
        continual=FILES.continual_files(),
        paper=config["paper_numbers"],
    output:
        tables=reported(FILES.report_tables(), "Tables"),
        summary=reported([FILES.report_summary], "Summary")[0],
        metrics=FILES.report_metrics,
        figure_data=FILES.figure_data_files(),
        figures=reported(FILES.report_figure_files(), "Figures"),
        convergence_table=reported(FILES.convergence_table_files(), "Tables"),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    conda:
        ENV_FILE
    params:
        implementation=implementation("report"),
        out=lambda wildcards, output: os.path.dirname(output.summary) or ".",
        labels=report_label_flags,
        families=report_family_flags,
        inputs=lambda wildcards, input: " ".join(
            [
                files_flag("--sweeps", input.sweeps),
                files_flag("--convergence", input.convergence),
                files_flag("--continual", input.continual),
            ]
        ),
    # --force: the report's files are this rule's outputs (Snakemake re-runs it to replace them), not finished results
    shell:
        "iid-distill report --force --runs {input.runs} --paper {input.paper} --out {params.out}"
        " {params.inputs} {params.families} {params.labels} > {log} 2>&1"
