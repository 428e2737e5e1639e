"""Optimal Brain Surgeon math shared by the OBS-based methods (structured OBC, O-FANG, SparseGPT).

For a linear layer W [out, in] with input Hessian H = sum_t x_t x_t^T (dampened: H + percdamp mean(diag H) I):

* channel saliency (Eq. 9):  s_j = ||W[:, j]||^2 / [H^-1]_jj
* block saliency for a head (columns B): s_B = tr(W_B ([H^-1]_BB)^-1 W_B^T)
* unified compensation of the pruned set M (Eq. 10): W <- W - W_M ([H^-1]_MM)^-1 [H^-1]_M,:  (columns M -> 0)
"""

from __future__ import annotations

import torch


class HessianAccumulator:
    """Running H = sum_t x_t x_t^T of a layer's input (fp32)."""

    def __init__(self):
        self.H: torch.Tensor | None = None
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        if self.H is None:
            self.H = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float32, device=x.device)
        self.H.addmm_(x.T, x)
        self.tokens += x.shape[0]


def dampen(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """H + percdamp * mean(diag H) I in float64; dead inputs (zero diagonal) get H_jj = 1."""
    H = H.to(torch.float64).clone()
    diag = torch.diagonal(H)
    diag[diag == 0] = 1.0
    diag += percdamp * diag.mean()
    return H


def dampened_inverse(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """[H + percdamp * mean(diag H) I]^-1 in float64 (pseudo-inverse if Cholesky fails)."""
    H = dampen(H, percdamp)
    try:
        return torch.cholesky_inverse(torch.linalg.cholesky(H))
    except RuntimeError:
        return torch.linalg.pinv(H, hermitian=True)


def column_saliency(W: torch.Tensor, Hinv: torch.Tensor) -> torch.Tensor:
    """Eq. 9: s_j = ||W[:, j]||^2 / [H^-1]_jj."""
    return (W.to(torch.float64) ** 2).sum(0) / torch.diagonal(Hinv)


def block_saliency(W: torch.Tensor, Hinv: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """s_B = tr(W_B ([H^-1]_BB)^-1 W_B^T) for each column block B."""
    W = W.to(torch.float64)
    out = []
    for cols in blocks:
        Wb = W[:, cols]
        inv = torch.linalg.pinv(Hinv[cols][:, cols], hermitian=True)
        out.append(torch.einsum("ij,jk,ik->", Wb, inv, Wb))
    return torch.stack(out)


def obs_compensate(W: torch.Tensor, Hinv: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """Eq. 10: remove the columns ``pruned`` of W and update the others to minimise ||WX - W'X||^2."""
    if pruned.numel() == 0:
        return W.clone()
    W64 = W.to(torch.float64)
    Hmm = Hinv[pruned][:, pruned]
    try:
        L = torch.linalg.cholesky(Hmm)
        coef = torch.cholesky_solve(W64[:, pruned].T, L).T  # W_M (Hinv_MM)^-1
    except RuntimeError:
        coef = W64[:, pruned] @ torch.linalg.pinv(Hmm, hermitian=True)
    out = W64 - coef @ Hinv[pruned, :]
    out[:, pruned] = 0.0
    return out.to(W.dtype)


def reconstruction_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """Relative output error ||(W - W_hat) X||^2 / ||W X||^2 = tr(D H D^T) / tr(W H W^T), D = W - W_hat."""
    H = H.to(torch.float64)
    W64, D = W.to(torch.float64), (W - W_hat).to(torch.float64)
    num = torch.einsum("ij,jk,ik->", D, H, D)
    den = torch.einsum("ij,jk,ik->", W64, H, W64)
    return float(num / den) if den > 0 else 0.0
