# The pool of pre-trained feature networks for IID's class centralisation, one per dataset (only datasets whose
# grid has a method with constraint "cc" need one). The pool directory holds the models; its manifest, copied
# beside it once the pool is complete, is the output, so an interrupted pool resumes model by model.


rule pretrain_pool:
    input:
        data=DATA_INFO,
    output:
        manifest=POOL_MANIFEST,
    log:
        f"{LOGS}/pretrain_pool/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain_pool/{{dataset}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("pretrain"),
        mem_mb=memory_of("pretrain"),
        gpu=GPU,
    params:
        implementation=implementation("pretrain", "evaluate"),
        pool=lambda wildcards, output: output.manifest.removesuffix(".json"),
        job=job_flag("pretrain_pool"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill pretrain {params.job} --out {params.pool} > {log} 2>&1"
        " && cp {params.pool}/pool.json {output.manifest}"


# A named pool of params `pools` (the pool study: e.g. 4 untrained networks), for the method ids whose
# distill.methods entry names it (`pool: NAME`); same steps as the dataset's default pool.
rule pretrain_pool_variant:
    input:
        data=DATA_INFO,
    output:
        manifest=POOL_VARIANT_MANIFEST,
    log:
        f"{LOGS}/pretrain_pool/{{dataset}}-{{pool}}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain_pool/{{dataset}}-{{pool}}.tsv"
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("pretrain"),
        mem_mb=memory_of("pretrain"),
        gpu=GPU,
    params:
        implementation=implementation("pretrain", "evaluate"),
        pool=lambda wildcards, output: output.manifest.removesuffix(".json"),
        job=job_flag("pretrain_pool_variant"),
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill pretrain {params.job} --out {params.pool} > {log} 2>&1"
        " && cp {params.pool}/pool.json {output.manifest}"
