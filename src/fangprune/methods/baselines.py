"""Structured baselines of the FLAP paper, run in the sequential layer-wise driver without compensation.

* wanda-sp: channel score mean_i |W_ij| * ||x_j||_2 (Wanda, structured), heads pooled per KV group (or per
  query head with head_unit=query_head);
* mag-sp: channel score ||W[:, j]||_2 (no calibration data).
"""

from __future__ import annotations

import torch

from fangprune.core.selection import lowest, lowest_per_group, unit_scores
from fangprune.core.surgery import (
    complement,
    head_unit_of,
    keep_channels,
    keep_kv_groups,
    keep_query_heads,
    query_units,
)
from fangprune.methods.base import StructuredPruner
from fangprune.methods.registry import COMMON_PARAMS, Method, register
from fangprune.modeling.models import LayerRoles


class _ChannelScorePruner(StructuredPruner):
    def __init__(self, params: dict, layer_idx: int, **artifacts):
        super().__init__(params, layer_idx, **artifacts)
        self.sq = {}

    def observe(self, name: str, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        self.sq[name] = self.sq.get(name, 0) + (x * x).sum(0)

    def score(self, name: str, W: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prune_units(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        out = {}
        if n_units and query_units(r, head_unit_of(self.params)):
            per_head = self.score("o", r.o.weight.data).reshape(r.num_heads, -1).sum(1)
            kept = complement(r.num_heads, lowest_per_group(per_head, r.heads_per_group, n_units))
            keep_query_heads(r, kept)
            out["kept_query_heads"] = kept.tolist()
        elif n_units:
            kept = complement(r.num_kv_heads, lowest(unit_scores(self.score("o", r.o.weight.data), r), n_units))
            keep_kv_groups(r, kept)
            out["kept_kv_heads"] = kept.tolist()
        kept = complement(r.intermediate_size, lowest(self.score("down", r.down.weight.data), n_channels))
        if n_channels:
            keep_channels(r, kept)
        out["kept_channels"] = kept.tolist()
        return out


class WandaSPPruner(_ChannelScorePruner):
    def observed(self, r: LayerRoles) -> dict:
        return {"o": r.o, "down": r.down}

    def score(self, name, W):
        return W.double().abs().mean(0) * torch.sqrt(self.sq[name].to(W.device))


class MagnitudeSPPruner(_ChannelScorePruner):
    def score(self, name, W):
        return torch.linalg.vector_norm(W.double(), dim=0)


_SP_DEFAULTS = {"allocation": "uniform", "prune_attention": True, "module_balance": "layer_params", "width_multiple": 1}

WANDA_SP = register(
    Method(
        name="wanda-sp",
        summary="Structured Wanda: mean |W| x input norm per channel, uniform, sequential.",
        defaults=_SP_DEFAULTS,
        schema={"head_unit": COMMON_PARAMS["head_unit"]},
        layer_pruner=WandaSPPruner,
    )
)
MAG_SP = register(
    Method(
        name="mag-sp",
        summary="Structured magnitude: column norm per channel, uniform.",
        defaults=_SP_DEFAULTS,
        schema={"head_unit": COMMON_PARAMS["head_unit"]},
        layer_pruner=MagnitudeSPPruner,
    )
)
