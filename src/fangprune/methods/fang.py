"""O-FANG: structured OBC applied per functional neuron group with function-aware token weights (Eq. 6, 7, 11).

For group k with channels G_k, the down_proj input Hessian is H_k = sum_t (T alpha_kt) x_t,Gk x_t,Gk^T, with alpha
from ``reweighting.alpha_weights`` (context centres measured at the down_proj input). Saliency and unified
compensation (Eq. 9-10) act inside each group only; the shared group is never pruned, so each functional group
loses n / K channels where n is the layer's channel budget (the in-group ratio is raised by (K+1)/K).
Attention heads are pruned as in OBC.

Ablations (paper Tables 5, 6, 9; defaults = the paper):

* ``function_aware: false`` (FAP off): the plain method over the layer: one unweighted Hessian, OBC selection
  among all non-shared channels, compensation over all columns. With ``shared_group: false`` it is OBC.
* ``shared_group: false`` (SNGR off): the groups artifact has no shared group (every channel in one of K groups).
* ``reweighting``: ``ours`` / ``reverse`` / ``uniform`` / ``only-matched`` token weights (Table 6).
* ``obc_variant``: ``one-shot`` (Alg. 2) / ``iterative`` (Alg. 1) inside each group (Table 9).
* ``compensation: layer`` (beyond the paper): channels chosen per group as above, then one OBS compensation over
  all kept columns of the layer with the unweighted Hessian, instead of compensation inside each group's
  columns (where the shared group's columns never compensate).
* ``group_quota: global`` (beyond the paper): instead of n / K channels from every group, the n channels of
  lowest saliency across all functional groups go (each saliency under its own group's weighted Hessian, whose
  token weights sum to T in every group, so the scales agree); a group keeps at least one channel.
"""

from __future__ import annotations

import torch

from fangprune.core.obs import (
    HessianAccumulator,
    column_saliency,
    dampened_inverse,
    obs_compensate,
    prune_columns,
)
from fangprune.core.selection import split_evenly
from fangprune.core.surgery import complement, head_unit_of, keep_channels
from fangprune.fang.reweighting import REWEIGHTING, alpha_weights, effective_fraction
from fangprune.methods.base import StructuredPruner
from fangprune.methods.obc import (
    OBS_DEFAULTS,
    OBS_SCHEMA,
    prune_attention_obc,
    prune_channels_obc,
)
from fangprune.methods.registry import Method, ParamError, register
from fangprune.modeling.models import LayerRoles


