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

    def to(self, device) -> "InputMoments":
        """These moments on ``device`` (in place; returns self)."""
        if self.H is not None:
            self.H, self.s = self.H.to(device), self.s.to(device)
        return self


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
