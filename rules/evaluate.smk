EVAL_PARAMS = dict(
    seqlen=config["evaluation"]["seqlen"],
    max_windows=config["evaluation"]["max_windows"],
    batch_size=model_batch_size("evaluation"),
    data_dir=DATA_DIR,
    seed=config["seed"],
    device=config["device"],
    device_map=model_device_map,
)


rule evaluate_ppl:
    input:
        checkpoint=CHECKPOINT,
    output:
        metrics=PPL,
    log:
        "logs/evaluate_ppl/{dataset}/{model}/{method}/sp{sparsity}.log",
    benchmark:
        "benchmarks/evaluate_ppl/{dataset}/{model}/{method}/sp{sparsity}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("evaluate_ppl"),
    params:
        **EVAL_PARAMS,
        model=lambda w: w.model,
        dataset=lambda w: w.dataset,
        method=lambda w: w.method,
        sparsity=lambda w: float(w.sparsity),
        dtype=lambda w: model_dtype(w.model),
    script:
        "../workflow_scripts/evaluate_ppl.py"


rule evaluate_dense:
    input:
        checkpoint=MODEL_DIR,
    output:
        metrics=PPL_DENSE,
    log:
        "logs/evaluate_ppl/{dataset}/{model}/dense.log",
    benchmark:
        "benchmarks/evaluate_ppl/{dataset}/{model}/dense.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("evaluate_dense"),
    params:
        **EVAL_PARAMS,
        model=lambda w: w.model,
        dataset=lambda w: w.dataset,
        method="dense",
        sparsity=0.0,
        dtype=lambda w: model_dtype(w.model),
    script:
        "../workflow_scripts/evaluate_ppl.py"
