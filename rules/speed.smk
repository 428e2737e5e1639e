rule evaluate_speed:
    input:
        checkpoint=CHECKPOINT,
        dense=MODEL_DIR,
    output:
        metrics=SPEED,
    log:
        "logs/evaluate_speed/{model}/{method}/sp{sparsity}.log",
    benchmark:
        "benchmarks/evaluate_speed/{model}/{method}/sp{sparsity}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: speed_threads()
    resources:
        **gpu_resources("evaluate_speed"),
    params:
        **{k: v for k, v in config["speed"].items() if k not in ("enabled", "threads")},
        model=lambda w: w.model,
        method=lambda w: w.method,
        sparsity=lambda w: float(w.sparsity),
        dtype=lambda w: model_dtype(w.model),
        device_map=model_device_map,
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/evaluate_speed.py"
