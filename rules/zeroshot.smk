ZS_PARAMS = dict(
    data_dir=DATA_DIR,
    batch_size=model_batch_size("zeroshot"),
    seed=config["seed"],
    device=config["device"],
    task=lambda w: w.task,
    limit=zeroshot_param("limit"),
    num_fewshot=zeroshot_param("num_fewshot"),
    model=lambda w: w.model,
    dtype=lambda w: model_dtype(w.model),
    device_map=model_device_map,
)


rule evaluate_zeroshot:
    input:
        checkpoint=CHECKPOINT,
    output:
        metrics=ZEROSHOT,
    log:
        "logs/evaluate_zeroshot/{model}/{method}/sp{sparsity}/{task}.log",
    benchmark:
        "benchmarks/evaluate_zeroshot/{model}/{method}/sp{sparsity}/{task}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("evaluate_zeroshot"),
    params:
        **ZS_PARAMS,
        method=lambda w: w.method,
        sparsity=lambda w: float(w.sparsity),
    script:
        "../workflow_scripts/evaluate_zeroshot.py"


rule evaluate_zeroshot_dense:
    input:
        checkpoint=MODEL_DIR,
    output:
        metrics=ZEROSHOT_DENSE,
    log:
        "logs/evaluate_zeroshot/{model}/dense/{task}.log",
    benchmark:
        "benchmarks/evaluate_zeroshot/{model}/dense/{task}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("evaluate_zeroshot_dense"),
    params:
        **ZS_PARAMS,
        method="dense",
        sparsity=0.0,
    script:
        "../workflow_scripts/evaluate_zeroshot.py"
