rule cluster:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
    output:
        clusters=CLUSTERS,
    log:
        "logs/cluster/{model}/{calib}/{clus}.log",
    benchmark:
        "benchmarks/cluster/{model}/{calib}/{clus}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("cluster"),
    params:
        clustering=lambda w: {
            key: CLUSTERINGS[w.clus][key]
            for key in (
                "k",
                "pca_dims",
                "kmeans",
                "balance_jitter",
                "n_init",
                "max_iter",
                "tol",
                "max_tokens",
            )
        },
        batch_size=model_batch_size("calibration"),
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/cluster.py"
