"""Optimal Brain Surgeon math shared by the OBS-based methods (structured OBC, O-FANG, SparseGPT).

For a linear layer W [out, in] with input Hessian H = sum_t x_t x_t^T (dampened: H + percdamp mean(diag H) I):

* channel saliency (Eq. 9):  s_j = ||W[:, j]||^2 / [H^-1]_jj
* block saliency for a head (columns B): s_B = tr(W_B ([H^-1]_BB)^-1 W_B^T)
* unified compensation of the pruned set M (Eq. 10): W <- W - W_M ([H^-1]_MM)^-1 [H^-1]_M,:  (columns M -> 0)
"""

from __future__ import annotations

import torch

from fangprune.io import timed


class HessianAccumulator:
    """Running H = sum_t x_t x_t^T of a layer's input (fp32)."""

    def __init__(self):
        self.H: torch.Tensor | None = None
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        with timed("hessian"):
            x = x.reshape(-1, x.shape[-1]).float()
            if self.H is None:
                self.H = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float32, device=x.device)
            self.H.addmm_(x.T, x)
            self.tokens += x.shape[0]

    def take(self) -> torch.Tensor | None:
        """H, handed over: the accumulator keeps no reference, so the caller can free it once inverted."""
        H, self.H = self.H, None
        return H


