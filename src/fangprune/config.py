"""Configuration: schema validation with defaults, semantic checks, and the path keys (slugs) of each stage.

The Snakefile runs this before building the DAG, so a bad config fails with a message naming the key before any
job starts. Resolving methods imports their modules (and torch) once.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fangprune.methods.registry import (
    ParamError,
    get_method,
    load_plugins,
    resolve_method,
)
from fangprune.modeling.sources import (
    SUPPORTED_MODEL_TYPES,
    local_model_type,
    resolve_source,
    source_model_type,
    source_shape,
)

SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"
DATA_DIR_ENV = "FANG_DATA_DIR"


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the offending key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<config>"


def _schema_check(instance: Any, schema: dict, prefix: str) -> None:
    errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = _key([prefix, *e.absolute_path] if prefix else e.absolute_path)
        raise ConfigError(f"config key '{key}': {e.message}")


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict, *, check_sources: bool = True) -> dict:
    """Validate ``config`` in place (defaults filled in) and return it. Raises ConfigError naming the key."""
    _schema_check(config, load_schema(), "")
    _expand_sweeps(config)
    _select_methods(config)
    _select_models(config)
    try:
        load_plugins(config["plugins"])
    except ImportError as exc:
        raise ConfigError(f"config key 'plugins': {exc}") from None
    resolved = {}
    for name, params in config["methods"].items():
        try:
            full = resolve_method(name, params)
        except KeyError as exc:
            raise ConfigError(f"config key 'methods.{name}.algorithm': {exc.args[0]}") from None
        except ParamError as exc:
            raise ConfigError(f"config key 'methods.{name}.{exc.key}': {exc}") from None
        method = get_method(full["algorithm"])
        _schema_check(full, method.json_schema(), f"methods.{name}")
        for section in OVERRIDABLE:
            if full.get(section):
                _schema_check(full[section], _override_schema(section), f"methods.{name}.{section}")
        resolved[name] = full
        k = effective(config, full, "clustering")["k"]
        for p in config["sparsities"]:
            hi = p + (full.get("fc_lambda", 0.0) * p if full.get("allocation", "uniform") != "uniform" else 0.0)
            cap = k / (k + 1) if method.uses_groups and full.get("shared_group", True) else 1.0
            if hi >= cap:
                raise ConfigError(
                    f"config key 'sparsities' ({p}) with 'methods.{name}': a layer may reach sparsity {hi:.3f}, "
                    f"but at most {cap:.3f} of the MLP can be removed"
                    + (f" (the shared group of 1/(K+1) with K={k} is exempt)" if cap < 1 else "")
                )
    config["_shapes"] = {}
    if check_sources:
        for name, entry in config["models"].items():
            try:
                src = resolve_source(entry["source"])
            except FileNotFoundError as exc:
                raise ConfigError(f"config key 'models.{name}.source': {exc}") from None
            try:
                mtype = local_model_type(src)
                shape = source_shape(src)
            except (ValueError, OSError, KeyError) as exc:  # e.g. a truncated GGUF: "GGUF magic invalid"
                raise ConfigError(f"config key 'models.{name}.source': cannot read {entry['source']}: {exc}") from None
            if mtype is not None and mtype not in SUPPORTED_MODEL_TYPES:
                raise ConfigError(
                    f"config key 'models.{name}.source': unsupported architecture {mtype!r}; "
                    f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
                )
            _check_context(config, resolved, name, shape)
            if shape is not None:
                config["_shapes"][name] = shape
        _check_resources(config, resolved)
    _check_recovery(config, check_sources)
    _check_zeroshot(config)
    _check_tables(config)
    _check_export(config, resolved, check_sources)
    config["_methods_resolved"] = resolved
    return config


def sweep_names(name: str, sweep: dict) -> list[tuple[str, dict]]:
    """The methods of a sweep: ``{tau: [3, 5]}`` on ``o-fang`` -> (o-fang-tau3, {tau: 3}), (o-fang-tau5, ...).

    A dotted key sets a nested override (``clustering.k`` -> ``{clustering: {k: ...}}``, name suffix ``-k5``);
    several keys give their cartesian product.
    """
    import itertools

    keys = list(sweep)
    out = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        suffix = "".join(f"-{k.rsplit('.', 1)[-1]}{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else f"-{k.rsplit('.', 1)[-1]}-{v}" for k, v in zip(keys, values))
        overrides: dict = {}
        for k, v in zip(keys, values):
            *path, leaf = k.split(".")
            node = overrides
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = v
        out.append((f"{name}{suffix}", overrides))
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _expand_sweeps(config: dict) -> None:
    """Replace every method entry with a ``sweep`` by one method per value combination (names in paths and
    tables); an ablation table listing the swept name lists all of them."""
    methods, sweeps = {}, {}
    for name, params in config["methods"].items():
        params = dict(params or {})
        sweep = params.pop("sweep", None)
        if not sweep:
            methods[name] = params
            continue
        if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
            raise ConfigError(f"config key 'methods.{name}.sweep': a mapping of parameter -> non-empty list")
        sweeps[name] = []
        for expanded, overrides in sweep_names(name, sweep):
            if expanded in config["methods"]:
                raise ConfigError(f"config key 'methods.{name}.sweep': {expanded!r} is also a method of its own")
            methods[expanded] = _merge(params, overrides)
            sweeps[name].append(expanded)
    config["methods"] = methods
    for spec in config["tables"]["ablations"].values():
        spec["methods"] = [m for n in spec["methods"] for m in sweeps.get(n, [n])]
    config["_sweeps"] = sweeps


def _select(config: dict, section: str, what: str) -> None:
    """Keep only the entries of ``section`` named in ``select_<section>`` (config files merge, so a later file
    cannot delete an entry an earlier one defines)."""
    keep = config.get(f"select_{section}")
    if keep is None:
        return
    missing = [m for m in keep if m not in config[section]]
    if missing:
        raise ConfigError(f"config key 'select_{section}': no {what} named {', '.join(map(repr, missing))} in "
                          f"'{section}'")
    config[section] = {name: entry for name, entry in config[section].items() if name in keep}


def _select_methods(config: dict) -> None:
    """``select_methods``; table references between dropped methods go with them."""
    if config.get("select_methods") is None:
        return
    _select(config, "methods", "method")
    keep = config["methods"]
    refs = config["tables"]["references"] or {}
    config["tables"]["references"] = {m: r for m, r in refs.items() if m in keep and r in keep}


def _select_models(config: dict) -> None:
    _select(config, "models", "model")


def _check_context(config: dict, methods: dict, model: str, shape: dict | None) -> None:
    """Every window a job feeds the model fits its context (max_position_embeddings / GGUF context_length):
    calibration (also a method's own), evaluation, and the speed prompts."""
    context = (shape or {}).get("context")
    if not context:
        return  # a hub id: its config is known only once downloaded
    lengths = [("calibration.seqlen", config["calibration"]["seqlen"]),
               ("evaluation.seqlen", config["evaluation"]["seqlen"])]
    lengths += [(f"methods.{m}.calibration.seqlen", effective(config, full, "calibration")["seqlen"])
                for m, full in methods.items() if (full.get("calibration") or {}).get("seqlen")]
    if config["recovery"]["methods"]:
        lengths += [(f"recovery.variants.{v}.seqlen" if "seqlen" in (config["recovery"]["variants"][v] or {})
                     else "recovery.seqlen", r["seqlen"]) for v, r in recovery_variants(config).items()]
    if config["speed"]["enabled"]:
        lengths.append(("speed.prompt_len", config["speed"]["prompt_len"] + config["speed"]["decode_tokens"]))
    if config["export"]["gguf"] and config["export"]["engine"]["speed"]:
        engine = config["export"]["engine"]
        lengths.append(("export.engine.prompt_len", engine["prompt_len"] + engine["gen_tokens"]))
    for key, tokens in lengths:
        if tokens > context:
            raise ConfigError(f"config key '{key}' ({tokens} tokens): longer than the context of models.{model} "
                              f"({context} tokens); use at most {context}")


def _check_resources(config: dict, methods: dict) -> None:
    """Every job's host request fits ``resources.max_mem_mb`` and its predicted GPU memory fits the GPUs it gets
    (``resources.gpu_memory_mb`` per GPU: one for a layer-wise step, the model's ``gpus`` for a whole-model one)."""
    from fangprune.resources import LAYERWISE, job_request

    from fangprune.resources import gpu_features

    res = config["resources"]
    if not (res["max_mem_mb"] or res["gpu_memory_mb"] or res["gpu_constraints"]):
        return
    grouped = any(get_method(m["algorithm"]).uses_groups for m in methods.values())
    rules = ["prepare_model", "prune", "evaluate_ppl"]
    if grouped:
        rules += ["cluster", "scores"]
    if config["zeroshot"]["tasks"]:
        rules.append("evaluate_zeroshot")
    if config["recovery"]["methods"]:
        rules.append("recover")
    if config["export"]["gguf"]:
        rules.append("export_gguf")
    for model, entry in config["models"].items():
        for rule in rules:
            req = job_request(rule, config, model, config["threads"])
            if res["max_mem_mb"] and req["mem_mb"] > res["max_mem_mb"]:
                raise ConfigError(
                    f"models.{model}: one {rule} job asks for {req['mem_mb']} MB of host memory (predicted from its "
                    f"shape, or its mem_mb), more than resources.max_mem_mb ({res['max_mem_mb']} MB)")
            if not req["gpu_mem_mb"] or config["device"] == "cpu":
                continue
            gpus = 1 if rule in LAYERWISE else entry.get("gpus", 1)
            if res["gpu_memory_mb"]:
                if req["gpu_mem_mb"] > gpus * res["gpu_memory_mb"]:
                    need = -(-req["gpu_mem_mb"] // res["gpu_memory_mb"])
                    hint = ("a decoder layer does not fit one GPU" if rule in LAYERWISE else
                            f"set models.{model}.gpus: {need} and device_map: auto")
                    raise ConfigError(
                        f"models.{model}: one {rule} job needs about {req['gpu_mem_mb']} MB of GPU memory, more than "
                        f"{gpus} GPU(s) of resources.gpu_memory_mb ({res['gpu_memory_mb']} MB); {hint}")
            if res["gpu_constraints"]:
                if not gpu_features(req["gpu_mem_mb"], gpus, res["gpu_constraints"]):
                    raise ConfigError(
                        f"models.{model}: one {rule} job needs about {req['gpu_mem_mb']} MB of GPU memory over "
                        f"{gpus} GPU(s), more than any GPU of resources.gpu_constraints "
                        f"({', '.join(f'{k}: {v} MB' for k, v in res['gpu_constraints'].items())})")


def _check_tables(config: dict) -> None:
    """Every method named by a reference or an ablation table exists in the config."""
    known = set(config["methods"])
    for name, ref in (config["tables"]["references"] or {}).items():
        for m in (name, ref):
            if m not in known:
                raise ConfigError(f"config key 'tables.references.{name}': no method named {m!r} in 'methods'")
    for name, spec in config["tables"]["ablations"].items():
        for m in [spec["reference"], *spec["methods"]]:
            if m not in known:
                raise ConfigError(f"config key 'tables.ablations.{name}': no method named {m!r} in 'methods'")


def _check_export(config: dict, methods: dict, check_sources: bool) -> None:
    """GGUF export only of what llama.cpp can represent, and the engine measurements only where they can run:
    refused here rather than after the pruning jobs."""
    export = config["export"]
    if not export["gguf"]:
        return
    from fangprune.export.gguf_layout import LLAMA_LIKE, UNSUPPORTED

    for name, full in methods.items():
        if full.get("low_rank"):
            raise ConfigError(
                f"config key 'export.gguf' with 'methods.{name}.low_rank': llama.cpp's llama/deci layers hold one "
                "matrix per projection, so a low-rank checkpoint cannot be written as GGUF; drop the method from "
                "this run or export it without low_rank")
    if check_sources:
        for name, entry in config["models"].items():
            mtype = source_model_type(resolve_source(entry["source"]))
            if mtype in UNSUPPORTED:
                raise ConfigError(f"config key 'export.gguf' with 'models.{name}' ({mtype}): {UNSUPPORTED[mtype]}")
            if mtype is not None and mtype not in LLAMA_LIKE:
                raise ConfigError(f"config key 'export.gguf' with 'models.{name}': GGUF export supports "
                                  f"{', '.join(LLAMA_LIKE)}, not {mtype!r}")
    engine = export["engine"]
    extra = sorted(set(engine["perplexity"]) - set(config["evaluation"]["datasets"]))
    if extra:
        raise ConfigError(f"config key 'export.engine.perplexity': {', '.join(extra)} not in evaluation.datasets "
                          "(llama.cpp's perplexity is paired with the PyTorch one of the same windows)")
    if (engine["perplexity"] or engine["speed"]) and importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            "config key 'export.engine': measuring the GGUF files in llama.cpp needs llama-cpp-python (docs/deployment.md); set 'export.engine: {perplexity: [], speed: false}' to export without measuring")


#: Joins a method and a recovery variant in a recovered checkpoint's method name (o-fang+kd).
RECOVERED_SEP = "+"
#: Recovery settings a variant may not override (they say what is recovered, not how).
RECOVERY_FIXED = ("methods", "variants", "teacher")


def recovery_variants(config: dict) -> dict[str, dict]:
    """Variant suffix -> its full recovery settings (the section's, updated by the variant's own)."""
    rec = config["recovery"]
    base = {k: v for k, v in rec.items() if k not in RECOVERY_FIXED}
    lora = load_schema()["properties"]["recovery"]["properties"]["lora"]["properties"]
    out = {}
    for name, over in rec["variants"].items():
        s = _merge(base, over or {})
        if s["lora"] is not None:
            s["lora"] = {**{k: v["default"] for k, v in lora.items()}, **s["lora"]}
        out[name] = s
    return out


def recovered_methods(config: dict) -> dict[str, tuple[str, str]]:
    """Recovered method name -> (pruned method, variant), e.g. 'o-fang+kd' -> ('o-fang', 'kd')."""
    rec = config["recovery"]
    return {f"{m}{RECOVERED_SEP}{v}": (m, v) for m in rec["methods"] for v in rec["variants"]}


def recovery_data_slug(config: dict, settings: dict) -> str:
    """Key of a recovery text's windows: the data, window length, held-out count and seed."""
    return f"{_slug_text(settings['data'])}-l{settings['seqlen']}-h{settings['heldout_windows']}-s{config['seed']}"


def _check_recovery(config: dict, check_sources: bool) -> None:
    """Recovered methods exist, every variant's settings are valid and give one optimizer step, LoRA targets are
    projections, the teacher shares the student's tokenizer, and the training text is no evaluation text."""
    rec = config["recovery"]
    if config.get("select_methods") is not None:
        rec["methods"] = [m for m in rec["methods"] if m in config["methods"]]
    if not rec["methods"]:
        return
    for m in rec["methods"]:
        if m not in config["methods"]:
            raise ConfigError(f"config key 'recovery.methods': no method named {m!r} in 'methods'")
    schema = _override_schema("recovery")
    for key in RECOVERY_FIXED:
        schema["properties"].pop(key)
    from fangprune.recovery.distill import BudgetError, steps_for
    from fangprune.recovery.lora import LoraTargetError, check_targets

    for name, over in rec["variants"].items():
        _schema_check(over or {}, schema, f"recovery.variants.{name}")
    for name, s in recovery_variants(config).items():
        where = lambda key: f"recovery.variants.{name}.{key}" if key in (rec["variants"][name] or {}) else f"recovery.{key}"  # noqa: E731
        try:
            steps_for(s["tokens"], s["batch_size"], s["seqlen"])
        except BudgetError as exc:
            raise ConfigError(f"config key '{where('tokens')}': {exc}") from None
        if s["lora"] is not None:
            _schema_check(s["lora"], load_schema()["properties"]["recovery"]["properties"]["lora"], where("lora"))
            try:
                check_targets(s["lora"]["targets"])
            except LoraTargetError as exc:
                raise ConfigError(f"config key '{where('lora')}.targets': {exc}") from None
        _check_recovery_text(config, s["data"], where("data"))
    teacher = rec["teacher"]
    if teacher is not None:
        if teacher not in config["models"]:
            raise ConfigError(f"config key 'recovery.teacher': no model named {teacher!r} in 'models'")
        if check_sources:
            from fangprune.modeling.models import load_tokenizer

            want = load_tokenizer(config["models"][teacher]["source"]).get_vocab()
            for name, entry in config["models"].items():
                if name != teacher and load_tokenizer(entry["source"]).get_vocab() != want:
                    raise ConfigError(f"config key 'recovery.teacher': the tokenizer of models.{teacher} differs from "
                                      f"that of models.{name}; distillation compares their next-token distributions")


def _check_recovery_text(config: dict, data: str, key: str) -> None:
    """Refuse a ``text:<path>`` training file that holds an evaluation text (WikiText-2 test, PTB test, C4)."""
    from fangprune.recovery.text import contains_evaluation_text, read_text_arg

    if not data.startswith("text:"):
        return
    text = read_text_arg(data)
    if text is None:
        raise ConfigError(f"config key '{key}': file not found: {data[5:]}")
    from fangprune.data import evaluation_text

    texts = {}
    for ds in sorted({"wikitext2", *config["evaluation"]["datasets"]}):
        try:
            texts[ds] = evaluation_text(ds, data_dir(config)).text
        except (FileNotFoundError, RuntimeError, ImportError, OSError):
            continue  # unavailable here: the recovery_data job checks again against what it evaluates
    hit = contains_evaluation_text(text, texts)
    if hit is not None:
        raise ConfigError(f"config key '{key}': {data[5:]} contains the {hit} evaluation text; recovery must not "
                          "train on text it is evaluated on")


def _check_zeroshot(config: dict) -> None:
    tasks = config["zeroshot"]["tasks"]
    if not tasks:
        return
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(
            "config key 'zeroshot.tasks': zero-shot evaluation needs lm-evaluation-harness "
            "(pip install 'lm-eval>=0.4.13,<0.5'); set 'zeroshot.tasks: []' to skip it"
        )
    root = data_dir(config)
    if root:
        from fangprune.evaluate.zeroshot.local_data import missing_files

        for task in tasks:
            missing = missing_files(task, root)
            if missing:
                raise ConfigError(f"config key 'zeroshot.tasks' ({task}): not in data_dir {root}: {missing[0]}")


def _override_schema(section: str) -> dict:
    """The top-level schema of ``section`` without defaults (a method's override names only what changes)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "default"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(load_schema()["properties"][section])


def zeroshot_settings(config: dict, task: str) -> dict:
    """limit and num_fewshot of one zero-shot task (the only settings its result depends on)."""
    zs = config["zeroshot"]
    return {
        "limit": zs["limit_per_task"].get(task, zs["limit"]),
        "num_fewshot": zs["num_fewshot_per_task"].get(task, zs["num_fewshot"]),
    }


def load_config(path: str | os.PathLike, *, check_sources: bool = True) -> dict:
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return validate_config(config, check_sources=check_sources)


#: Local data folders looked for (relative to the run directory) when neither the config nor the environment names one.
LOCAL_DATA_DIRS = ("data", "../shared/data")


def data_dir(config: dict) -> str | None:
    """Local dataset directory, in this order: the config's ``data_dir``, $FANG_DATA_DIR, the first of
    LOCAL_DATA_DIRS that exists; None (= the Hugging Face hub) when none does."""
    if config.get("data_dir"):
        return config["data_dir"]
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    return next((d for d in LOCAL_DATA_DIRS if Path(d).is_dir()), None)


#: Sections a method entry may override for itself (Table 8: calibration source; K and grouping sweeps).
OVERRIDABLE = ("calibration", "clustering")


def effective(config: dict, method: dict | None, section: str) -> dict:
    """A config section as one method sees it: the top-level section updated by the method's own override."""
    out = dict(config[section])
    if method is not None:
        out.update(method.get(section) or {})
    return out


def _slug_text(text: str) -> str:
    return text.replace("text:", "text-").replace("/", "_")


def calib_slug(config: dict, method: dict | None = None) -> str:
    c = effective(config, method, "calibration")
    return f"{_slug_text(c['dataset'])}-n{c['nsamples']}-l{c['seqlen']}-s{config['seed']}"


def cluster_slug(config: dict, method: dict | None = None) -> str:
    c = effective(config, method, "clustering")
    kind = c["kmeans"] if c["kmeans"] == "kmeans" else f"balanced{c['balance_jitter']:g}"
    sub = "" if c["max_tokens"] is None else f"-t{c['max_tokens']}"
    return f"k{c['k']}-pca{c['pca_dims']}-{kind}{sub}"


def score_slug(config: dict, method: dict | None = None) -> str:
    return f"taylor-{effective(config, method, 'clustering')['score_loss']}"


def grouping_spec(config: dict, method: dict | None = None) -> dict:
    """How the neuron groups of a method are built: grouping (lap/greedy/random), shared group on/off, seed."""
    c = effective(config, method, "clustering")
    shared = True if method is None else method.get("shared_group", True)
    return {"method": c["grouping"], "shared": bool(shared), "seed": config["seed"]}


def group_slug(config: dict, method: dict | None = None) -> str:
    g = grouping_spec(config, method)
    slug = f"{score_slug(config, method)}-{g['method']}"
    if g["method"] == "random":
        slug += f"-s{g['seed']}"
    return slug + ("" if g["shared"] else "-noshared")


def importance_slug(method: dict) -> str | None:
    """The per-layer importance an allocation needs: None (uniform), 'fc', 'taylor' or 'owl-m<M>'."""
    kind = method["allocation"]
    if kind == "uniform":
        return None
    return f"owl-m{method.get('owl_m', 5.0):g}" if kind == "owl" else kind


def allocation_slug(method: dict) -> str:
    measure = importance_slug(method)
    if measure is None:
        return "uniform"
    return f"{measure}-lambda{method['fc_lambda']:g}" + ("" if method["fc_bound"] else "-unbounded")


def sparsity_tag(p: float) -> str:
    """Canonical sparsity string used in paths (two decimals)."""
    return f"{p:.2f}"
