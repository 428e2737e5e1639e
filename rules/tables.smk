rule tables:
    input:
        metrics=all_metrics(),
        windows=expand(WINDOWS, model=MODELS),
    output:
        csv=report(f"{RES}/tables/metrics.csv", category="Tables"),
        md=report(f"{RES}/tables/table1.md", category="Tables"),
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    conda:
        "../envs/fangprune.yaml"
    script:
        "../workflow_scripts/tables.py"
