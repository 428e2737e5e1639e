import re
from pathlib import Path

from fangprune.config import (
    ConfigError,
    allocation_slug,
    calib_slug,
    cluster_slug,
    data_dir,
    effective,
    group_slug,
    grouping_spec,
    importance_slug,
    recovered_methods,
    recovery_data_slug,
    recovery_variants,
    score_slug,
    sparsity_tag,
    validate_config,
    zeroshot_settings,
)
from fangprune.methods.registry import get_method
from fangprune.resources import GPU_RULES, WHOLE_MODEL, gpu_features, job_request

try:
    validate_config(config, check_sources=workflow.is_main_process)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

METHODS = config["_methods_resolved"]
MODELS = list(config["models"])
SPARSITIES = [sparsity_tag(p) for p in config["sparsities"]]
# Each method's artifact keys (a method may override calibration and clustering keys for itself, so one config
# holds e.g. WikiText-2 and Alpaca calibration, or several K); slug -> the settings behind it, for the rules.
SLUGS = {
    name: {
        "calib": calib_slug(config, m),
        "clus": cluster_slug(config, m),
        "score": score_slug(config, m),
        "group": group_slug(config, m),
        "alloc": allocation_slug(m),
    }
    for name, m in METHODS.items()
}
CALIBRATIONS = {calib_slug(config): effective(config, None, "calibration")}
CLUSTERINGS = {cluster_slug(config): effective(config, None, "clustering")}
SCORINGS = {score_slug(config): effective(config, None, "clustering")}
GROUPINGS = {}
GROUP_SCORE = {}  # group slug -> the score slug it is built from
for _name, _m in METHODS.items():
    CALIBRATIONS[SLUGS[_name]["calib"]] = effective(config, _m, "calibration")
    CLUSTERINGS[SLUGS[_name]["clus"]] = effective(config, _m, "clustering")
    SCORINGS[SLUGS[_name]["score"]] = effective(config, _m, "clustering")
    GROUPINGS[SLUGS[_name]["group"]] = grouping_spec(config, _m)
    GROUP_SCORE[SLUGS[_name]["group"]] = SLUGS[_name]["score"]
# Recovered checkpoints are methods of their own downstream (o-fang+kd): every evaluation, speed and export rule
# takes them like a pruned method; only the prune rule is limited to METHODS.
RECOVERED = recovered_methods(config)
VARIANTS = recovery_variants(config)
RECOVERY_DATA = {recovery_data_slug(config, v): v for v in VARIANTS.values()}
EVALUATED = list(METHODS) + list(RECOVERED)
ALLOCS = sorted({s["alloc"] for s in SLUGS.values()})
# allocation slug -> the per-layer importance it needs (None: uniform; fc: the complexity rule)
MEASURES = {SLUGS[n]["alloc"]: importance_slug(m) for n, m in METHODS.items()}
DATA_DIR = data_dir(config)
ZS_TASKS = config["zeroshot"]["tasks"]
PPL_DATASETS = config["evaluation"]["datasets"]
RES = "results"


def _alternatives(values):
    return "|".join(re.escape(v) for v in values)


wildcard_constraints:
    model=_alternatives(MODELS),
    method=_alternatives(EVALUATED),
    rdata=_alternatives(RECOVERY_DATA or ["none"]),
    sparsity=r"\d\.\d{2}",
    calib=_alternatives(CALIBRATIONS),
    clus=_alternatives(CLUSTERINGS),
    score=_alternatives(SCORINGS),
    group=_alternatives(GROUPINGS or ["none"]),
    alloc=_alternatives(ALLOCS),
    measure=_alternatives(
        sorted({m for m in MEASURES.values() if m not in (None, "fc")}) or ["none"]
    ),
    task=_alternatives(ZS_TASKS or ["none"]),
    dataset=_alternatives(PPL_DATASETS),
    gguf_type="f32|f16|bf16|q8_0|q4_0",


def model_dtype(model):
    return config["models"][model].get("dtype") or config["dtype"]


def uses_groups(method):
    return get_method(METHODS[method]["algorithm"]).uses_groups


