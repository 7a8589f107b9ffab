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
        gpu=GPU,
    params:
        implementation=implementation("evaluate"),
        settings=evaluation_flags,
        seeds=evaluation_seeds,
        data=data_flags,
        device=device_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill evaluate {input.set} --out {output.records} --seeds {params.seeds}"
        " {params.settings} {params.data} {params.device} > {log} 2>&1"


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
        gpu=GPU,
    params:
        implementation=implementation("evaluate"),
        settings=whole_evaluation_flags,
        seeds=evaluation_seeds,
        data=data_flags,
        device=device_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill evaluate --whole-dataset {wildcards.dataset} --out {output.records}"
        " --seeds {params.seeds} {params.settings} {params.data} {params.device} > {log} 2>&1"
