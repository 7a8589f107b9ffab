# Convergence (Figure 5): distillation runs of their own (params convergence) that evaluate the synthetic set every
# eval_every iterations into <set>.eval.csv; the grids' sets keep their settings and are not re-run.


rule distill_convergence:
    input:
        data=DATA_INFO,
        pool=pool_input("distill_convergence"),
    output:
        set=f"{CONVERGENCE_STEM}.pt",
        record=f"{CONVERGENCE_STEM}.json",
        grid=f"{CONVERGENCE_STEM}.png",
        curve=f"{CONVERGENCE_STEM}.eval.csv",
    log:
        f"{LOGS}/convergence/{{dataset}}_ipc{{ipc}}_{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/convergence/{{dataset}}_ipc{{ipc}}_{{method}}.tsv"
    wildcard_constraints:
        method=method_pattern(DISTILL_IDS),
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("convergence"),
        mem_mb=memory_of("convergence"),
        gpu=GPU,
    params:
        implementation=implementation("distill", "evaluate"),
        job=job_flag("distill_convergence"),
        pool=pool_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill distill {params.job} --out {output.set} --restart-if-stale {params.pool}"
        " > {log} 2>&1"
