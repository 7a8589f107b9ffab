# Figures drawn from the synthetic sets: Figure 1 (t-SNE of DM vs DM+IID features through the dataset's first pool
# network), Figure 3 (the same for each value of a sweep, e.g. beta) and Figure 8 (image grids of every dataset).


localrules:
    image_grids_figure,


rule tsne_figure:
    input:
        sets=lambda wildcards: FILES.tsne_sets(),
        pool=lambda wildcards: pool_of(config["figures"]["tsne"]["dataset"]),
    output:
        reported(FILES.figure_files("figure1_tsne"), "Figures"),
    log:
        f"{LOGS}/figures/figure1_tsne.log",
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("figures"),
        mem_mb=memory_of("figures"),
        gpu=GPU,
    params:
        implementation=implementation("figures"),
        stem=figure_stem,
        seed=config["figures"].get("tsne", {}).get("seed", 0),
        pool=pool_flag,
        labels=report_label_flags,
        device=device_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill tsne {input.sets} {params.pool} --seed {params.seed} --out {params.stem}"
        " {params.labels} {params.device} > {log} 2>&1"


rule tsne_sweep_figure:
    input:
        sets=lambda wildcards: FILES.tsne_sweep_sets(),
        pool=lambda wildcards: pool_of(FILES.tsne_sweep()["dataset"]),
    output:
        reported(FILES.figure_files("figure3_tsne_sweep"), "Figures"),
    log:
        f"{LOGS}/figures/figure3_tsne_sweep.log",
    conda:
        ENV_FILE
    threads: THREADS
    resources:
        runtime=runtime_of("figures"),
        mem_mb=memory_of("figures"),
        gpu=GPU,
    params:
        implementation=implementation("figures"),
        stem=figure_stem,
        seed=config["figures"].get("tsne_sweep", {}).get("seed", 0),
        titles=tsne_sweep_titles,
        pool=pool_flag,
        labels=report_label_flags,
        device=device_flag,
        gpu=gpu_wrapper,
    shell:
        "{params.gpu} iid-distill tsne {input.sets} {params.pool} --titles {params.titles} --seed {params.seed}"
        " --out {params.stem} {params.labels} {params.device} > {log} 2>&1"


rule image_grids_figure:
    input:
        sets=lambda wildcards: FILES.image_grid_sets(),
    output:
        reported(FILES.figure_files("figure8_images"), "Figures"),
    log:
        f"{LOGS}/figures/figure8_images.log",
    conda:
        ENV_FILE
    params:
        implementation=implementation("figures"),
        stem=figure_stem,
        max_classes=config["figures"].get("image_grids", {}).get("max_classes", 10),
        labels=report_label_flags,
    shell:
        "iid-distill grids {input.sets} --max-classes {params.max_classes} --out {params.stem}"
        " {params.labels} > {log} 2>&1"
