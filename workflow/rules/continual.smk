# Continual learning (Figure 7): one job per (steps, class order, method) runs every step (synthesise the new classes'
# images, train fresh models on the memory, test on the seen classes); its step sets and progress live in
# <record>.steps/, so an interrupted job resumes at its last finished step; a job re-run because its settings changed
# discards the old progress (--restart-if-stale).


rule continual:
    input:
        data=DATA_INFO,
        pool=pool_input("continual"),
    output:
        record=CONTINUAL_RECORD,
    log:
        f"{LOGS}/continual/{{dataset}}_steps{{steps}}_order{{order}}_{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/continual/{{dataset}}_steps{{steps}}_order{{order}}_{{method}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("continual"),
        mem_mb=memory_of("continual"),
        gpu=GPU,
    params:
        implementation=implementation("continual", "distill", "coreset", "evaluate"),
        work_dir=lambda wildcards, output: output.record.removesuffix(".json")
        + ".steps",
        job=job_flag("continual"),
        pool=pool_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill continual {params.job} --work-dir {params.work_dir} --out {output.record}"
        " --restart-if-stale {params.pool} > {log} 2>&1"
