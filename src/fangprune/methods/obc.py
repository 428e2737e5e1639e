"""Structured OBC (Alg. 2, Eq. 9-10): one-shot Optimal Brain Surgeon selection with unified compensation.

For a linear layer W [out, in] with input Hessian H = sum_t x_t x_t^T (dampened: H + percdamp mean(diag H) I):

* channel saliency (Eq. 9):  s_j = ||W[:, j]||^2 / [H^-1]_jj
* block saliency for a head (columns B): s_B = tr(W_B ([H^-1]_BB)^-1 W_B^T)
* unified compensation of the pruned set M (Eq. 10): W <- W - W_M ([H^-1]_MM)^-1 [H^-1]_M,:  (columns M -> 0)

The units with the lowest saliency are pruned at once ("noiter"), then compensated jointly.
"""

from __future__ import annotations

import torch

from ..models import LayerRoles
from ..surgery import (
    DEFAULT_HEAD_UNIT,
    complement,
    head_columns,
    head_unit_of,
    keep_channels,
    keep_kv_groups,
    keep_query_heads,
    kv_group_columns,
    query_units,
)


def dampened_inverse(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """[H + percdamp * mean(diag H) I]^-1 in float64; dead inputs (zero diagonal) get H_jj = 1."""
    H = H.to(torch.float64).clone()
    diag = torch.diagonal(H)
    dead = diag == 0
    diag[dead] = 1.0
    damp = percdamp * diag.mean()
    diag += damp
    try:
        L = torch.linalg.cholesky(H)
        return torch.cholesky_inverse(L)
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


def lowest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n lowest scores (stable, sorted ascending by index)."""
    if n <= 0:
        return torch.empty(0, dtype=torch.long)
    return torch.argsort(scores, stable=True)[:n].sort().values.cpu()


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


def lowest_per_group(scores: torch.Tensor, heads_per_group: int, n: int) -> torch.Tensor:
    """Query heads to remove: the n lowest-scoring heads inside every KV group (sorted)."""
    groups = scores.reshape(-1, heads_per_group)
    local = torch.argsort(groups, dim=1, stable=True)[:, :n].cpu()
    base = torch.arange(groups.shape[0]).unsqueeze(1) * heads_per_group
    return (local + base).reshape(-1).sort().values


def prune_query_heads_obc(r: LayerRoles, H: torch.Tensor, n_per_group: int, percdamp: float) -> dict:
    """Remove the n_per_group query heads of lowest block saliency inside every KV group; compensate o_proj."""
    Hinv = dampened_inverse(H, percdamp)
    blocks = [head_columns(torch.tensor([h]), r.head_dim) for h in range(r.num_heads)]
    pruned = lowest_per_group(block_saliency(r.o.weight.data, Hinv, blocks), r.heads_per_group, n_per_group)
    cols = head_columns(pruned, r.head_dim)
    dev = r.o.weight.device
    r.o.weight.data = obs_compensate(r.o.weight.data, Hinv.to(dev), cols.to(dev))
    kept = complement(r.num_heads, pruned)
    keep_query_heads(r, kept)
    return {"kept_query_heads": kept.tolist(), "pruned_query_heads": pruned.tolist()}


def prune_attention_obc(r: LayerRoles, H: torch.Tensor, n_units: int, percdamp: float, head_unit: str = DEFAULT_HEAD_UNIT) -> dict:
    """Remove the n_units head units of lowest block saliency on o_proj, compensate o_proj, slice q/k/v/o."""
    units = r.num_kv_heads
    if n_units <= 0:
        return {"kept_kv_heads": list(range(units)), "pruned_kv_heads": []}
    if query_units(r, head_unit):
        return prune_query_heads_obc(r, H, n_units, percdamp)
    Hinv = dampened_inverse(H, percdamp)
    blocks = [kv_group_columns(r, torch.tensor([u])) for u in range(units)]
    sal = block_saliency(r.o.weight.data, Hinv, blocks)
    pruned = lowest(sal, n_units)
    cols = torch.cat([blocks[u] for u in pruned.tolist()])
    r.o.weight.data = obs_compensate(r.o.weight.data, Hinv.to(r.o.weight.device), cols.to(r.o.weight.device))
    kept = complement(units, pruned)
    keep_kv_groups(r, kept)
    return {"kept_kv_heads": kept.tolist(), "pruned_kv_heads": pruned.tolist()}


def prune_channels_obc(r: LayerRoles, H: torch.Tensor, n_channels: int, percdamp: float) -> dict:
    """Remove the n_channels down_proj inputs of lowest saliency (Eq. 9), compensate jointly (Eq. 10)."""
    n = r.intermediate_size
    if n_channels <= 0:
        return {"kept_channels": list(range(n))}
    Hinv = dampened_inverse(H, percdamp)
    pruned = lowest(column_saliency(r.down.weight.data, Hinv), n_channels)
    dev = r.down.weight.device
    r.down.weight.data = obs_compensate(r.down.weight.data, Hinv.to(dev), pruned.to(dev))
    kept = complement(n, pruned)
    keep_channels(r, kept)
    return {"kept_channels": kept.tolist()}


class OBCPruner:
    """Per-layer structured OBC: unweighted Hessians of the o_proj and down_proj inputs."""

    def __init__(self, params: dict, layer_idx: int, **_artifacts):
        self.params = params
        self.layer_idx = layer_idx
        self.acc = {"o": HessianAccumulator(), "down": HessianAccumulator()}

    def max_channels(self, n: int) -> int:
        return n - 1  # keep at least one channel so the block stays well defined

    def observed(self, r: LayerRoles) -> dict:
        return {"o": r.o, "down": r.down}

    def observe(self, name: str, x: torch.Tensor) -> None:
        self.acc[name].add(x)

    def prune(self, r: LayerRoles, n_units: int, n_channels: int) -> dict:
        out = {}
        if n_units:
            out.update(prune_attention_obc(
                r, self.acc["o"].H, n_units, self.params["percdamp"], head_unit_of(self.params)
            ))
        out.update(prune_channels_obc(r, self.acc["down"].H, n_channels, self.params["percdamp"]))
        return out
