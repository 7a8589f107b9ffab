# Datasets: read each source once into the tensor cache (data.cache_dir) and record what was read.


rule prepare_data:
    input:
        source=data_source,
    output:
        info=DATA_INFO,
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/prepare_data/{{dataset}}.tsv"
    conda:
        ENV_FILE
    resources:
        runtime=runtime_of("prepare"),
        mem_mb=memory_of("prepare"),
    params:
        implementation=implementation("prepare"),
        job=job_flag("prepare_data"),
    shell:
        "(iid-distill data prepare {params.job} && iid-distill data info {params.job} > {output.info}) 2> {log}"
