rule scores:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
        clusters=CLUSTERS,
    output:
        scores=SCORES,
    log:
        f"logs/scores/{{model}}/{CALIB}/{CLUS}/{SCORE}.log",
    benchmark:
        f"benchmarks/scores/{{model}}/{CALIB}/{CLUS}/{SCORE}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources(whole_model=True),
    params:
        loss=config["clustering"]["score_loss"],
        device_map=model_device_map,
        recompute=config["clustering"]["score_recompute"],
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/scores.py"
