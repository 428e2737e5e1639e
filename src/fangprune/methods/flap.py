"""FLAP (fluctuation-based adaptive structured pruning, Eq. 12-13) and F-FANG (Eq. 15).

Both score the input channels of o_proj and down_proj on the dense model in one layer-wise pass:

* IFV_j  = Var_t(x_tj)                                  (input feature variance, the "fluctuation")
* WIFV_j = IFV_j * ||W[:, j]||^2                        (weighted by the squared column norm)
* WIFN_j = mean_i |W_ij| * sqrt(sum_t x_tj^2 / n_windows) (Wanda-like weighted input norm)

Attention channel metrics are squared (reference) and pooled per head unit (a KV group: the KV head and the
query heads that share it). Structures decide how many units and channels each layer loses:

* UL-UM: per-layer budget, uniform across layers (``module_balance`` splits it between heads and channels);
* UL-MM: ``remove_heads`` KV groups in total, spread evenly; channels take the rest of each layer's budget;
* AL-MM: ``remove_heads`` KV groups chosen globally by standardised score; channels by a global threshold;
* AL-AM: standardised head and channel scores compete globally, each weighted by its parameter count, so the
  kept fraction of block parameters is 1 - p.

Bias compensation (Eq. 13) replaces pruned channels by their mean contribution: b += W[:, pruned] x_mean[pruned],
added as a bias of o_proj / down_proj.

F-FANG computes the fluctuation of each functional group's channels with token weights alpha_k (Eq. 15, the same
alpha as O-FANG), prunes the K groups independently within each layer's budget (shared group exempt), and applies
one unified bias compensation.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from fangprune.core.engine import input_hooks
from fangprune.core.selection import (
    channel_budget,
    lowest,
    split_evenly,
    unit_budget,
    unit_scores,
)
from fangprune.core.surgery import (
    complement,
    keep_channels,
    keep_kv_groups,
    kv_group_columns,
)
from fangprune.fang.reweighting import alpha_weights
from fangprune.methods.registry import Method, ParamError, register
from fangprune.modeling.models import LayerRoles, roles

log = logging.getLogger(__name__)

METRICS = ("IFV", "WIFV", "WIFN")
STRUCTURES = ("UL-UM", "UL-MM", "AL-MM", "AL-AM")


class ReferenceFluctuation:
    """The reference FLAP code's running estimate (``flap_variance: reference``), per call with a batch of B windows:

    mean <- mean * n / (n + B) + mean_t(x) / (n + B);  fluc <- 0 on the first call, else
    fluc <- fluc * (n - 1) / (n + B - 1) + sum_t (x_t - mean)^2 / (n + B);  n <- n + B.

    The squared deviation uses the *updated* mean (the reference aliases the old mean to the new one), the first
    batch adds nothing, and each later batch adds a sum over its tokens divided by a window count, so windows are
    weighted unequally: it is not the unbiased variance, and rankings differ.
    """

    def __init__(self):
        self.mean = None
        self.fluc = None
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        batch = x.shape[0] if x.dim() == 3 else 1
        inp = x.reshape(-1, x.shape[-1]).double()
        if self.mean is None:
            self.mean = torch.zeros(inp.shape[1], dtype=torch.float64, device=inp.device)
            self.fluc = torch.zeros_like(self.mean)
        n = self.n
        self.mean = self.mean * n / (n + batch) + inp.mean(0) / (n + batch)
        if n > 0:
            self.fluc = self.fluc * (n - 1) / (n + batch - 1) + ((inp - self.mean) ** 2).sum(0) / (n + batch)
        self.n += batch


class Moments:
    """Running (optionally weighted) per-channel sums: sum w, sum w x, sum w x^2, plus unweighted sum x^2, and
    (unweighted only) the reference code's running estimate."""

    def __init__(self):
        self.w = self.wx = self.wxx = self.xx = None
        self.windows = 0
        self.reference = ReferenceFluctuation()

    def add(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        if weight is None:
            self.reference.add(x)
        x = x.reshape(-1, x.shape[-1]).double()
        w = torch.ones_like(x) if weight is None else weight.reshape(x.shape).double()
        vals = (w.sum(0), (w * x).sum(0), (w * x * x).sum(0), (x * x).sum(0))
        if self.w is None:
            self.w, self.wx, self.wxx, self.xx = vals
        else:
            self.w, self.wx, self.wxx, self.xx = (a + b for a, b in zip((self.w, self.wx, self.wxx, self.xx), vals))

    @property
    def mean(self) -> torch.Tensor:
        return self.wx / self.w

    @property
    def variance(self) -> torch.Tensor:
        """Weighted variance with the unbiased (n-1) correction in the unweighted case."""
        var = self.wxx / self.w - self.mean**2
        n = self.w  # the token count for unit weights (and for T * alpha weights)
        return (var * n / (n - 1).clamp(min=1)).clamp(min=0)

    def fluctuation(self, mode: str) -> torch.Tensor:
        """IFV under ``flap_variance``: ``unbiased`` (default) or ``reference`` (the reference code's estimate)."""
        if mode == "unbiased":
            return self.variance
        if mode == "reference":
            return self.reference.fluc
        raise ValueError(f"unknown flap_variance {mode!r} (unbiased, reference)")

    def baseline(self, mode: str) -> torch.Tensor:
        """The mean used by bias compensation (the reference's running mean of window means in reference mode)."""
        return self.reference.mean if mode == "reference" else self.mean


def channel_metric(metric: str, W: torch.Tensor, stats: Moments, variance: torch.Tensor | None = None) -> torch.Tensor:
    """IFV / WIFV / WIFN of every input channel of W [out, in] (Eq. 12)."""
    W = W.double()
    # the statistics were gathered on the layer's compute device; the layer may be back on the host by now
    var = (stats.variance if variance is None else variance).to(W.device)
    if metric == "IFV":
        return var
    if metric == "WIFV":
        return var * (W**2).sum(0)
    if metric == "WIFN":
        return W.abs().mean(0) * torch.sqrt(stats.xx.to(W.device) / max(stats.windows, 1))
    raise ValueError(f"unknown FLAP metric {metric!r} ({', '.join(METRICS)})")


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std().clamp(min=1e-12)


def bias_compensate(lin: nn.Linear, kept: torch.Tensor, mean: torch.Tensor) -> None:
    """Eq. 13: b += W[:, pruned] mean[pruned], so removed channels contribute their mean output."""
    pruned = torch.ones(lin.in_features, dtype=torch.bool)
    pruned[kept] = False
    if not pruned.any():
        return
    W = lin.weight.data
    b = W[:, pruned.to(W.device)].double() @ mean.cpu()[pruned].to(W.device)
    if lin.bias is None:
        lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=W.dtype, device=W.device))
    lin.bias.data += b.to(W.dtype)


