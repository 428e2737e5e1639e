"""Structured OBC (Alg. 2, Eq. 9-10): one-shot Optimal Brain Surgeon selection with unified compensation.

Heads: block saliency of each head unit's o_proj columns; MLP channels: Eq. 9 on down_proj's columns. The units
with the lowest saliency are pruned at once ("noiter"), then compensated jointly (Eq. 10). The OBS math lives in
``fangprune.obs``.
"""

from __future__ import annotations

import torch

from ..models import LayerRoles
from ..obs import HessianAccumulator, block_saliency, column_saliency, dampened_inverse, obs_compensate
from ..selection import lowest, lowest_per_group
from ..surgery import (
    DEFAULT_HEAD_UNIT,
    complement,
    head_columns,
    head_unit_of,
    keep_channels,
    keep_kv_groups,
    keep_query_heads,
    kv_group_columns,
    query_units,
)
from .base import StructuredPruner
from .registry import COMMON_PARAMS, Method, register


def prune_query_heads_obc(r: LayerRoles, H: torch.Tensor, n_per_group: int, percdamp: float) -> dict:
    """Remove the n_per_group query heads of lowest block saliency inside every KV group; compensate o_proj."""
    Hinv = dampened_inverse(H, percdamp)
    blocks = [head_columns(torch.tensor([h]), r.head_dim) for h in range(r.num_heads)]
    pruned = lowest_per_group(block_saliency(r.o.weight.data, Hinv, blocks), r.heads_per_group, n_per_group)
    cols = head_columns(pruned, r.head_dim)
    dev = r.o.weight.device
    r.o.weight.data = obs_compensate(r.o.weight.data, Hinv.to(dev), cols.to(dev))
    kept = complement(r.num_heads, pruned)
    keep_query_heads(r, kept)
    return {"kept_query_heads": kept.tolist(), "pruned_query_heads": pruned.tolist()}


def prune_attention_obc(
    r: LayerRoles, H: torch.Tensor, n_units: int, percdamp: float, head_unit: str = DEFAULT_HEAD_UNIT
) -> dict:
    """Remove the n_units head units of lowest block saliency on o_proj, compensate o_proj, slice q/k/v/o."""
    units = r.num_kv_heads
    if n_units <= 0:
        return {"kept_kv_heads": list(range(units)), "pruned_kv_heads": []}
    if query_units(r, head_unit):
        return prune_query_heads_obc(r, H, n_units, percdamp)
    Hinv = dampened_inverse(H, percdamp)
    blocks = [kv_group_columns(r, torch.tensor([u])) for u in range(units)]
    sal = block_saliency(r.o.weight.data, Hinv, blocks)
    pruned = lowest(sal, n_units)
    cols = torch.cat([blocks[u] for u in pruned.tolist()])
    r.o.weight.data = obs_compensate(r.o.weight.data, Hinv.to(r.o.weight.device), cols.to(r.o.weight.device))
    kept = complement(units, pruned)
    keep_kv_groups(r, kept)
    return {"kept_kv_heads": kept.tolist(), "pruned_kv_heads": pruned.tolist()}


def prune_channels_obc(r: LayerRoles, H: torch.Tensor, n_channels: int, percdamp: float) -> dict:
    """Remove the n_channels down_proj inputs of lowest saliency (Eq. 9), compensate jointly (Eq. 10)."""
    n = r.intermediate_size
    if n_channels <= 0:
        return {"kept_channels": list(range(n))}
    Hinv = dampened_inverse(H, percdamp)
    pruned = lowest(column_saliency(r.down.weight.data, Hinv), n_channels)
    dev = r.down.weight.device
    r.down.weight.data = obs_compensate(r.down.weight.data, Hinv.to(dev), pruned.to(dev))
    kept = complement(n, pruned)
    keep_channels(r, kept)
    return {"kept_channels": kept.tolist()}


class OBCPruner(StructuredPruner):
    """Per-layer structured OBC: unweighted Hessians of the o_proj and down_proj inputs."""

    def __init__(self, params: dict, layer_idx: int, **artifacts):
        super().__init__(params, layer_idx, **artifacts)
        self.acc = {"o": HessianAccumulator(), "down": HessianAccumulator()}

    def observed(self, r: LayerRoles) -> dict:
        return {"o": r.o, "down": r.down}

    def observe(self, name: str, x: torch.Tensor) -> None:
        self.acc[name].add(x)

    def prune_units(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        out = {}
        if n_units:
            out.update(
                prune_attention_obc(r, self.acc["o"].H, n_units, self.params["percdamp"], head_unit_of(self.params))
            )
        out.update(prune_channels_obc(r, self.acc["down"].H, n_channels, self.params["percdamp"]))
        return out


#: Parameters of the OBS-based structured methods (obc, o-fang).
OBS_DEFAULTS = {
    "allocation": "uniform",
    "fc_lambda": 0.5,
    "fc_bound": True,
    "percdamp": 0.01,
    "prune_attention": True,
    "module_balance": "layer_params",
}

OBC = register(
    Method(
        name="obc",
        summary="Structured OBC (Alg. 2, Eq. 9-10): one-shot OBS selection, unified compensation.",
        defaults=OBS_DEFAULTS,
        schema={"head_unit": COMMON_PARAMS["head_unit"]},
        layer_pruner=OBCPruner,
    )
)
