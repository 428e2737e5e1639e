rule export_gguf:
    input:
        checkpoint=CHECKPOINT,
    output:
        gguf=GGUF,
        report=f"{GGUF}.json",
    log:
        "logs/export_gguf/{model}/{method}/sp{sparsity}.{gguf_type}.log",
    benchmark:
        "benchmarks/export_gguf/{model}/{method}/sp{sparsity}.{gguf_type}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("export_gguf"),
    params:
        source=lambda w: model_cfg(w.model)["source"],
        name=lambda w: f"{w.model}-{w.method}-sp{w.sparsity}",
        key=lambda w: dict(
            model=w.model,
            method=w.method,
            sparsity=float(w.sparsity),
            gguf_type=w.gguf_type,
        ),
    script:
        "../workflow_scripts/export_gguf.py"


rule export_gguf_dense:
    input:
        checkpoint=MODEL_DIR,
    output:
        gguf=GGUF_DENSE,
        report=f"{GGUF_DENSE}.json",
    log:
        "logs/export_gguf/{model}/dense.{gguf_type}.log",
    benchmark:
        "benchmarks/export_gguf/{model}/dense.{gguf_type}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("export_gguf_dense"),
    params:
        source=lambda w: model_cfg(w.model)["source"],
        name=lambda w: f"{w.model}-dense",
        key=lambda w: dict(
            model=w.model, method="dense", sparsity=0.0, gguf_type=w.gguf_type
        ),
    script:
        "../workflow_scripts/export_gguf.py"


ENGINE_PPL_PARAMS = dict(
    seqlen=config["evaluation"]["seqlen"],
    max_windows=config["evaluation"]["max_windows"],
    engine_windows=config["export"]["engine"]["max_windows"],
    data_dir=DATA_DIR,
    seed=config["seed"],
    model=lambda w: w.model,
    dataset=lambda w: w.dataset,
    gguf_type=lambda w: w.gguf_type,
)


rule engine_ppl:
    input:
        gguf=GGUF,
        torch_ppl=PPL,
        tokenizer=MODEL_DIR,
    output:
        metrics=ENGINE_PPL,
    log:
        "logs/engine_ppl/{dataset}/{model}/{method}/sp{sparsity}.{gguf_type}.log",
    benchmark:
        "benchmarks/engine_ppl/{dataset}/{model}/{method}/sp{sparsity}.{gguf_type}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **cpu_resources("engine_ppl"),
    params:
        **ENGINE_PPL_PARAMS,
        method=lambda w: w.method,
        sparsity=lambda w: float(w.sparsity),
    script:
        "../workflow_scripts/engine_ppl.py"


rule engine_ppl_dense:
    input:
        gguf=GGUF_DENSE,
        torch_ppl=PPL_DENSE,
        tokenizer=MODEL_DIR,
    output:
        metrics=ENGINE_PPL_DENSE,
    log:
        "logs/engine_ppl/{dataset}/{model}/dense.{gguf_type}.log",
    benchmark:
        "benchmarks/engine_ppl/{dataset}/{model}/dense.{gguf_type}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **cpu_resources("engine_ppl_dense"),
    params:
        **ENGINE_PPL_PARAMS,
        method="dense",
        sparsity=0.0,
    script:
        "../workflow_scripts/engine_ppl.py"


rule engine_speed:
    input:
        gguf=GGUF,
        dense=GGUF_DENSE,
    output:
        metrics=ENGINE_SPEED,
    log:
        "logs/engine_speed/{model}/{method}/sp{sparsity}.{gguf_type}.log",
    benchmark:
        "benchmarks/engine_speed/{model}/{method}/sp{sparsity}.{gguf_type}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: speed_threads()
    resources:
        **cpu_resources("engine_speed"),
    params:
        **{
            k: v
            for k, v in config["export"]["engine"].items()
            if k in ("prompt_len", "gen_tokens", "repeats")
        },
        model=lambda w: w.model,
        method=lambda w: w.method,
        sparsity=lambda w: float(w.sparsity),
        gguf_type=lambda w: w.gguf_type,
        seed=config["seed"],
    script:
        "../workflow_scripts/engine_speed.py"
