rule groups:
    input:
        scores=SCORES,
    output:
        groups=GROUPS,
    log:
        f"logs/groups/{{model}}/{CALIB}/{CLUS}/{GROUP}.log",
    benchmark:
        f"benchmarks/groups/{{model}}/{CALIB}/{CLUS}/{GROUP}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources(),
    params:
        method=config["clustering"]["grouping"],
    script:
        "../workflow_scripts/groups.py"
