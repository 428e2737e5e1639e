rule prepare_model:
    output:
        model=directory(MODEL_DIR),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **cpu_resources("prepare_model"),
    params:
        source=lambda w: config["models"][w.model]["source"],
        revision=lambda w: config["models"][w.model].get("revision"),
    script:
        "../workflow_scripts/prepare_model.py"
