# Sweeps (Table 5, Figures 3 and 4): one distillation setting of one method varied over params sweeps.NAME.values,
# each value distilled and evaluated like a grid cell, then tabulated per sweep (value read back from each set).


rule distill_sweep:
    input:
        data=sweep_data_info,
        pool=pool_input("distill_sweep"),
    output:
        set=f"{SWEEP_STEM}.pt",
        record=f"{SWEEP_STEM}.json",
        grid=f"{SWEEP_STEM}.png",
    log:
        f"{LOGS}/sweeps/{{sweep}}_{{value}}.log",
    benchmark:
        f"{BENCHMARKS}/sweeps/{{sweep}}_{{value}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("distill"),
        mem_mb=memory_of("distill"),
        gpu=GPU,
    params:
        implementation=implementation("distill"),
        job=job_flag("distill_sweep"),
        pool=pool_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill distill {params.job} --out {output.set} --restart-if-stale {params.pool}"
        " > {log} 2>&1"


rule evaluate_sweep:
    input:
        set=f"{SWEEP_STEM}.pt",
        data=sweep_data_info,
    output:
        records=SWEEP_RECORDS,
    log:
        f"{LOGS}/sweeps/{{sweep}}_{{value}}_{{arch}}.log",
    benchmark:
        f"{BENCHMARKS}/sweeps/{{sweep}}_{{value}}_{{arch}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("evaluate"),
        mem_mb=memory_of("evaluate"),
        gpu=GPU,
    params:
        implementation=implementation("evaluate"),
        job=job_flag("evaluate_sweep"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill evaluate {input.set} {params.job} --out {output.records} > {log} 2>&1"


rule aggregate_sweep:
    input:
        records=lambda wildcards: FILES.sweep_record_files(wildcards.sweep),
    output:
        table=SWEEP_TABLE,
    log:
        f"{LOGS}/sweeps/{{sweep}}_aggregate.log",
    conda:
        ENV_FILE
    params:
        implementation=implementation("report"),
        parameter=lambda wildcards: sweep_block(wildcards)["parameter"],
    shell:
        "iid-distill aggregate-sweep --name {wildcards.sweep} --parameter {params.parameter}"
        " --records {input.records} --out {output.table} > {log} 2>&1"
