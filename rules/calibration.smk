rule calibrate:
    input:
        model=MODEL_DIR,
    output:
        windows=WINDOWS,
    log:
        "logs/calibrate/{model}/{calib}.log",
    benchmark:
        "benchmarks/calibrate/{model}/{calib}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("calibrate"),
    params:
        dataset=lambda w: CALIBRATIONS[w.calib]["dataset"],
        nsamples=lambda w: CALIBRATIONS[w.calib]["nsamples"],
        seqlen=lambda w: CALIBRATIONS[w.calib]["seqlen"],
        seed=config["seed"],
        data_dir=DATA_DIR,
    script:
        "../workflow_scripts/calibrate.py"


rule holdout:
    input:
        model=MODEL_DIR,
    output:
        windows=HOLDOUT,
    log:
        "logs/holdout/{model}/{calib}.log",
    benchmark:
        "benchmarks/holdout/{model}/{calib}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("holdout"),
    params:
        dataset=lambda w: CALIBRATIONS[w.calib]["dataset"],
        nsamples=lambda w: CALIBRATIONS[w.calib]["nsamples"],
        seqlen=lambda w: CALIBRATIONS[w.calib]["seqlen"],
        holdout=config["diagnostics"]["holdout_windows"],
        seed=config["seed"],
        data_dir=DATA_DIR,
    script:
        "../workflow_scripts/calibrate.py"
