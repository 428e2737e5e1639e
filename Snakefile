# FANG structured-pruning workflow: calibration -> context clusters -> Taylor scores -> neuron groups ->
# sparsity allocation -> pruned checkpoints -> evaluation -> tables. See README.md for the path scheme.
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/calibration.smk"
include: "rules/clustering.smk"
include: "rules/scores.smk"
include: "rules/groups.smk"
include: "rules/allocation.smk"
include: "rules/prune.smk"
include: "rules/recovery.smk"
include: "rules/evaluate.smk"
include: "rules/zeroshot.smk"
include: "rules/speed.smk"
include: "rules/export.smk"
include: "rules/tables.smk"
include: "rules/costs.smk"


# Small steps run on the submit host under SLURM: no queueing for seconds of work.
localrules:
    all,
    calibrate,
    holdout,
    groups,
    allocate,
    tables,
    diagnostics,
    costs,
    deployment_table,
    recovery_curves,


rule all:
    default_target: True
    input:
        TABLES,
        PLOT,
        DIAGNOSTICS if config["diagnostics"]["holdout_windows"] else [],
        COSTS,
        all_exports(),
        deployment_tables(),
        RECOVERY_PLOTS if RECOVERED else [],
