rule recovery_data:
    input:
        model=MODEL_DIR,
    output:
        windows=RECOVERY_WINDOWS,
    log:
        "logs/recovery_data/{model}/{rdata}.log",
    benchmark:
        "benchmarks/recovery_data/{model}/{rdata}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("recovery_data"),
    params:
        settings=lambda w: RECOVERY_DATA[w.rdata],
        evaluation=PPL_DATASETS,
        data_dir=DATA_DIR,
        seed=config["seed"],
    script:
        "../workflow_scripts/recovery_data.py"


rule recover:
    input:
        unpack(recovery_inputs),
    output:
        checkpoint=checkpoint_output(),
        curve=RECOVERY_CURVE,
        report=RECOVERY_REPORT,
    log:
        "logs/recover/{model}/{method}/sp{sparsity}.log",
    benchmark:
        "benchmarks/recover/{model}/{method}/sp{sparsity}.tsv"
    wildcard_constraints:
        method=_alternatives(RECOVERED or ["none"]),
    conda:
        "../envs/fangprune.yaml"
    threads: config["threads"]
    resources:
        **gpu_resources("recover"),
    params:
        model=lambda w: w.model,
        method=lambda w: w.method,
        variant=lambda w: RECOVERED[w.method][1],
        settings=lambda w: VARIANTS[RECOVERED[w.method][1]],
        sparsity=lambda w: float(w.sparsity),
        dtype=lambda w: model_dtype(w.model),
        state=lambda w: RECOVERY_STATE.format(**w),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow_scripts/recover.py"


rule recovery_curves:
    input:
        curves=all_recovery_curves(),
    output:
        csv=report(RECOVERY_PLOTS[0], category="Recovery"),
        plot=report(RECOVERY_PLOTS[1], category="Recovery"),
    log:
        "logs/tables/recovery_curves.log",
    benchmark:
        "benchmarks/tables/recovery_curves.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("recovery_curves"),
    script:
        "../workflow_scripts/recovery_curves.py"
