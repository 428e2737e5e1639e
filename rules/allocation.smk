rule complexity:
    input:
        model=MODEL_DIR,
        windows=WINDOWS,
    output:
        fc=COMPLEXITY,
    log:
        f"logs/complexity/{{model}}/{CALIB}.log",
    benchmark:
        f"benchmarks/complexity/{{model}}/{CALIB}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources(),
    params:
        batch_size=model_batch_size("calibration"),
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/complexity.py"


rule allocate:
    input:
        unpack(allocation_inputs),
    output:
        allocation=ALLOCATION,
    log:
        f"logs/allocate/{{model}}/{CALIB}/{{alloc}}/sp{{sparsity}}.log",
    benchmark:
        f"benchmarks/allocate/{{model}}/{CALIB}/{{alloc}}/sp{{sparsity}}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources(),
    params:
        method=lambda w: allocation_params(w.alloc),
        sparsity=lambda w: float(w.sparsity),
    script:
        "../workflow_scripts/allocate.py"
