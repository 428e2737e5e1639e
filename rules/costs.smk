rule costs:
    input:
        TABLES,
        PLOT,
        all_exports(),
        all_engine_ppl(),
        all_engine_speed(),
        deployment_tables(),
    output:
        csv=report(COSTS[0], category="Costs"),
        md=report(COSTS[1], category="Costs"),
    log:
        "logs/costs/costs.log",
    benchmark:
        "benchmarks/costs/costs.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("costs"),
    params:
        benchmarks="benchmarks",
        logs="logs",
        models=MODELS,
    script:
        "../workflow_scripts/costs.py"
