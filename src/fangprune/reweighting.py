"""Token re-weighting for function-aware reconstruction (Eq. 6-7).

For functional group k and token t of a calibration window, d_kt is the distance between the centre of context k
and the centre of the token's own context c(t), both measured at the down_proj input (the intermediate
activation) over the window's tokens, and

    alpha_kt = softmax_t(-d_kt / tau)

so tokens of context k (d = 0) weigh most. The rows of alpha sum to 1; the group Hessian (Eq. 11) uses
T * alpha so that tau -> infinity recovers the unweighted Hessian. A context absent from the window gets
uniform weights (reference behaviour).
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


def alpha_weights(x: torch.Tensor, ids: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """alpha [K, T] for one window: x [T, N] down_proj inputs, ids [T] context ids (Eq. 6)."""
    dist, present = context_distances(x, ids, k)
    d = dist[:, ids]  # [K, T]: distance of each token's context to context k
    alpha = torch.softmax(-d / tau, dim=1)
    uniform = torch.full_like(alpha[0], 1.0 / ids.numel())
    return torch.where(present.unsqueeze(1), alpha, uniform)
