"""Base class of the structured layer pruners: the layer budget is computed once, here, for every method."""

from __future__ import annotations

import torch

from fangprune.core.selection import layer_budget
from fangprune.modeling.models import LayerRoles


class StructuredPruner:
    """Removes head units and MLP channels of one layer; subclasses implement ``prune_units``.

    ``max_channels(n)`` bounds the channels a method can remove (O-FANG exempts the shared group).
    """

    def __init__(self, params: dict, layer_idx: int, clusters=None, groups=None):
        self.params = params
        self.layer_idx = layer_idx

    def max_channels(self, n: int) -> int:
        return n - 1  # keep at least one channel so the block stays well defined

    def observed(self, r: LayerRoles) -> dict:
        return {}

    def observe(self, name: str, x: torch.Tensor) -> None:
        pass

    def prune(self, r: LayerRoles, sp: float) -> dict:
        n_units, n_channels = layer_budget(r, sp, self.params, self.max_channels(r.intermediate_size))
        return self.prune_units(r, n_units, n_channels)

    def prune_units(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        raise NotImplementedError
