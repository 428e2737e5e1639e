rule tables:
    input:
        ppl=all_metrics(),
        zeroshot=all_zeroshot(),
        speed=all_speed(),
        windows=expand(WINDOWS, model=MODELS),
    output:
        metrics=report(f"{RES}/tables/metrics.csv", category="Tables"),
        tables=[
            report(path, category="Tables", labels={"table": Path(path).name})
            for path in TABLES[1:]
        ],
        plot=report(PLOT, category="Plots"),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources(),
    script:
        "../workflow_scripts/tables.py"
