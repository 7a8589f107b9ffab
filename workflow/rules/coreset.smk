# Coreset baselines (Tables 1 and 2): Random, Herding, K-Center, Forgetting select IPC real images per class.


rule coreset:
    input:
        data=DATA_INFO,
    output:
        set=f"{SET_STEM}.pt",
        grid=f"{SET_STEM}.png",
    log:
        f"{LOGS}/coreset/{{dataset}}_ipc{{ipc}}_{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/coreset/{{dataset}}_ipc{{ipc}}_{{method}}.tsv"
    wildcard_constraints:
        method=method_pattern(CORESET_METHODS),
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("coreset"),
        mem_mb=memory_of("coreset"),
        gpu=lambda wildcards: 0 if wildcards.method == "random" else GPU,
    params:
        implementation=implementation("coreset", "evaluate"),
        job=job_flag("coreset"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill coreset {params.job} --out {output.set} --grid {output.grid} > {log} 2>&1"
