rule calibrate:
    input:
        model=MODEL_DIR,
    output:
        windows=WINDOWS,
    log:
        f"logs/calibrate/{{model}}/{CALIB}.log",
    benchmark:
        f"benchmarks/calibrate/{{model}}/{CALIB}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources(),
    params:
        dataset=config["calibration"]["dataset"],
        nsamples=config["calibration"]["nsamples"],
        seqlen=config["calibration"]["seqlen"],
        seed=config["seed"],
        data_dir=DATA_DIR,
    script:
        "../workflow_scripts/calibrate.py"
