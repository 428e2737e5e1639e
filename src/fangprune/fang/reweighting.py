"""Token re-weighting for function-aware reconstruction (Eq. 6-7).

For functional group k and token t of a calibration window, d_kt is the distance between the centre of context k
and the centre of the token's own context c(t), both measured at the down_proj input (the intermediate
activation) over the window's tokens, and

    alpha_kt = softmax_t(-d_kt / tau)

so tokens of context k (d = 0) weigh most. The rows of alpha sum to 1; the group Hessian (Eq. 11) uses
T * alpha so that tau -> infinity recovers the unweighted Hessian. A context absent from the window gets
uniform weights (reference behaviour).

Table 6's re-weighting ablations (``mode``): ``ours`` (Eq. 6), ``reverse`` (softmax(+d / tau): far contexts
weigh most), ``uniform`` (every token 1/T: the unweighted group Hessian), ``only-matched`` (all weight on the
tokens of context k itself, 1/|{t: c(t)=k}| each).
"""

from __future__ import annotations

import torch


def context_distances(x: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre distances [K, K] between the contexts present in one window, and the presence mask [K]."""
    x = x.float()
    counts = torch.bincount(ids, minlength=k).to(x.dtype)
    sums = torch.zeros(k, x.shape[-1], dtype=x.dtype, device=x.device).index_add_(0, ids, x)
    present = counts > 0
    centres = sums / counts.clamp(min=1).unsqueeze(1)
    return torch.cdist(centres, centres), present


REWEIGHTING = ("ours", "reverse", "uniform", "only-matched")


def alpha_weights(x: torch.Tensor, ids: torch.Tensor, k: int, tau: float, mode: str = "ours") -> torch.Tensor:
    """alpha [K, T] for one window: x [T, N] down_proj inputs, ids [T] context ids (Eq. 6); rows sum to 1."""
    t = ids.numel()
    uniform = torch.full((k, t), 1.0 / t, dtype=torch.float32, device=x.device)
    if mode == "uniform":
        return uniform
    if mode == "only-matched":
        matched = (ids.unsqueeze(0) == torch.arange(k, device=ids.device).unsqueeze(1)).float()  # [K, T]
        counts = matched.sum(1, keepdim=True)
        return torch.where(counts > 0, matched / counts.clamp(min=1), uniform)
    if mode not in ("ours", "reverse"):
        raise ValueError(f"unknown reweighting {mode!r} ({', '.join(REWEIGHTING)})")
    dist, present = context_distances(x, ids, k)
    d = dist[:, ids]  # [K, T]: distance of each token's context to context k
    alpha = torch.softmax((d if mode == "reverse" else -d) / tau, dim=1)
    return torch.where(present.unsqueeze(1), alpha, uniform[0])


def effective_fraction(alpha: torch.Tensor) -> torch.Tensor:
    """Effective sample fraction of each row of token weights: (sum a)^2 / (T sum a^2), in (0, 1]."""
    return alpha.sum(1) ** 2 / (alpha.shape[1] * (alpha**2).sum(1)).clamp(min=1e-30)
