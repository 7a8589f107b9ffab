# Distillation: DM, IDM and their IID variants (method ids of params distill.methods). Every setting of a job is
# in its resolved config on the command line (params.job), so changing one method's setting re-runs exactly that
# method's jobs.
# A job checkpoints to <set>.pt.ckpt (not an output, so Snakemake leaves it alone) and resumes from it when re-run;
# a checkpoint left by a job of other settings is discarded (--restart-if-stale), since then the job must start over.


rule distill:
    input:
        data=DATA_INFO,
        pool=pool_input("distill"),
    output:
        set=f"{SET_STEM}.pt",
        record=f"{SET_STEM}.json",
        grid=f"{SET_STEM}.png",
    log:
        f"{LOGS}/distill/{{dataset}}_ipc{{ipc}}_{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/distill/{{dataset}}_ipc{{ipc}}_{{method}}.tsv"
    wildcard_constraints:
        method=method_pattern(DISTILL_IDS),
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("distill"),
        mem_mb=memory_of("distill"),
        gpu=GPU,
    params:
        implementation=implementation("distill"),
        job=job_flag("distill"),
        pool=pool_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill distill {params.job} --out {output.set} --restart-if-stale {params.pool}"
        " > {log} 2>&1"
