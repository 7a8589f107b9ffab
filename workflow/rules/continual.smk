# Continual learning (Figure 7): one job per (steps, class order, method) runs every step (synthesise the new classes'
# images, train fresh models on the memory, test on the seen classes); its step sets and progress live in
# <record>.steps/, so an interrupted job resumes at its last finished step; a job re-run because its settings changed
# discards the old progress (--restart-if-stale).


rule continual:
    input:
        data=DATA_INFO,
        pool=continual_pool_input,
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
        gpu=GPU,
    params:
        implementation=implementation("continual", "distill", "coreset", "evaluate"),
        ipc=config["continual"].get("ipc"),
        models=config["continual"].get("models_per_step"),
        work_dir=lambda wildcards, output: output.record.removesuffix(".json")
        + ".steps",
        settings=continual_flags,
        pool=pool_flag,
        data=data_flags,
        device=device_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill continual --dataset {wildcards.dataset} --method {wildcards.method}"
        " --steps {wildcards.steps} --order {wildcards.order} --ipc {params.ipc} --models-per-step {params.models}"
        " --work-dir {params.work_dir} --out {output.record} --restart-if-stale {params.pool} {params.settings} {params.data}"
        " {params.device} > {log} 2>&1"