class _LayerStats:
    def __init__(self):
        self.o = Moments()
        self.down = Moments()
        self.grouped: Moments | None = None


def collect_statistics(engine, f_fang: dict | None = None) -> list[_LayerStats]:
    """One dense layer-wise pass: moments of the o_proj / down_proj inputs (and alpha-weighted group moments)."""
    stats = []
    for idx, layer in engine.visit("fluctuation statistics"):
        r = roles(layer)
        st = _LayerStats()
        ctx: dict = {}
        if f_fang is not None:
            st.grouped = Moments()
            group_of = torch.full((r.intermediate_size,), -1, dtype=torch.long)
            for g, members in enumerate(f_fang["groups"]["layers"][idx]["groups"]):
                group_of[torch.as_tensor(members)] = g
            ctx["group_of"] = group_of

        def observe(name, x, _st=st, _idx=idx):
            if name == "o":
                _st.o.add(x)
            elif name == "mlp":
                ctx["ids"] = f_fang["clusters"].assign(_idx, x)
            else:
                _st.down.add(x)
                if _st.grouped is not None:
                    _add_grouped(_st.grouped, x, ctx["ids"], ctx["group_of"], f_fang["tau"])

        modules = {"o": r.o, "down": r.down}
        if f_fang is not None:
            modules["mlp"] = r.mlp
        with input_hooks(modules, observe):
            outs = engine.forward_layer(idx)
        for m in (st.o, st.down, st.grouped):
            if m is not None:
                m.windows = engine.num_samples
        stats.append(st)
        engine.advance(outs)
    return stats


def _add_grouped(acc: Moments, x: torch.Tensor, ids: torch.Tensor, group_of: torch.Tensor, tau: float) -> None:
    """Accumulate alpha-weighted moments: channel j of group g gets token weights T * alpha_g (Eq. 15)."""
    k = int(group_of.max()) + 1
    member = torch.nonzero(group_of >= 0).squeeze(1).to(x.device)
    group_of_member = group_of[member.cpu()].to(x.device)
    for b in range(x.shape[0]):
        xb, ib = x[b].float(), ids[b].to(x.device)
        alpha = alpha_weights(xb, ib, k, tau) * xb.shape[0]  # [K, T]
        weight = torch.ones_like(xb)
        weight[:, member] = alpha[group_of_member].T
        acc.add(xb, weight)


def _budget(r: LayerRoles, sp: float, n_units: int) -> int:
    """``channel_budget``, keeping at least one channel (FLAP structures never empty a layer)."""
    return min(channel_budget(r, sp, n_units), r.intermediate_size - 1)


