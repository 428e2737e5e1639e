"""The method plug-in point: every pruning method is one module that declares a :class:`Method` and registers it.

A method declares its name, a summary, parameter defaults and a JSON schema (the config is validated against
it before any job starts), whether it needs the neuron groups (clusters + groups artifacts), and either

* ``layer_pruner``: a factory ``(params, layer_idx, clusters=None, groups=None) -> pruner`` run by the shared
  layer-wise sequential driver (``pruning.prune_model``); a pruner has ``observed(roles) -> {name: module}``
  (inputs to record), ``observe(name, x)`` and ``prune(roles, sparsity) -> report``; or
* ``model_pruner``: ``(model, engine, params, layer_sparsity, clusters=None, groups=None) -> report`` for
  methods that decide globally from one dense pass (FLAP).

The built-in methods live in the modules listed in ``BUILTIN_MODULES``; other modules (a user's package, a test)
call :func:`register` at import, or are named in the config's ``plugins`` list so every job imports them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

#: Modules holding the built-in methods (imported on the first lookup).
BUILTIN_MODULES = (
    "fangprune.methods.obc",
    "fangprune.methods.fang",
    "fangprune.methods.flap",
    "fangprune.methods.baselines",
    "fangprune.methods.unstructured",
)

#: Parameter schemas shared by several methods; a method takes those named in its defaults.
COMMON_PARAMS = {
    "allocation": {
        "enum": ["uniform", "fc", "taylor", "owl"],
        "description": "Per-layer sparsity: uniform, functional complexity (Eq. 8, paper), block Taylor "
        "sensitivity or OWL outlier ratio (Table 7), the last two through the same Eq. 8 map.",
    },
    "fc_lambda": {
        "type": "number",
        "minimum": 0,
        "description": "lambda as a fraction of the target sparsity p (paper: 0.5).",
    },
    "fc_bound": {
        "type": "boolean",
        "description": "Keep every layer in [p - lambda, p + lambda] with a mean-preserving shift.",
    },
    "percdamp": {"type": "number", "exclusiveMinimum": 0, "description": "Hessian dampening (x mean diag)."},
    "prune_attention": {"type": "boolean", "description": "Also remove attention heads (KV groups)."},
    "module_balance": {
        "enum": ["layer_params", "per_module"],
        "description": (
            "layer_params: heads are removed in whole units (floor), MLP channels take the rest of the layer's "
            "parameter budget; per_module (reference): the same ratio for heads (floor) and channels."
        ),
    },
    "head_unit": {
        "enum": ["kv_group", "query_head"],
        "description": (
            "Unit of head removal. kv_group (default): a KV head with all the query heads sharing it. "
            "query_head: query heads inside each KV group, the same number from every group (K/V kept), so "
            "the layer keeps a uniform GQA ratio. Multi-head attention has one query head per group: both agree."
        ),
    },
    "tau": {"type": "number", "exclusiveMinimum": 0, "description": "Softmax temperature of alpha (Eq. 6)."},
    "width_multiple": {
        "type": "integer",
        "minimum": 1,
        "description": (
            "Every kept MLP width is a multiple of this (1 = the paper: any width). Each layer's kept width is "
            "rounded to the nearest multiple, so the model's total stays within half a multiple per layer of "
            "the target; 32 lets whole rows quantize in GGUF, 64/128 suit CPU and GPU matmul kernels."
        ),
    },
}

#: The allocation map's parameters (Eq. 8: lambda = 0.5 p, bounded) for a method whose defaults are uniform.
ALLOCATION_DEFAULTS = {"fc_lambda": 0.5, "fc_bound": True}


class ParamError(ValueError):
    """A method parameter is invalid; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    defaults: dict[str, Any]
    schema: dict[str, Any] = field(default_factory=dict)
    uses_groups: bool = False
    layer_pruner: Callable | None = None
    model_pruner: Callable | None = None
    #: extra semantic check of the resolved parameters; raises ParamError
    check: Callable[[dict], None] | None = None
    #: whether the method removes structure (smaller checkpoint) or zeroes weights (same shapes)
    structured: bool = True

    def __post_init__(self):
        if (self.layer_pruner is None) == (self.model_pruner is None):
            raise ValueError(f"method {self.name!r}: give exactly one of layer_pruner or model_pruner")

    def json_schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {"algorithm": {"const": self.name}, **OVERRIDES}
        props.update({k: v for k, v in COMMON_PARAMS.items() if k in self.defaults})
        if "allocation" in self.defaults:  # any method with a per-layer allocation may use Eq. 8's map or OWL
            props.update({k: COMMON_PARAMS[k] for k in ALLOCATION_DEFAULTS})
            props["owl_m"] = {"type": "number", "exclusiveMinimum": 0, "description": "OWL outlier threshold M (5)."}
        props.update(self.schema)
        return {"type": "object", "additionalProperties": False, "properties": props}


#: Per-method overrides of config sections, accepted by every method (checked against the config schema).
OVERRIDES = {
    "calibration": {"type": "object", "description": "This method's calibration spec (Table 8), e.g. {dataset: alpaca}."},
    "clustering": {"type": "object", "description": "This method's clustering keys, e.g. {k: 5} or {grouping: random}."},
}

_REGISTRY: dict[str, Method] = {}
_builtins_loaded = False


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry (a module calls this at import). Returns it, so it can be a module constant."""
    if method.name in _REGISTRY and not replace and _REGISTRY[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import the modules named in the config's ``plugins`` (each registers its methods)."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ImportError(f"plugin module {mod!r} cannot be imported: {exc}") from exc


def get_method(name: str) -> Method:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def methods() -> dict[str, Method]:
    _load_builtins()
    return dict(_REGISTRY)


def resolve_method(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Method entry -> full parameter dict (defaults filled, ``algorithm`` set). Raises KeyError/ValueError."""
    params = dict(params or {})
    spec = get_method(params.get("algorithm", name))
    out = {"algorithm": spec.name, **spec.defaults}
    out.update(params)
    if out.get("allocation", "uniform") != "uniform":  # e.g. a structured baseline with FANG's allocation
        for key, value in ALLOCATION_DEFAULTS.items():
            out.setdefault(key, value)
    if spec.check is not None:
        spec.check(out)
    return out
