rule prune:
    input:
        unpack(prune_inputs),
    output:
        checkpoint=checkpoint_output(),
    log:
        "logs/prune/{model}/{method}/sp{sparsity}.log",
    benchmark:
        "benchmarks/prune/{model}/{method}/sp{sparsity}.tsv"
    wildcard_constraints:
        method=_alternatives(METHODS),
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("prune"),
    params:
        model=lambda w: w.model,
        method_name=lambda w: w.method,
        method=lambda w: method_params(w.model, w.method),
        sparsity=lambda w: float(w.sparsity),
        batch_size=model_batch_size("calibration"),
        dtype=lambda w: model_dtype(w.model),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/prune.py"