# Artifacts shared by every method and sparsity carry only the keys they depend on.
MODEL_DIR = f"{RES}/models/{{model}}"
WINDOWS = f"{RES}/calibration/{{model}}/{{calib}}.pt"
HOLDOUT = f"{RES}/calibration/{{model}}/{{calib}}.holdout{config['diagnostics']['holdout_windows']}.pt"
CLUSTERS = f"{RES}/clusters/{{model}}/{{calib}}/{{clus}}.pt"
COMPLEXITY = f"{RES}/complexity/{{model}}/{{calib}}.json"
SCORES = f"{RES}/scores/{{model}}/{{calib}}/{{clus}}/{{score}}.pt"
GROUPS = f"{RES}/groups/{{model}}/{{calib}}/{{clus}}/{{group}}.json"
IMPORTANCE = f"{RES}/importance/{{model}}/{{calib}}/{{measure}}.json"
ALLOCATION = f"{RES}/allocation/{{model}}/{{calib}}/{{alloc}}/sp{{sparsity}}.json"
CHECKPOINT = f"{RES}/pruned/{{model}}/{{method}}/sp{{sparsity}}"
PPL = f"{RES}/eval/ppl/{{dataset}}/{{model}}/{{method}}/sp{{sparsity}}.json"
PPL_DENSE = f"{RES}/eval/ppl/{{dataset}}/{{model}}/dense.json"
ZEROSHOT = f"{RES}/eval/zeroshot/{{model}}/{{method}}/sp{{sparsity}}/{{task}}.json"
ZEROSHOT_DENSE = f"{RES}/eval/zeroshot/{{model}}/dense/{{task}}.json"
SPEED = f"{RES}/eval/speed/{{model}}/{{method}}/sp{{sparsity}}.json"
GGUF = f"{RES}/export/gguf/{{model}}/{{method}}/sp{{sparsity}}.{{gguf_type}}.gguf"
GGUF_DENSE = f"{RES}/export/gguf/{{model}}/dense.{{gguf_type}}.gguf"
ENGINE_PPL = f"{RES}/eval/engine_ppl/{{dataset}}/{{model}}/{{method}}/sp{{sparsity}}.{{gguf_type}}.json"
ENGINE_PPL_DENSE = (
    f"{RES}/eval/engine_ppl/{{dataset}}/{{model}}/dense.{{gguf_type}}.json"
)
ENGINE_SPEED = (
    f"{RES}/eval/engine_speed/{{model}}/{{method}}/sp{{sparsity}}.{{gguf_type}}.json"
)
TABLE_NAMES = (
    ["table1"]
    + (["table2"] if set(ZS_TASKS) - {"mmlu"} else [])
    + (["table4"] if "mmlu" in ZS_TASKS else [])
    + sorted(config["tables"]["ablations"])
    + (["table_recovery"] if RECOVERED else [])
    + (
        ["table_unstructured"]
        if any(not get_method(m["algorithm"]).structured for m in METHODS.values())
        else []
    )
)
TABLES = [f"{RES}/tables/metrics.csv"] + [
    f"{RES}/tables/{name}.{ext}" for name in TABLE_NAMES for ext in ("csv", "md", "tex")
]
PLOT = f"{RES}/tables/sparsity_curves.png"
DIAGNOSTICS = [
    f"{RES}/tables/diagnostics.csv",
    f"{RES}/tables/diagnostics.md",
    f"{RES}/tables/reconstruction_error.png",
]
COSTS = [f"{RES}/tables/costs.csv", f"{RES}/tables/costs.md"]
DEPLOYMENT = [f"{RES}/tables/deployment.csv", f"{RES}/tables/deployment.md"]
RECOVERY_WINDOWS = f"{RES}/recovery/data/{{model}}/{{rdata}}.pt"
RECOVERY_CURVE = f"{RES}/recovery/curves/{{model}}/{{method}}/sp{{sparsity}}.csv"
RECOVERY_REPORT = f"{RES}/recovery/curves/{{model}}/{{method}}/sp{{sparsity}}.json"
RECOVERY_STATE = f"{RES}/recovery/state/{{model}}/{{method}}/sp{{sparsity}}.pt"
RECOVERY_PLOTS = [
    f"{RES}/tables/recovery_curves.csv",
    f"{RES}/tables/recovery_curves.png",
]


def method_path(template, wildcards, **extra):
    """``template`` filled with the model, the method's artifact keys and ``extra``."""
    keys = SLUGS[wildcards.method]
    return template.format(model=wildcards.model, **keys, **extra)


def prune_inputs(wildcards):
    inputs = {
        "model": MODEL_DIR.format(model=wildcards.model),
        "windows": method_path(WINDOWS, wildcards),
        "allocation": method_path(ALLOCATION, wildcards, sparsity=wildcards.sparsity),
    }
    if config["diagnostics"]["holdout_windows"]:
        inputs["holdout"] = method_path(HOLDOUT, wildcards)
    if uses_groups(wildcards.method):
        inputs["clusters"] = method_path(CLUSTERS, wildcards)
        inputs["groups"] = method_path(GROUPS, wildcards)
    return inputs


