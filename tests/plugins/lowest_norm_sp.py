"""A method defined outside the package (as a user would): removes the MLP channels with the lowest down_proj
column norm, heads untouched. Importing this module registers it; nothing in fangprune names it."""

import torch

from fangprune.core.selection import lowest
from fangprune.core.surgery import complement, keep_channels
from fangprune.methods.base import StructuredPruner
from fangprune.methods.registry import Method, register


class LowestNormPruner(StructuredPruner):
    def prune_units(self, r, n_units, n_channels):
        scores = torch.linalg.vector_norm(r.down.weight.data, dim=0) * self.params["scale"]
        kept = complement(r.intermediate_size, lowest(scores, n_channels))
        keep_channels(r, kept)
        return {"kept_channels": kept.tolist()}


LOWEST_NORM = register(
    Method(
        name="lowest-norm-sp",
        summary="test plug-in: MLP channels by down_proj column norm",
        defaults={"allocation": "uniform", "prune_attention": False, "module_balance": "layer_params", "scale": 1.0},
        schema={"scale": {"type": "number", "exclusiveMinimum": 0}},
        layer_pruner=LowestNormPruner,
    )
)