def select_flap(rs: list[LayerRoles], stats: list[_LayerStats], params: dict, sparsity: float):
    """Per-layer (kept KV groups, kept channels) for a FLAP structure."""
    metric, structure, mode = params["metric"], params["structure"], params["flap_variance"]
    attn = [channel_metric(metric, r.o.weight.data, s.o, s.o.fluctuation(mode)) ** 2 for r, s in zip(rs, stats)]
    mlp = [channel_metric(metric, r.down.weight.data, s.down, s.down.fluctuation(mode)) for r, s in zip(rs, stats)]
    L = len(rs)
    prune_units = params["prune_attention"]
    if structure in ("UL-UM", "UL-MM"):
        out = []
        for r, a, m in zip(rs, attn, mlp):
            if structure == "UL-UM":
                n_u = unit_budget(r, sparsity) if prune_units else 0
                n_c = math.floor(sparsity * r.intermediate_size + 1e-9) if params["module_balance"] == "per_module" else _budget(r, sparsity, n_u)
            else:
                n_u = min(params["remove_heads"] // L, r.num_kv_heads - 1)
                n_c = _budget(r, sparsity, n_u)
            out.append((complement(r.num_kv_heads, lowest(unit_scores(a, r), n_u)),
                        complement(r.intermediate_size, lowest(m, n_c))))
        return out
    # adaptive structures: standardised scores compete across layers
    units = [unit_scores(standardise(a), r, "mean") for r, a in zip(rs, attn)]
    chans = [standardise(m) for m in mlp]
    if structure == "AL-MM":
        n_remove = params["remove_heads"]
        flat_u = torch.cat(units)
        unit_pruned = _protect_last(units, lowest(flat_u, n_remove))
        total = sparsity * sum(r.attention_params() + r.mlp_params() for r in rs)
        spent = sum(len(p) * r.kv_unit_params() for p, r in zip(unit_pruned, rs))
        n_c = max(0, round((total - spent) / rs[0].channel_params()))
        chan_pruned = _protect_last(chans, lowest(torch.cat(chans), n_c))
    elif structure == "AL-AM":
        scores = torch.cat([*(units if prune_units else []), *chans])
        weights = torch.cat([
            *([torch.full((u.numel(),), r.kv_unit_params() / r.channel_params(), dtype=torch.float64) for u, r in zip(units, rs)] if prune_units else []),
            *[torch.ones(c.numel(), dtype=torch.float64) for c in chans],
        ])
        order = torch.argsort(scores, descending=True, stable=True)
        kept_w = torch.cumsum(weights[order], 0)
        cut = int(torch.argmin((kept_w - weights.sum() * (1 - sparsity)).abs()))
        keep = torch.zeros(scores.numel(), dtype=torch.bool)
        keep[order[: cut + 1]] = True
        pruned_flat = torch.nonzero(~keep).squeeze(1)
        n_units_total = sum(u.numel() for u in units) if prune_units else 0
        unit_pruned = _protect_last(units, pruned_flat[pruned_flat < n_units_total]) if prune_units else [torch.empty(0, dtype=torch.long)] * L
        chan_pruned = _protect_last(chans, pruned_flat[pruned_flat >= n_units_total] - n_units_total)
    else:
        raise ValueError(f"unknown FLAP structure {structure!r} ({', '.join(STRUCTURES)})")
    return [
        (complement(r.num_kv_heads, up), complement(r.intermediate_size, cp))
        for r, up, cp in zip(rs, unit_pruned, chan_pruned)
    ]


def _protect_last(per_layer: list[torch.Tensor], flat_pruned: torch.Tensor) -> list[torch.Tensor]:
    """Split global indices per layer, never removing a layer's best unit (a layer keeps at least one)."""
    out, start = [], 0
    for scores in per_layer:
        n = scores.numel()
        local = flat_pruned[(flat_pruned >= start) & (flat_pruned < start + n)] - start
        best = int(torch.argmax(scores))
        out.append(local[local != best])
        start += n
    return out


def select_f_fang(rs, stats, params, layer_sparsity, groups):
    """Per layer: heads by FLAP's per-layer head metric, channels pruned inside each functional group by the
    alpha-weighted fluctuation (Eq. 15); the shared group is exempt."""
    metric, out = params["metric"], []
    for idx, (r, s, sp) in enumerate(zip(rs, stats, layer_sparsity)):
        gl = [torch.as_tensor(g, dtype=torch.long) for g in groups["layers"][idx]["groups"]]
        n_u = unit_budget(r, sp) if params["prune_attention"] else 0
        n_c = _budget(r, sp, n_u)
        per_group = split_evenly(n_c, len(gl))
        if any(p > g.numel() for p, g in zip(per_group, gl)):
            raise ValueError(f"layer {idx}: sparsity {sp:.3f} would prune a functional group past 100%")
        attn = channel_metric(metric, r.o.weight.data, s.o, s.o.fluctuation(params["flap_variance"])) ** 2
        weighted = channel_metric(metric, r.down.weight.data, s.grouped, variance=s.grouped.variance)
        pruned = torch.cat([g[lowest(weighted[g], n)] for g, n in zip(gl, per_group)])
        out.append((complement(r.num_kv_heads, lowest(unit_scores(attn, r), n_u)),
                    complement(r.intermediate_size, pruned)))
    return out


def fluctuation_prune(model: nn.Module, engine, params: dict, layer_sparsity, clusters=None, groups=None) -> list:
    """Run FLAP or F-FANG on ``model`` (engine built on it) in place; return the per-layer report."""
    sparsity = float(sum(layer_sparsity) / len(layer_sparsity))
    f_fang = params["algorithm"] == "f-fang"
    extra = {"clusters": clusters, "groups": groups, "tau": params["tau"]} if f_fang else None
    stats = collect_statistics(engine, extra)
    layers = list(model.model.layers)
    rs = [roles(layer) for layer in layers]
    before = [r.attention_params() + r.mlp_params() for r in rs]
    if f_fang:
        keep = select_f_fang(rs, stats, params, layer_sparsity, groups)
    else:
        keep = select_flap(rs, stats, params, sparsity)
    report = []
    for idx, (r, s, (ku, kc)) in enumerate(zip(rs, stats, keep)):
        if params["bias_compensation"]:
            mode = params["flap_variance"]
            bias_compensate(r.o, kv_group_columns(r, ku), s.o.baseline(mode))
            bias_compensate(r.down, kc, s.down.baseline(mode))
        if ku.numel() < r.num_kv_heads:
            keep_kv_groups(r, ku)
        if kc.numel() < r.intermediate_size:
            keep_channels(r, kc)
        r = roles(layers[idx])
        after = r.attention_params() + r.mlp_params()
        report.append({
            "layer": idx,
            "target_sparsity": float(layer_sparsity[idx]),
            "kept_kv_heads": ku.tolist(),
            "kept_channels": kc.tolist(),
            "num_heads": r.num_heads,
            "num_kv_heads": r.num_kv_heads,
            "intermediate_size": r.intermediate_size,
            "block_params": after,
            "achieved_sparsity": 1 - after / before[idx],
        })
    return report


def _check_structure(params: dict) -> None:
    if params.get("structure") in ("UL-MM", "AL-MM") and params.get("remove_heads", -1) < 0:
        raise ParamError(
            "remove_heads", f"structure {params['structure']} needs remove_heads >= 0 (KV groups removed in total)"
        )


_FLUCTUATION_SCHEMA = {
    "metric": {"enum": list(METRICS)},
    "bias_compensation": {"type": "boolean"},
    "flap_variance": {
        "enum": ["unbiased", "reference"],
        "description": "IFV estimate: the unbiased variance over calibration tokens (default) or the reference "
        "code's running estimate (unequal window weights; see ReferenceFluctuation).",
    },
}

FLAP = register(
    Method(
        name="flap",
        summary="FLAP: fluctuation metric, adaptive structure, bias compensation (Eq. 12-13).",
        defaults={
            "allocation": "uniform",
            "prune_attention": True,
            "module_balance": "layer_params",
            "metric": "WIFV",
            "structure": "AL-AM",
            "remove_heads": -1,
            "bias_compensation": True,
            "flap_variance": "unbiased",
        },
        schema={
            "allocation": {"const": "uniform", "description": "FLAP's structures decide the layer-wise ratios."},
            "structure": {"enum": list(STRUCTURES)},
            "remove_heads": {
                "type": "integer",
                "minimum": -1,
                "description": "KV groups removed in total for UL-MM / AL-MM (-1: not used).",
            },
            **_FLUCTUATION_SCHEMA,
        },
        model_pruner=fluctuation_prune,
        check=_check_structure,
    )
)
F_FANG = register(
    Method(
        name="f-fang",
        summary="F-FANG: FLAP's fluctuation per functional group with token weights alpha (Eq. 15).",
        defaults={
            "allocation": "fc",
            "fc_lambda": 0.5,
            "fc_bound": True,
            "prune_attention": True,
            "metric": "WIFV",
            "tau": 9.0,
            "bias_compensation": True,
            "flap_variance": "unbiased",
            "shared_group": True,
        },
        schema={
            **_FLUCTUATION_SCHEMA,
            "shared_group": {"type": "boolean", "description": "SNGR: keep a shared group exempt (Table 5)."},
        },
        uses_groups=True,
        model_pruner=fluctuation_prune,
    )
)
