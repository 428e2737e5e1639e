import re
from pathlib import Path

from fangprune.config import (
    ConfigError,
    allocation_slug,
    calib_slug,
    cluster_slug,
    data_dir,
    group_slug,
    score_slug,
    sparsity_tag,
    validate_config,
    zeroshot_settings,
)
from fangprune.methods.registry import ALGORITHMS

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

METHODS = config["_methods_resolved"]
MODELS = list(config["models"])
SPARSITIES = [sparsity_tag(p) for p in config["sparsities"]]
CALIB = calib_slug(config)
CLUS = cluster_slug(config)
SCORE = score_slug(config)
GROUP = group_slug(config)
ALLOCS = sorted({allocation_slug(m) for m in METHODS.values()})
DATA_DIR = data_dir(config)
ZS_TASKS = config["zeroshot"]["tasks"]
RES = "results"


def _alternatives(values):
    return "|".join(re.escape(v) for v in values)


wildcard_constraints:
    model=_alternatives(MODELS),
    method=_alternatives(METHODS),
    sparsity=r"\d\.\d{2}",
    calib=re.escape(CALIB),
    clus=re.escape(CLUS),
    score=re.escape(SCORE),
    group=re.escape(GROUP),
    alloc=_alternatives(ALLOCS),
    task=_alternatives(ZS_TASKS or ["none"]),


def model_dtype(model):
    return config["models"][model].get("dtype") or config["dtype"]


def uses_groups(method):
    return ALGORITHMS[METHODS[method]["algorithm"]].uses_groups


# Artifacts shared by every method and sparsity carry only the keys they depend on.
MODEL_DIR = f"{RES}/models/{{model}}"
WINDOWS = f"{RES}/calibration/{{model}}/{CALIB}.pt"
CLUSTERS = f"{RES}/clusters/{{model}}/{CALIB}/{CLUS}.pt"
COMPLEXITY = f"{RES}/complexity/{{model}}/{CALIB}.json"
SCORES = f"{RES}/scores/{{model}}/{CALIB}/{CLUS}/{SCORE}.pt"
GROUPS = f"{RES}/groups/{{model}}/{CALIB}/{CLUS}/{GROUP}.json"
ALLOCATION = f"{RES}/allocation/{{model}}/{CALIB}/{{alloc}}/sp{{sparsity}}.json"
CHECKPOINT = f"{RES}/pruned/{{model}}/{{method}}/sp{{sparsity}}"
PPL = f"{RES}/eval/ppl/{{model}}/{{method}}/sp{{sparsity}}.json"
PPL_DENSE = f"{RES}/eval/ppl/{{model}}/dense.json"
ZEROSHOT = f"{RES}/eval/zeroshot/{{model}}/{{method}}/sp{{sparsity}}/{{task}}.json"
ZEROSHOT_DENSE = f"{RES}/eval/zeroshot/{{model}}/dense/{{task}}.json"
TABLE_NAMES = (
    ["table1"]
    + (["table2"] if set(ZS_TASKS) - {"mmlu"} else [])
    + (["table4"] if "mmlu" in ZS_TASKS else [])
)
TABLES = [f"{RES}/tables/metrics.csv"] + [
    f"{RES}/tables/{name}.{ext}" for name in TABLE_NAMES for ext in ("csv", "md", "tex")
]
PLOT = f"{RES}/tables/sparsity_curves.png"


def allocation_for(wildcards):
    return ALLOCATION.format(
        model=wildcards.model,
        alloc=allocation_slug(METHODS[wildcards.method]),
        sparsity=wildcards.sparsity,
    )


def prune_inputs(wildcards):
    inputs = {
        "model": MODEL_DIR.format(model=wildcards.model),
        "windows": WINDOWS.format(model=wildcards.model),
        "allocation": allocation_for(wildcards),
    }
    if uses_groups(wildcards.method):
        inputs["clusters"] = CLUSTERS.format(model=wildcards.model)
        inputs["groups"] = GROUPS.format(model=wildcards.model)
    return inputs


def allocation_inputs(wildcards):
    inputs = {"model": MODEL_DIR.format(model=wildcards.model)}
    if wildcards.alloc != "uniform":
        inputs["fc"] = COMPLEXITY.format(model=wildcards.model)
    return inputs


def allocation_params(alloc):
    """The allocation parameters behind an allocation slug (only these, so adding a method reruns nothing)."""
    method = next(m for m in METHODS.values() if allocation_slug(m) == alloc)
    return {
        key: method[key]
        for key in ("allocation", "fc_lambda", "fc_bound")
        if key in method
    }


def all_metrics():
    files = expand(PPL_DENSE, model=MODELS)
    files += expand(PPL, model=MODELS, method=list(METHODS), sparsity=SPARSITIES)
    return files


def all_zeroshot():
    files = expand(ZEROSHOT_DENSE, model=MODELS, task=ZS_TASKS)
    files += expand(
        ZEROSHOT, model=MODELS, method=list(METHODS), sparsity=SPARSITIES, task=ZS_TASKS
    )
    return files


def zeroshot_param(key):
    """A per-task zero-shot setting as a params function (so changing one task's limit reruns only that task)."""
    return lambda w: zeroshot_settings(config, w.task)[key]


def rule_resources(kind):
    """Portable resources: GPU steps ask for one GPU when the config's device is not the CPU."""
    gpu = 0 if config["device"] == "cpu" else 1
    if kind == "gpu":
        return {"mem_mb": 16000, "runtime": "2h", "gpu": gpu}
    return {"mem_mb": 8000, "runtime": "1h"}
