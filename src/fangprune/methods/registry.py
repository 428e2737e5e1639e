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


HEAD_UNIT = {
    "head_unit": {
        "enum": ["kv_group", "query_head"],
        "description": (
            "Unit of head removal. kv_group (default): a KV head with all the query heads sharing it. "
            "query_head: query heads inside each KV group, the same number from every group (K/V kept), so "
            "the layer keeps a uniform GQA ratio. Multi-head attention has one query head per group: both agree."
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
        schema=HEAD_UNIT,
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
            **HEAD_UNIT,
        },
    ),
    "flap": AlgorithmSpec(
        name="flap",
        summary="FLAP: fluctuation metric, adaptive structure, bias compensation (Eq. 12-13).",
        uses_groups=False,
        defaults={
            "allocation": "uniform",
            "prune_attention": True,
            "module_balance": "layer_params",
            "metric": "WIFV",
            "structure": "AL-AM",
            "remove_heads": -1,
            "bias_compensation": True,
        },
        schema={
            "allocation": {"const": "uniform", "description": "FLAP's structures decide the layer-wise ratios."},
            "metric": {"enum": ["IFV", "WIFV", "WIFN"]},
            "structure": {"enum": ["UL-UM", "UL-MM", "AL-MM", "AL-AM"]},
            "remove_heads": {
                "type": "integer",
                "minimum": -1,
                "description": "KV groups removed in total for UL-MM / AL-MM (-1: not used).",
            },
            "bias_compensation": {"type": "boolean"},
        },
    ),
    "f-fang": AlgorithmSpec(
        name="f-fang",
        summary="F-FANG: FLAP's fluctuation per functional group with token weights alpha (Eq. 15).",
        uses_groups=True,
        defaults={
            "allocation": "fc",
            "fc_lambda": 0.5,
            "fc_bound": True,
            "prune_attention": True,
            "metric": "WIFV",
            "tau": 9.0,
            "bias_compensation": True,
        },
        schema={
            "metric": {"enum": ["IFV", "WIFV", "WIFN"]},
            "tau": {"type": "number", "exclusiveMinimum": 0},
            "bias_compensation": {"type": "boolean"},
        },
    ),
    "wanda-sp": AlgorithmSpec(
        name="wanda-sp",
        summary="Structured Wanda: mean |W| x input norm per channel, uniform, sequential.",
        uses_groups=False,
        defaults={"allocation": "uniform", "prune_attention": True, "module_balance": "layer_params"},
        schema=HEAD_UNIT,
    ),
    "mag-sp": AlgorithmSpec(
        name="mag-sp",
        summary="Structured magnitude: column norm per channel, uniform.",
        uses_groups=False,
        defaults={"allocation": "uniform", "prune_attention": True, "module_balance": "layer_params"},
        schema=HEAD_UNIT,
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
    if out.get("structure") in ("UL-MM", "AL-MM") and out.get("remove_heads", -1) < 0:
        raise ValueError(f"structure {out['structure']} needs 'remove_heads' >= 0 (KV groups removed in total)")
    return out
