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
        **cpu_resources(),
    params:
        source=lambda w: model_cfg(w.model)["source"],
        name=lambda w: f"{w.model}-{w.method}-sp{w.sparsity}",
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
        **cpu_resources(),
    params:
        source=lambda w: model_cfg(w.model)["source"],
        name=lambda w: f"{w.model}-dense",
    script:
        "../workflow_scripts/export_gguf.py"
