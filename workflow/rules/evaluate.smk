# Evaluation protocol: fresh networks of one architecture trained on a synthetic set, one per evaluation seed
# (params evaluation.seeds), final test accuracy; one records file per (set, architecture).


rule evaluate:
    input:
        set=f"{SET_STEM}.pt",
        data=DATA_INFO,
    output:
        records=EVAL_RECORDS,
    log:
        f"{LOGS}/evaluate/{{dataset}}_ipc{{ipc}}_{{method}}_{{arch}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{dataset}}_ipc{{ipc}}_{{method}}_{{arch}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("evaluate"),
        mem_mb=memory_of("evaluate"),
        gpu=GPU,
    params:
        implementation=implementation("evaluate"),
        job=job_flag("evaluate"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill evaluate {input.set} {params.job} --out {output.records} > {log} 2>&1"


rule evaluate_whole_dataset:
    input:
        data=DATA_INFO,
    output:
        records=WHOLE_RECORDS,
    log:
        f"{LOGS}/evaluate/{{dataset}}_whole_{{arch}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{dataset}}_whole_{{arch}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("whole_dataset"),
        mem_mb=memory_of("whole_dataset"),
        gpu=GPU,
    params:
        implementation=implementation("evaluate"),
        job=job_flag("evaluate_whole_dataset"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill evaluate --whole-dataset {wildcards.dataset} {params.job}"
        " --out {output.records} > {log} 2>&1"