def allocation_inputs(wildcards):
    inputs = {"model": MODEL_DIR.format(model=wildcards.model)}
    measure = MEASURES[wildcards.alloc]
    if measure == "fc":
        inputs["importance"] = COMPLEXITY.format(
            model=wildcards.model, calib=wildcards.calib
        )
    elif measure is not None:
        inputs["importance"] = IMPORTANCE.format(
            model=wildcards.model, calib=wildcards.calib, measure=measure
        )
    return inputs


def checkpoint_output():
    """A pruned checkpoint's directory; temporary (deleted after its last reader) with export.keep_checkpoints
    false."""
    out = directory(CHECKPOINT)
    return out if config["export"]["keep_checkpoints"] else temp(out)


def all_checkpoints():
    return expand(CHECKPOINT, model=MODELS, method=list(METHODS), sparsity=SPARSITIES)


def all_holdout():
    if not config["diagnostics"]["holdout_windows"]:
        return []
    return expand(
        HOLDOUT, model=MODELS, calib=sorted({s["calib"] for s in SLUGS.values()})
    )


def all_windows():
    return expand(
        WINDOWS, model=MODELS, calib=sorted({s["calib"] for s in SLUGS.values()})
    )


def recovery_inputs(wildcards):
    """A recovered checkpoint's inputs: its pruned checkpoint, the teacher's prepared model, the training windows."""
    base, variant = RECOVERED[wildcards.method]
    teacher = config["recovery"]["teacher"] or wildcards.model
    return {
        "student": CHECKPOINT.format(
            model=wildcards.model, method=base, sparsity=wildcards.sparsity
        ),
        "teacher": MODEL_DIR.format(model=teacher),
        "windows": RECOVERY_WINDOWS.format(
            model=wildcards.model,
            rdata=recovery_data_slug(config, VARIANTS[variant]),
        ),
    }


def all_recovery_curves(template=RECOVERY_CURVE):
    """Every recovered checkpoint's learning curve (or, given RECOVERY_REPORT, its job report)."""
    return expand(template, model=MODELS, method=list(RECOVERED), sparsity=SPARSITIES)


def evaluated_params():
    """Parameters of every evaluated method: a recovered one has its pruned method's."""
    return {**METHODS, **{r: METHODS[b] for r, (b, _) in RECOVERED.items()}}


def allocation_params(alloc):
    """The allocation parameters behind an allocation slug (only these, so adding a method reruns nothing)."""
    method = next(m for m in METHODS.values() if allocation_slug(m) == alloc)
    return {
        key: method[key]
        for key in ("allocation", "fc_lambda", "fc_bound", "owl_m")
        if key in method
    }


def all_metrics():
    files = expand(PPL_DENSE, dataset=PPL_DATASETS, model=MODELS)
    files += expand(
        PPL,
        dataset=PPL_DATASETS,
        model=MODELS,
        method=EVALUATED,
        sparsity=SPARSITIES,
    )
    return files


def all_zeroshot():
    files = expand(ZEROSHOT_DENSE, model=MODELS, task=ZS_TASKS)
    files += expand(
        ZEROSHOT, model=MODELS, method=EVALUATED, sparsity=SPARSITIES, task=ZS_TASKS
    )
    return files


def all_speed():
    if not config["speed"]["enabled"]:
        return []
    return expand(SPEED, model=MODELS, method=EVALUATED, sparsity=SPARSITIES)


def all_exports():
    types = config["export"]["gguf"]
    files = expand(GGUF_DENSE, model=MODELS, gguf_type=types)
    files += expand(
        GGUF, model=MODELS, method=EVALUATED, sparsity=SPARSITIES, gguf_type=types
    )
    return files


def deployment_tables():
    return DEPLOYMENT if config["export"]["gguf"] else []


def all_engine_ppl():
    types, datasets = config["export"]["gguf"], config["export"]["engine"]["perplexity"]
    files = expand(ENGINE_PPL_DENSE, dataset=datasets, model=MODELS, gguf_type=types)
    files += expand(
        ENGINE_PPL,
        dataset=datasets,
        model=MODELS,
        method=EVALUATED,
        sparsity=SPARSITIES,
        gguf_type=types,
    )
    return files


def all_engine_speed():
    if not config["export"]["engine"]["speed"]:
        return []
    return expand(
        ENGINE_SPEED,
        model=MODELS,
        method=EVALUATED,
        sparsity=SPARSITIES,
        gguf_type=config["export"]["gguf"],
    )