class OFangPruner(StructuredPruner):
    def __init__(self, params: dict, layer_idx: int, clusters, groups: dict):
        super().__init__(params, layer_idx)
        self.clusters = clusters
        layer_groups = groups["layers"][layer_idx]
        self.groups = [torch.as_tensor(g, dtype=torch.long) for g in layer_groups["groups"]]
        self.shared = torch.as_tensor(layer_groups["shared"], dtype=torch.long)
        self.function_aware = params["function_aware"]
        self.attn = HessianAccumulator()
        self.full = HessianAccumulator()  # unweighted down_proj Hessian (FAP off, layer compensation)
        self.H = [None] * len(self.groups)
        self.ess = torch.zeros(len(self.groups), dtype=torch.float64)
        self.context_tokens = torch.zeros(len(self.groups), dtype=torch.long)
        self.windows = 0
        self._ids: torch.Tensor | None = None

    def max_channels(self, n: int) -> int:
        return sum(g.numel() for g in self.groups)

    def observed(self, r: LayerRoles) -> dict:
        if not self.function_aware:
            return {"o": r.o, "down": r.down}
        return {"o": r.o, "mlp": r.mlp, "down": r.down}

    def observe(self, name: str, x: torch.Tensor) -> None:
        if name == "o":
            self.attn.add(x)
        elif name == "mlp":
            self._ids = self.clusters.assign(self.layer_idx, x)  # context of each token [B, T]
        else:
            if not self.function_aware or self.params["compensation"] == "layer":
                self.full.add(x)
            if self.function_aware:
                self._add_group_hessians(x)

    def _add_group_hessians(self, x: torch.Tensor) -> None:
        k, tau, mode = len(self.groups), self.params["tau"], self.params["reweighting"]
        for b in range(x.shape[0]):
            xb, ids = x[b].float(), self._ids[b].to(x.device)
            alpha = alpha_weights(xb, ids, k, tau, mode)
            self.ess += effective_fraction(alpha).double().cpu()
            self.context_tokens += torch.bincount(ids.cpu(), minlength=k)[:k]
            self.windows += 1
            weights = alpha * xb.shape[0]  # T * alpha (Eq. 11)
            for g, idx in enumerate(self.groups):
                xg = xb[:, idx.to(x.device)]
                h = (xg * weights[g].unsqueeze(1)).T @ xg
                self.H[g] = h if self.H[g] is None else self.H[g] + h

    def _global_quota(self, W: torch.Tensor, n: int) -> list[int]:
        """Channels per group when the n lowest saliencies across all functional groups go (Eq. 9 per group)."""
        sal, owner = [], []
        for g, idx in enumerate(self.groups):
            Hinv = dampened_inverse(self.H[g], self.params["percdamp"]).to(W.device)
            s = column_saliency(W[:, idx.to(W.device)], Hinv).cpu()
            s[torch.argmax(s)] = float("inf")  # every group keeps its most salient channel
            sal.append(s)
            owner.append(torch.full((idx.numel(),), g))
        chosen = torch.argsort(torch.cat(sal), stable=True)[:n]
        return torch.bincount(torch.cat(owner)[chosen], minlength=len(self.groups)).tolist()

    def prune_units(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        p = self.params
        out = {}
        if n_units:
            out.update(prune_attention_obc(r, self.attn.take(), n_units, p["percdamp"], head_unit_of(p),
                                           p["obc_variant"]))
        if not self.function_aware:
            candidates = torch.cat(self.groups) if self.shared.numel() else None
            out.update(prune_channels_obc(r, self.full.take(), n_channels, p["percdamp"], p["obc_variant"],
                                          candidates))
            return out
        W = r.down.weight.data
        if p["group_quota"] == "global":
            per_group = self._global_quota(W, n_channels)
        else:
            per_group = split_evenly(n_channels, len(self.groups))
        pruned_all = []
        for g, idx in enumerate(self.groups):
            if per_group[g] > idx.numel():
                raise ValueError(
                    f"layer {self.layer_idx}: group {g} would lose {per_group[g]} of {idx.numel()} channels"
                )
            if per_group[g] == 0:
                continue
            Hinv = dampened_inverse(self.H[g], p["percdamp"]).to(W.device)
            cols = idx.to(W.device)
            Wg, pruned = prune_columns(W[:, cols], Hinv, per_group[g], variant=p["obc_variant"])
            if p["compensation"] == "group":
                W[:, cols] = Wg
            pruned_all.append(idx[pruned])
        removed = torch.cat(pruned_all) if pruned_all else torch.empty(0, dtype=torch.long)
        if p["compensation"] == "layer" and removed.numel():
            Hinv = dampened_inverse(self.full.take(), p["percdamp"]).to(W.device)
            r.down.weight.data = obs_compensate(W, Hinv, removed.to(W.device))
        kept = complement(r.intermediate_size, removed)
        keep_channels(r, kept)
        n_win = max(self.windows, 1)
        out.update({
            "kept_channels": kept.tolist(),
            "pruned_per_group": per_group,
            "groups": [
                {
                    "size": int(idx.numel()),
                    "kept": int(idx.numel() - n),
                    "in_group_ratio": n / idx.numel() if idx.numel() else 0.0,
                    "effective_sample_fraction": float(self.ess[g] / n_win),
                    "context_tokens": int(self.context_tokens[g]),
                }
                for g, (idx, n) in enumerate(zip(self.groups, per_group))
            ],
            "shared_size": int(self.shared.numel()),
        })
        return out


def _check(params: dict) -> None:
    if params["compensation"] == "layer" and not params["function_aware"]:
        raise ParamError("compensation", "compensation: layer needs function_aware: true (FAP off is layer-wide)")


O_FANG = register(
    Method(
        name="o-fang",
        summary="OBC per functional group with token re-weighting alpha (Eq. 6, 7, 11).",
        defaults={
            **OBS_DEFAULTS,
            "allocation": "fc",
            "tau": 9.0,
            "shared_group": True,
            "function_aware": True,
            "reweighting": "ours",
            "compensation": "group",
            "group_quota": "equal",
        },
        schema={
            **OBS_SCHEMA,
            "shared_group": {"type": "boolean", "description": "SNGR: keep a shared group exempt (Table 5)."},
            "function_aware": {"type": "boolean", "description": "FAP: group-wise, token-weighted (Table 5)."},
            "reweighting": {"enum": list(REWEIGHTING), "description": "Token weights alpha (Table 6)."},
            "compensation": {
                "enum": ["group", "layer"],
                "description": "OBS compensation inside each group (paper) or over the whole layer, unweighted.",
            },
            "group_quota": {
                "enum": ["equal", "global"],
                "description": "Channels per functional group: n / K each (paper) or the n lowest saliencies "
                "across groups (beyond the paper).",
            },
        },
        uses_groups=True,
        layer_pruner=OFangPruner,
        check=_check,
    )
)
