rule scores:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
        clusters=CLUSTERS,
    output:
        scores=SCORES,
    log:
        "logs/scores/{model}/{calib}/{clus}/{score}.log",
    benchmark:
        "benchmarks/scores/{model}/{calib}/{clus}/{score}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("scores"),
    params:
        loss=lambda w: SCORINGS[w.score]["score_loss"],
        device_map=model_device_map,
        recompute=config["clustering"]["score_recompute"],
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/scores.py"