def zeroshot_param(key):
    """A per-task zero-shot setting as a params function (so changing one task's limit reruns only that task)."""
    return lambda w: zeroshot_settings(config, w.task)[key]


def model_cfg(model):
    return config["models"][model]


def model_batch_size(section):
    """The batch size of a config section, unless the model's entry overrides it."""
    return (
        lambda w: model_cfg(w.model).get("batch_size") or config[section]["batch_size"]
    )


def model_device_map(wildcards):
    return model_cfg(wildcards.model).get("device_map")


def method_params(model, method):
    """A method's parameters for one model: the model's tau, if given, replaces the FANG methods' tau."""
    params = dict(METHODS[method])
    tau = model_cfg(model).get("tau")
    if tau is not None and "tau" in params:
        params["tau"] = tau
    return params


RESOURCES = config["resources"]
_SITE = (
    {"slurm_account": RESOURCES["slurm_account"]} if RESOURCES["slurm_account"] else {}
)


def _gpu_count(whole_model):
    def gpus(wildcards):
        if config["device"] == "cpu":
            return 0
        return model_cfg(wildcards.model).get("gpus", 1) if whole_model else 1

    return gpus


def _runtime(base):
    """Minutes, scaled by the attempt: a retried job (e.g. one that hit its time limit) asks for more."""

    def runtime(wildcards, attempt):
        minutes = base(wildcards) if callable(base) else base
        return minutes * attempt

    return runtime


def _request(step):
    """One value of a job's request (mem_mb, runtime, gpu_mem_mb): the model entry's or resources' value, else
    the prediction from the model's shape (fangprune.resources, docs/scale.md)."""

    per_model = {}  # one prediction per model serves every job and key of the step

    def value(key):
        def get(wildcards):
            model = getattr(wildcards, "model", None)
            if model not in per_model:
                per_model[model] = job_request(step, config, model, config["threads"])
            return per_model[model][key]

        return get

    return value


def gpu_resources(step):
    """Resources of a GPU step (fangprune.resources.GPU_RULES): whole-model steps get the model's ``gpus`` (for
    its device_map), layer-wise steps one GPU (they stream one decoder layer at a time). With ``device: cpu``
    they ask for no GPU.
    """
    if step not in GPU_RULES:
        raise WorkflowError(
            f"{step} is not in fangprune.resources.GPU_RULES: use cpu_resources"
        )
    request = _request(step)
    res = {
        "gpu": _gpu_count(step in WHOLE_MODEL),
        "mem_mb": request("mem_mb"),
        "runtime": _runtime(request("runtime")),
        "gpu_mem_mb": request("gpu_mem_mb"),
        **_SITE,
    }
    if RESOURCES["gpu_cpus"]:
        res["cpus_per_task"] = RESOURCES["gpu_cpus"]
    if RESOURCES["gpu_model"] and config["device"] != "cpu":
        res["gpu_model"] = RESOURCES["gpu_model"]
    if RESOURCES["gpu_partition"]:
        res["slurm_partition"] = RESOURCES["gpu_partition"]
    if RESOURCES["gpu_constraints"] and config["device"] != "cpu":
        res["constraint"] = _constraint(
            request("gpu_mem_mb"), _gpu_count(step in WHOLE_MODEL)
        )
    return res


def _constraint(gpu_mem_mb, gpus):
    """sbatch -C: the node features whose GPUs hold the job (resources.gpu_constraints)."""

    def features(wildcards):
        return "|".join(
            gpu_features(
                gpu_mem_mb(wildcards), gpus(wildcards), RESOURCES["gpu_constraints"]
            )
        )

    return features


def cpu_resources(step):
    """Resources of a CPU step: no GPU."""
    if step in GPU_RULES:
        raise WorkflowError(
            f"{step} is in fangprune.resources.GPU_RULES: use gpu_resources"
        )
    request = _request(step)
    res = {
        "mem_mb": request("mem_mb"),
        "runtime": _runtime(request("runtime")),
        **_SITE,
    }
    if RESOURCES["cpu_partition"]:
        res["slurm_partition"] = RESOURCES["cpu_partition"]
    return res


def speed_threads():
    """All cores for a local run (the timing job runs alone); the GPU-job CPUs under a cluster executor."""
    if config["speed"]["threads"]:
        return config["speed"]["threads"]
    try:
        return workflow.cores
    except WorkflowError:  # no --cores: a cluster executor, which has no total to take
        return RESOURCES["gpu_cpus"] or config["threads"]
