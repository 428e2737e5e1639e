"""O-FANG: structured OBC applied per functional neuron group with function-aware token weights (Eq. 6, 7, 11).

For group k with channels G_k, the down_proj input Hessian is H_k = sum_t (T alpha_kt) x_t,Gk x_t,Gk^T, with alpha
from ``reweighting.alpha_weights`` (context centres measured at the down_proj input). Saliency and unified
compensation (Eq. 9-10) act inside each group only; the shared group is never pruned, so each functional group
loses n / K channels where n is the layer's channel budget (the in-group ratio is raised by (K+1)/K).
Attention heads are pruned as in OBC.
"""

from __future__ import annotations

import torch

from ..models import LayerRoles
from ..obs import HessianAccumulator, column_saliency, dampened_inverse, obs_compensate
from ..reweighting import alpha_weights
from ..selection import lowest, split_evenly
from ..surgery import complement, head_unit_of, keep_channels
from .base import StructuredPruner
from .obc import OBS_DEFAULTS, prune_attention_obc
from .registry import COMMON_PARAMS, Method, register


class OFangPruner(StructuredPruner):
    def __init__(self, params: dict, layer_idx: int, clusters, groups: dict):
        super().__init__(params, layer_idx)
        self.clusters = clusters
        layer_groups = groups["layers"][layer_idx]
        self.groups = [torch.as_tensor(g, dtype=torch.long) for g in layer_groups["groups"]]
        self.shared = torch.as_tensor(layer_groups["shared"], dtype=torch.long)
        self.attn = HessianAccumulator()
        self.H = [None] * len(self.groups)
        self._ids: torch.Tensor | None = None

    def max_channels(self, n: int) -> int:
        return sum(g.numel() for g in self.groups)

    def observed(self, r: LayerRoles) -> dict:
        return {"o": r.o, "mlp": r.mlp, "down": r.down}

    def observe(self, name: str, x: torch.Tensor) -> None:
        if name == "o":
            self.attn.add(x)
        elif name == "mlp":
            self._ids = self.clusters.assign(self.layer_idx, x)  # context of each token [B, T]
        else:
            self._add_group_hessians(x)

    def _add_group_hessians(self, x: torch.Tensor) -> None:
        k, tau = len(self.groups), self.params["tau"]
        for b in range(x.shape[0]):
            xb, ids = x[b].float(), self._ids[b].to(x.device)
            weights = alpha_weights(xb, ids, k, tau) * xb.shape[0]  # T * alpha (Eq. 11)
            for g, idx in enumerate(self.groups):
                xg = xb[:, idx.to(x.device)]
                h = (xg * weights[g].unsqueeze(1)).T @ xg
                self.H[g] = h if self.H[g] is None else self.H[g] + h

    def prune_units(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        out = {}
        if n_units:
            out.update(
                prune_attention_obc(r, self.attn.H, n_units, self.params["percdamp"], head_unit_of(self.params))
            )
        per_group = split_evenly(n_channels, len(self.groups))
        W = r.down.weight.data
        pruned_all = []
        for g, idx in enumerate(self.groups):
            if per_group[g] > idx.numel():
                raise ValueError(
                    f"layer {self.layer_idx}: group {g} would lose {per_group[g]} of {idx.numel()} channels"
                )
            if per_group[g] == 0:
                continue
            Hinv = dampened_inverse(self.H[g], self.params["percdamp"])
            cols = idx.to(W.device)
            Wg = W[:, cols]
            pruned = lowest(column_saliency(Wg, Hinv), per_group[g])
            W[:, cols] = obs_compensate(Wg, Hinv.to(W.device), pruned.to(W.device))
            pruned_all.append(idx[pruned])
        removed = torch.cat(pruned_all) if pruned_all else torch.empty(0, dtype=torch.long)
        kept = complement(r.intermediate_size, removed)
        keep_channels(r, kept)
        out.update({"kept_channels": kept.tolist(), "pruned_per_group": per_group})
        return out


O_FANG = register(
    Method(
        name="o-fang",
        summary="OBC per functional group with token re-weighting alpha (Eq. 6, 7, 11).",
        defaults={**OBS_DEFAULTS, "allocation": "fc", "tau": 9.0},
        schema={"head_unit": COMMON_PARAMS["head_unit"]},
        uses_groups=True,
        layer_pruner=OFangPruner,
    )
)
