"""Per-layer diagnostics of a pruned model: relative reconstruction error of every pruned output projection on
held-out calibration windows (windows not used for any Hessian or statistic),

    err = ||(W - W_hat) X + (b - b_hat)||^2 / ||W X||^2   (unweighted, summed over tokens),

computed from the held-out input moments H = X^T X, s = sum_t x_t and T, with W_hat the pruned weight embedded at
the dense input columns it kept (removed columns are 0). o_proj and down_proj are measured: they produce the
block's residual updates (their inputs' removed channels are exactly the removed heads / MLP channels).
"""

from __future__ import annotations

import torch
from torch import nn

from fangprune.core.surgery import KEPT_IN
from fangprune.modeling.models import roles

#: The output projections measured per layer.
MODULES = {"o_proj": "o", "down_proj": "down"}


class InputMoments:
    """H = sum_t x_t x_t^T, s = sum_t x_t and the token count T of a module's input (float64)."""

    def __init__(self):
        self.H = self.s = None
        self.T = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        if self.H is None:
            self.H = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
            self.s = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        self.H.addmm_(x.T, x)
        self.s += x.sum(0)
        self.T += x.shape[0]


def embedded_weight(lin: nn.Linear, in_features: int) -> torch.Tensor:
    """The weight of ``lin`` at the dense input positions (columns removed by surgery are 0)."""
    kept = getattr(lin, KEPT_IN, None)
    W = lin.weight.data.double()
    if kept is None:
        return W
    out = torch.zeros(W.shape[0], in_features, dtype=torch.float64, device=W.device)
    out[:, kept.to(W.device)] = W
    return out


def relative_error(W: torch.Tensor, b: torch.Tensor | None, lin: nn.Linear, m: InputMoments) -> float:
    """||(W - W_hat) X + (b - b_hat)||^2 / ||W X||^2 from the held-out moments of the dense input X."""
    W = W.double().to(m.H.device)
    D = W - embedded_weight(lin, W.shape[1]).to(m.H.device)
    num = torch.einsum("ij,jk,ik->", D, m.H, D)
    b0 = torch.zeros(W.shape[0], dtype=torch.float64, device=m.H.device) if b is None else b.double().to(m.H.device)
    b1 = torch.zeros_like(b0) if lin.bias is None else lin.bias.data.double().to(m.H.device)
    db = b0 - b1
    num = num + 2 * db @ (D @ m.s) + m.T * (db @ db)
    den = torch.einsum("ij,jk,ik->", W, m.H, W)
    return float(num / den) if den > 0 else 0.0


def snapshot(layer: nn.Module) -> dict:
    """Dense weights and biases of the measured projections of one layer (copies on the CPU)."""
    r = roles(layer)
    out = {}
    for name, role in MODULES.items():
        lin = getattr(r, role)
        out[name] = (lin.weight.data.detach().cpu().clone(), None if lin.bias is None else lin.bias.data.cpu().clone())
    return out


def observed_modules(layer: nn.Module) -> dict:
    r = roles(layer)
    return {name: getattr(r, role) for name, role in MODULES.items()}


def layer_errors(layer: nn.Module, dense: dict, moments: dict) -> dict:
    """{module: relative error} of a pruned layer against its dense snapshot."""
    r = roles(layer)
    return {
        name: relative_error(dense[name][0], dense[name][1], getattr(r, role), moments[name])
        for name, role in MODULES.items()
        if moments[name].H is not None
    }


def diagnostic_rows(manifests: list[dict]) -> list[dict]:
    """One row per (model, method, sparsity, layer) from pruning.json manifests: errors, sizes, group statistics."""
    rows = []
    for man in manifests:
        for e in man["report"]["layers"]:
            row = {
                "model": man["model"], "method": man["method"], "sparsity": man["sparsity"], "layer": e["layer"],
                "target_sparsity": e["target_sparsity"], "achieved_sparsity": e["achieved_sparsity"],
            }
            for name, err in (e.get("reconstruction_error") or {}).items():
                row[f"err_{name}"] = err
            groups = e.get("groups")
            if groups:
                row["group_kept"] = "/".join(str(g["kept"]) for g in groups)
                row["in_group_ratio"] = sum(g["in_group_ratio"] for g in groups) / len(groups)
                row["ess_mean"] = sum(g["effective_sample_fraction"] for g in groups) / len(groups)
                row["ess_min"] = min(g["effective_sample_fraction"] for g in groups)
                row["cluster_tokens"] = "/".join(str(g["context_tokens"]) for g in groups)
                row["shared_size"] = e.get("shared_size", 0)
            rows.append(row)
    return rows


DIAG_COLUMNS = ["model", "method", "sparsity", "layer", "target_sparsity", "achieved_sparsity", "err_o_proj",
                "err_down_proj", "group_kept", "in_group_ratio", "ess_mean", "ess_min", "cluster_tokens", "shared_size"]


def summary_markdown(rows: list[dict], holdout: str | None = None) -> str:
    """Per (model, sparsity, method): mean and max relative error over layers, mean effective sample fraction."""
    import statistics

    out = ["## Diagnostics: relative reconstruction error on held-out calibration windows", ""]
    keys = sorted({(r["model"], r["sparsity"], r["method"]) for r in rows})
    for model in sorted({k[0] for k in keys}):
        out += [f"### {model}", "", "| Method | Sparsity | o_proj mean | o_proj max | down_proj mean | down_proj max "
                "| ESS (mean over groups, layers) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for _, sp, method in (k for k in keys if k[0] == model):
            sel = [r for r in rows if (r["model"], r["sparsity"], r["method"]) == (model, sp, method)]
            cells = []
            for name in ("err_o_proj", "err_down_proj"):
                vals = [r[name] for r in sel if name in r]
                cells += [f"{statistics.mean(vals):.4f}", f"{max(vals):.4f}"] if vals else ["-", "-"]
            ess = [r["ess_mean"] for r in sel if "ess_mean" in r]
            cells.append(f"{statistics.mean(ess):.3f}" if ess else "-")
            out.append(f"| {method} | {sp:.0%} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("- err = ||(W - W_hat) X + (b - b_hat)||^2 / ||W X||^2 over held-out windows of the calibration text "
               "(not used for any Hessian or statistic); layer-wise methods see the held-out stream through their "
               "own pruned layers, FLAP/F-FANG the dense stream." + (f" Held-out windows: {holdout}." if holdout else ""))
    out.append("- ESS = effective sample fraction of the token weights, (sum alpha)^2 / (T sum alpha^2), per "
               "functional group and window (1 = uniform weights).")
    return "\n".join(out) + "\n"
