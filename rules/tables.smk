rule tables:
    input:
        ppl=all_metrics(),
        zeroshot=all_zeroshot(),
        speed=all_speed(),
        windows=all_windows(),
        recovery=all_recovery_curves(RECOVERY_REPORT),
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
        **cpu_resources("tables"),
    params:
        references=config["tables"]["references"],
        ablations=config["tables"]["ablations"],
        methods=evaluated_params(),
        bootstrap=config["tables"]["bootstrap"],
        seed=config["seed"],
    script:
        "../workflow_scripts/tables.py"


rule diagnostics:
    input:
        checkpoints=all_checkpoints(),
        holdout=all_holdout(),
    output:
        csv=report(DIAGNOSTICS[0], category="Diagnostics"),
        md=report(DIAGNOSTICS[1], category="Diagnostics"),
        plot=report(DIAGNOSTICS[2], category="Diagnostics"),
    log:
        "logs/tables/diagnostics.log",
    benchmark:
        "benchmarks/tables/diagnostics.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("diagnostics"),
    script:
        "../workflow_scripts/diagnostics.py"


rule deployment_table:
    input:
        exports=[f"{g}.json" for g in all_exports()],
        engine_ppl=all_engine_ppl(),
        engine_speed=all_engine_speed(),
    output:
        csv=report(DEPLOYMENT[0], category="Tables"),
        md=report(DEPLOYMENT[1], category="Tables"),
    log:
        "logs/tables/deployment.log",
    benchmark:
        "benchmarks/tables/deployment.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("deployment_table"),
    script:
        "../workflow_scripts/deployment_table.py"
