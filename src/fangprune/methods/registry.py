"""Algorithm registry: names, parameter schemas and defaults. Import-light (no torch) so the Snakefile can
validate a config before any job starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_COMMON = {
    "allocation": {
        "enum": ["uniform", "fc"],
        "description": "Per-layer sparsity: uniform or functional complexity (Eq. 8).",
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
}


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    summary: str
    uses_groups: bool
    defaults: dict[str, Any]
    schema: dict[str, Any] = field(default_factory=dict)

    def json_schema(self) -> dict[str, Any]:
        props = {"algorithm": {"const": self.name}}
        props.update({k: v for k, v in _COMMON.items() if k in self.defaults})
        props.update(self.schema)
        return {"type": "object", "additionalProperties": False, "properties": props}


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "obc": AlgorithmSpec(
        name="obc",
        summary="Structured OBC (Alg. 2, Eq. 9-10): one-shot OBS selection, unified compensation.",
        uses_groups=False,
        defaults={
            "allocation": "uniform",
            "fc_lambda": 0.5,
            "fc_bound": True,
            "percdamp": 0.01,
            "prune_attention": True,
            "module_balance": "layer_params",
        },
    ),
    "o-fang": AlgorithmSpec(
        name="o-fang",
        summary="OBC per functional group with token re-weighting alpha (Eq. 6, 7, 11).",
        uses_groups=True,
        defaults={
            "allocation": "fc",
            "fc_lambda": 0.5,
            "fc_bound": True,
            "percdamp": 0.01,
            "prune_attention": True,
            "module_balance": "layer_params",
            "tau": 9.0,
        },
        schema={
            "tau": {"type": "number", "exclusiveMinimum": 0, "description": "Softmax temperature of alpha (Eq. 6)."},
        },
    ),
}


def resolve_method(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Method entry -> full parameter dict (defaults filled, ``algorithm`` set). Raises KeyError/ValueError."""
    params = dict(params or {})
    algo = params.get("algorithm", name)
    if algo not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {algo!r} (known: {', '.join(sorted(ALGORITHMS))})")
    spec = ALGORITHMS[algo]
    out = {"algorithm": algo, **spec.defaults}
    out.update(params)
    return out