def dampen(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """H + percdamp * mean(diag H) I in float64 (a new tensor); dead inputs (zero diagonal) get H_jj = 1."""
    H = H.to(torch.float64, copy=True)
    diag = torch.diagonal(H)
    diag[diag == 0] = 1.0
    diag += percdamp * diag.mean()
    return H


def _mirror_lower(A: torch.Tensor, block: int) -> None:
    """Copy the lower triangle of the square A onto its upper one, a block of rows at a time (no n x n temporary)."""
    n = A.shape[0]
    for s in range(0, n, block):
        e = min(s + block, n)
        A[s:e, e:] = A[e:, s:e].T
        d = A[s:e, s:e]
        d.copy_(torch.tril(d) + torch.tril(d, -1).T)


def invert_spd_in_place(A: torch.Tensor, block: int = 1024) -> bool:
    """Overwrite the symmetric positive definite float64 matrix A with its inverse, in A's own memory: blocked
    Cholesky A = L L^T, then L <- L^-1, then A^-1 = L^-T L^-1 (LAPACK's potrf, trtri and lauum, written with
    matrix products on views of A so that no temporary is larger than ``block`` x n). Returns False (A then
    garbage) if the factorisation fails. Reads only A's lower triangle.

    torch's cholesky + cholesky_inverse hold two n x n matrices (12.3 GiB for LLaMA-2-70B's down_proj), and
    scipy's in-place potrf / potri (32-bit LAPACK integers in its wheel) segfaulted here at n = 18944.
    """
    n = A.shape[0]
    # Cholesky, right-looking: factor a diagonal block, solve its panel, update the trailing lower triangle
    for k in range(0, n, block):
        e = min(k + block, n)
        L, info = torch.linalg.cholesky_ex(A[k:e, k:e])
        if int(info) != 0:
            return False
        A[k:e, k:e] = L
        if e == n:
            break
        P = A[e:, k:e]
        P.copy_(torch.linalg.solve_triangular(L.T, P, upper=True, left=False))  # P L^-T
        for j in range(e, n, block):
            je = min(j + block, n)
            A[j:, j:je].addmm_(P[j - e :], P[j - e : je - e].T, alpha=-1.0)
    for s in range(0, n, block):  # L is the lower triangle: clear the upper one for the products below
        A[s : s + block, s + block :] = 0.0
        A[s : s + block, s : s + block].tril_()
    # L^-1, last block first: X_21 = -X_22 L_21 L_11^-1, X_11 = L_11^-1
    for k in reversed(range(0, n, block)):
        e = min(k + block, n)
        X11 = torch.linalg.solve_triangular(A[k:e, k:e], torch.eye(e - k, dtype=A.dtype, device=A.device),
                                            upper=False)
        if e < n:  # X_22 L_21 a block row at a time, over X_22's lower triangle only
            P, Y = A[e:, k:e], torch.empty_like(A[e:, k:e])
            for r in range(e, n, block):
                re = min(r + block, n)
                Y[r - e : re - e] = A[r:re, e:re] @ P[: re - e]
            A[e:, k:e] = -(Y @ X11)
        A[k:e, k:e] = X11
    # A^-1 = X^T X, first block row first: row block I of the lower triangle is sum_{K >= I} X_KI^T X_K,:I+1,
    # which reads only rows K >= I, not yet overwritten
    for k in range(0, n, block):
        e = min(k + block, n)
        A[k:e, :e] = A[k:, k:e].T @ A[k:, :e]
    _mirror_lower(A, block)
    return True


@timed("inverse")
def dampened_inverse(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """[H + percdamp * mean(diag H) I]^-1 in float64 (pseudo-inverse if Cholesky fails).

    The dampened float64 copy is factorised and inverted in its own memory (``invert_spd_in_place``), so one
    float64 n x n matrix lives at a time: 6.1 GiB for LLaMA-2-70B's down_proj beside its fp32 H, where torch's
    cholesky + cholesky_inverse hold two (``tools/bench_inverse.py`` measures both).
    """
    Hd = dampen(H, percdamp)
    if invert_spd_in_place(Hd):
        return Hd
    del Hd  # a failed factorisation leaves it overwritten
    return torch.linalg.pinv(dampen(H, percdamp), hermitian=True)


@timed("selection")
def column_saliency(W: torch.Tensor, Hinv: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Eq. 9: s_j = ||W[:, j]||^2 / [H^-1]_jj (the float64 squares ``block`` rows at a time: no float64 copy
    of W, 3.8 GiB transient for a 70B down_proj)."""
    norms = torch.zeros(W.shape[1], dtype=torch.float64, device=W.device)
    for s in range(0, W.shape[0], block):
        norms += W[s : s + block].to(torch.float64).pow(2).sum(0)
    return norms / torch.diagonal(Hinv)


@timed("selection")
def block_saliency(W: torch.Tensor, Hinv: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """s_B = tr(W_B ([H^-1]_BB)^-1 W_B^T) for each column block B."""
    W = W.to(torch.float64)
    out = []
    for cols in blocks:
        Wb = W[:, cols]
        inv = torch.linalg.pinv(Hinv[cols][:, cols], hermitian=True)
        out.append(torch.einsum("ij,jk,ik->", Wb, inv, Wb))
    return torch.stack(out)


@timed("compensation")
def obs_compensate(W: torch.Tensor, Hinv: torch.Tensor, pruned: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Eq. 10: remove the columns ``pruned`` of W and update the others to minimise ||WX - W'X||^2.

    The update W_M ([H^-1]_MM)^-1 [H^-1]_M,: is applied ``block`` columns at a time, so no |M| x n row slice of
    H^-1 is copied (1.9 GiB for 30 % of a 70B down_proj).
    """
    if pruned.numel() == 0:
        return W.clone()
    W64 = W.to(torch.float64, copy=True)
    Hmm = torch.empty(pruned.numel(), pruned.numel(), dtype=Hinv.dtype, device=Hinv.device)
    for s in range(0, pruned.numel(), block):  # [H^-1]_MM without the |M| x n rows or |M|^2 index tensors
        Hmm[s : s + block] = Hinv[pruned[s : s + block]][:, pruned]
    L, info = torch.linalg.cholesky_ex(Hmm)
    if int(info) == 0:
        coef = torch.cholesky_solve(W64[:, pruned].T, L).T  # W_M (Hinv_MM)^-1
    else:
        coef = W64[:, pruned] @ torch.linalg.pinv(Hmm, hermitian=True)
    del Hmm, L
    for s in range(0, W64.shape[1], block):
        W64[:, s : s + block] -= coef @ Hinv[pruned, s : s + block]
    W64[:, pruned] = 0.0
    return W64.to(W.dtype)


def reconstruction_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """Relative output error ||(W - W_hat) X||^2 / ||W X||^2 = tr(D H D^T) / tr(W H W^T), D = W - W_hat."""
    H = H.to(torch.float64)
    W64, D = W.to(torch.float64), (W - W_hat).to(torch.float64)
    num = torch.einsum("ij,jk,ik->", D, H, D)
    den = torch.einsum("ij,jk,ik->", W64, H, W64)
    return float(num / den) if den > 0 else 0.0


OBC_VARIANTS = ("one-shot", "iterative")


def _lowest_allowed(scores: torch.Tensor, allowed: torch.Tensor) -> int:
    allowed = allowed.to(scores.device)  # bookkeeping lives on the host, saliencies on the compute device
    return int(torch.argmin(torch.where(allowed, scores, torch.full_like(scores, float("inf")))))


def prune_columns(
    W: torch.Tensor, Hinv: torch.Tensor, n: int, candidates: torch.Tensor | None = None, variant: str = "one-shot"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``n`` input columns of W (among ``candidates``) by OBS saliency (Eq. 9) and compensate (Eq. 10).

    ``one-shot`` (Alg. 2, the paper's default): all n chosen at once from the dense saliencies, one unified
    compensation. ``iterative`` (Alg. 1): one column at a time, each followed by its compensation and the
    removal of that column from H^-1 (H^-1 <- H^-1 - H^-1_:j H^-1_j: / H^-1_jj), saliencies recomputed.
    Returns (compensated W with the pruned columns zeroed, pruned indices sorted).
    """
    allowed = torch.ones(W.shape[1], dtype=torch.bool, device=W.device)
    if candidates is not None:
        allowed[:] = False
        allowed[candidates.to(W.device)] = True
    if n <= 0:
        return W.clone(), torch.empty(0, dtype=torch.long)
    if variant == "one-shot":
        sal = column_saliency(W, Hinv)
        sal = torch.where(allowed, sal, torch.full_like(sal, float("inf")))
        pruned = torch.argsort(sal, stable=True)[:n].sort().values
        return obs_compensate(W, Hinv, pruned), pruned.cpu()
    if variant != "iterative":
        raise ValueError(f"unknown obc_variant {variant!r} ({', '.join(OBC_VARIANTS)})")
    W64, Hinv = W.to(torch.float64).clone(), Hinv.to(torch.float64).clone()
    pruned = []
    for _ in range(n):
        j = _lowest_allowed((W64**2).sum(0) / torch.diagonal(Hinv), allowed)
        d = Hinv[j, j]
        W64 -= torch.outer(W64[:, j], Hinv[j, :]) / d
        W64[:, j] = 0.0
        Hinv -= torch.outer(Hinv[:, j], Hinv[j, :]) / d
        Hinv[j, j] = 1.0  # j is gone; keeps later saliencies finite (it is never chosen again)
        allowed[j] = False
        pruned.append(j)
    return W64.to(W.dtype), torch.tensor(sorted(pruned), dtype=torch.long)


def prune_blocks(
    W: torch.Tensor,
    Hinv: torch.Tensor,
    blocks: list[torch.Tensor],
    n: int,
    variant: str = "one-shot",
    per_group: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``n`` column blocks (heads) of W by block saliency and compensate jointly.

    With ``per_group`` (query heads inside KV groups) the blocks come in consecutive groups of ``per_group``
    and ``n`` blocks go from every group. ``iterative`` removes one block at a time and takes it out of H^-1
    (Schur complement), as ``prune_columns`` does for columns. Returns (W, pruned block indices sorted).
    """
    from fangprune.core.selection import lowest, lowest_per_group

    if n <= 0:
        return W.clone(), torch.empty(0, dtype=torch.long)
    if variant == "one-shot":
        sal = block_saliency(W, Hinv, blocks)
        pruned = lowest(sal, n) if per_group is None else lowest_per_group(sal, per_group, n)
        cols = torch.cat([blocks[b] for b in pruned.tolist()]).to(W.device)
        return obs_compensate(W, Hinv, cols), pruned
    if variant != "iterative":
        raise ValueError(f"unknown obc_variant {variant!r} ({', '.join(OBC_VARIANTS)})")
    Hinv = Hinv.to(torch.float64).clone()
    alive = torch.ones(len(blocks), dtype=torch.bool)
    group = torch.arange(len(blocks)) // (per_group or len(blocks))
    left = torch.full((int(group.max()) + 1,), n if per_group else n)
    pruned = []
    for _ in range(n * (len(left) if per_group else 1)):
        allowed = alive & (left[group] > 0)
        b = _lowest_allowed(block_saliency(W, Hinv, blocks), allowed)
        cols = blocks[b].to(W.device)
        W = obs_compensate(W, Hinv, cols)
        inv = torch.linalg.pinv(Hinv[cols][:, cols], hermitian=True)
        Hinv -= Hinv[:, cols] @ inv @ Hinv[cols, :]
        Hinv[cols.unsqueeze(1), cols] = torch.eye(cols.numel(), dtype=Hinv.dtype, device=Hinv.device)
        alive[b] = False
        left[group[b]] -= 1
        pruned.append(b)
    return W, torch.tensor(sorted(pruned), dtype=torch.long)


def sparsegpt_prune(
    W: torch.Tensor,
    H: torch.Tensor,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    mask: torch.Tensor | None = None,
    mask_scope: str = "block",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT (Frantar & Alistarh 2023): OBS reconstruction column by column with lazy block updates.

    Columns are processed in blocks of ``blocksize``; inside a block the mask is chosen from w^2 / [H^-1]_jj^2
    of the partially updated weights (``mask_scope="block"``: the lowest ``sparsity`` of the block's entries, as
    the reference; ``"row"``: of each row), or ``n`` of every ``m`` consecutive inputs (``n_m``), or given
    (``mask``, True = prune: SparseGPT's update applied after another method's selection). Pruned weights are
    zero; the others absorb the error through the upper Cholesky factor of H^-1. Returns (W, mask).
    """
    W = W.to(torch.float64).clone()
    cols = W.shape[1]
    W[:, torch.diagonal(H) == 0] = 0.0
    # dead inputs get H_jj = 1 and the damping is added to the diagonal, as the reference; the inverse is made in
    # its own memory, so two n x n float64 matrices live at once (it and its upper Cholesky factor), not three
    Hinv = dampened_inverse(H, percdamp)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)
    full_mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        d = torch.diagonal(Hinv1)
        if mask is not None:
            mask1 = mask[:, i1:i2].to(W.device).clone()
        elif n_m is None:
            tmp = W1**2 / d.unsqueeze(0) ** 2
            if mask_scope == "row":
                k = int(round(tmp.shape[1] * sparsity))
                mask1 = torch.zeros_like(tmp, dtype=torch.bool)
                if k:
                    mask1.scatter_(1, torch.argsort(tmp, dim=1, stable=True)[:, :k], True)
            else:
                thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            if mask is None and n_m is not None and i % n_m[1] == 0:
                tmp = W1[:, i : i + n_m[1]] ** 2 / d[i : i + n_m[1]].unsqueeze(0) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, n_m[0], dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0.0
            Q1[:, i] = q
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
        full_mask[:, i1:i2] = mask1
    return W, full_mask
