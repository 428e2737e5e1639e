rule groups:
    input:
        scores=lambda w: SCORES.format(
            model=w.model, calib=w.calib, clus=w.clus, score=GROUP_SCORE[w.group]
        ),
    output:
        groups=GROUPS,
    log:
        "logs/groups/{model}/{calib}/{clus}/{group}.log",
    benchmark:
        "benchmarks/groups/{model}/{calib}/{clus}/{group}.tsv"
    conda:
        "../envs/fangprune.yaml"
    threads: 1
    resources:
        **cpu_resources("groups"),
    params:
        method=lambda w: GROUPINGS[w.group]["method"],
        shared=lambda w: GROUPINGS[w.group]["shared"],
        seed=lambda w: GROUPINGS[w.group]["seed"],
    script:
        "../workflow_scripts/groups.py"
