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

from .methods.registry import ParamError, get_method, load_plugins, resolve_method

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
    try:
        load_plugins(config["plugins"])
    except ImportError as exc:
        raise ConfigError(f"config key 'plugins': {exc}") from None
    k = config["clustering"]["k"]
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
        resolved[name] = full
        for p in config["sparsities"]:
            hi = p + (full.get("fc_lambda", 0.0) * p if full.get("allocation") == "fc" else 0.0)
            cap = k / (k + 1) if method.uses_groups else 1.0
            if hi >= cap:
                raise ConfigError(
                    f"config key 'sparsities' ({p}) with 'methods.{name}': a layer may reach sparsity {hi:.3f}, "
                    f"but at most {cap:.3f} of the MLP can be removed"
                    + (f" (the shared group of 1/(K+1) with K={k} is exempt)" if cap < 1 else "")
                )
    if check_sources:
        for name, entry in config["models"].items():
            try:
                src = resolve_source(entry["source"])
            except FileNotFoundError as exc:
                raise ConfigError(f"config key 'models.{name}.source': {exc}") from None
            mtype = _local_model_type(src)
            if mtype is not None and mtype not in SUPPORTED_MODEL_TYPES:
                raise ConfigError(
                    f"config key 'models.{name}.source': unsupported architecture {mtype!r}; "
                    f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
                )
    _check_zeroshot(config)
    config["_methods_resolved"] = resolved
    return config


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
        from .zeroshot.local_data import missing_files

        for task in tasks:
            missing = missing_files(task, root)
            if missing:
                raise ConfigError(f"config key 'zeroshot.tasks' ({task}): not in data_dir {root}: {missing[0]}")


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


#: Decoder architectures whose layers fangprune reaches by role (attention q/k/v/o, MLP gate/up/down, norms).
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def _local_model_type(src: dict) -> str | None:
    """model_type from a local directory's config.json (None for hub ids, GGUF files and random models)."""
    if src["kind"] != "dir":
        return None
    cfg = Path(src["path"]) / "config.json"
    if not cfg.exists():
        return None
    import json

    return json.loads(cfg.read_text()).get("model_type")


#: Tiny random models for tests and CI: name -> (architecture, config overrides of testing.tiny_config).
RANDOM_MODELS = {
    "llama": ("llama", {}),  # GQA 4 query / 2 KV heads
    "llama-mha": ("llama", {"num_key_value_heads": 4}),  # LLaMA-1/2 style multi-head attention
    "qwen2": ("qwen2", {}),  # GQA with q/k/v biases
    "mistral": ("mistral", {}),
}


def resolve_source(source: str) -> dict[str, str | None]:
    """Classify a model source. Returns {kind: hub|dir|gguf|random, path, gguf_file}; raises FileNotFoundError
    for a local path that does not exist. ``random:<name>`` is a tiny random model (tests, CI; see RANDOM_MODELS)."""
    if source.startswith("random:"):
        name = source[7:]
        if name not in RANDOM_MODELS:
            raise FileNotFoundError(f"random models exist for {', '.join(RANDOM_MODELS)}, not {name!r}")
        return {"kind": "random", "path": name, "gguf_file": None}
    if source.startswith("pkg:"):
        pkg, _, rel = source[4:].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"python package {pkg!r} is not installed (source {source!r})")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        return resolve_source(str(path))
    path = Path(source).expanduser()
    looks_local = source.startswith(("/", ".", "~")) or source.endswith(".gguf") or path.exists()
    if not looks_local:
        if source.count("/") != 1:
            raise FileNotFoundError(f"{source!r} is neither an existing path nor a hub id of the form org/name")
        return {"kind": "hub", "path": source, "gguf_file": None}
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {str(path)!r}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise FileNotFoundError(f"{str(path)!r} is a file but not a .gguf model")
        return {"kind": "gguf", "path": str(path.parent.resolve()), "gguf_file": path.name}
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"directory {str(path)!r} has no config.json")
    return {"kind": "dir", "path": str(path.resolve()), "gguf_file": None}


def data_dir(config: dict) -> str | None:
    """Local dataset directory: config ``data_dir``, else $FANG_DATA_DIR, else None (= the hub)."""
    return config.get("data_dir") or os.environ.get(DATA_DIR_ENV) or None


def calib_slug(config: dict) -> str:
    c = config["calibration"]
    ds = c["dataset"].replace("text:", "text-").replace("/", "_")
    return f"{ds}-n{c['nsamples']}-l{c['seqlen']}-s{config['seed']}"


def cluster_slug(config: dict) -> str:
    c = config["clustering"]
    kind = c["kmeans"] if c["kmeans"] == "kmeans" else f"balanced{c['balance_jitter']:g}"
    sub = "" if c["max_tokens"] is None else f"-t{c['max_tokens']}"
    return f"k{c['k']}-pca{c['pca_dims']}-{kind}{sub}"


def score_slug(config: dict) -> str:
    return f"taylor-{config['clustering']['score_loss']}"


def group_slug(config: dict) -> str:
    return f"{score_slug(config)}-{config['clustering']['grouping']}"


def allocation_slug(method: dict) -> str:
    if method["allocation"] == "uniform":
        return "uniform"
    return f"fc-lambda{method['fc_lambda']:g}" + ("" if method["fc_bound"] else "-unbounded")


def sparsity_tag(p: float) -> str:
    """Canonical sparsity string used in paths (two decimals)."""
    return f"{p:.2f}"
