rule complexity:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
    output:
        fc=COMPLEXITY,
    log:
        "logs/complexity/{model}/{calib}.log",
    benchmark:
        "benchmarks/complexity/{model}/{calib}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("complexity"),
    params:
        batch_size=model_batch_size("calibration"),
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/complexity.py"


rule importance:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
    output:
        importance=IMPORTANCE,
    log:
        "logs/importance/{model}/{calib}/{measure}.log",
    benchmark:
        "benchmarks/importance/{model}/{calib}/{measure}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("importance"),
    params:
        measure=lambda w: w.measure,
        device_map=model_device_map,
        batch_size=model_batch_size("calibration"),
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/importance.py"


rule allocate:
    input:
        unpack(allocation_inputs),
    output:
        allocation=ALLOCATION,
    log:
        "logs/allocate/{model}/{calib}/{alloc}/sp{sparsity}.log",
    benchmark:
        "benchmarks/allocate/{model}/{calib}/{alloc}/sp{sparsity}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("allocate"),
    params:
        method=lambda w: allocation_params(w.alloc),
        sparsity=lambda w: float(w.sparsity),
    script:
        "../workflow_scripts/allocate.py"
