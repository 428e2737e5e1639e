"""Layer-wise sparsity allocation by functional complexity (Eq. 8).

FC_l = 1 - E_t cos(X_l, X_{l+1}) measures how much decoder block l changes the residual stream on the dense
model. FC is min-max scaled to [0, 2 lambda] (FC^) and sp_l = p - (FC^_l - mean FC^): blocks that change the
stream more are pruned less, and the mean is exactly p.

Eq. 8 alone can leave [p - lambda, p + lambda] when FC^ is skewed (e.g. one outlier layer); with ``bound=True``
(default) the allocation is the mean-preserving projection sp_l = clip(p - FC^_l + c, p - lambda, p + lambda) with
c chosen so that the mean is p, which equals Eq. 8 whenever Eq. 8 already lies in the band. ``bound=False`` is the
reference code (no band).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def functional_complexity(engine) -> np.ndarray:
    """FC_l averaged over calibration windows: mean over windows of (1 - mean_t cos(x_in, x_out))."""
    fc = []
    for idx, _layer in engine.visit("functional complexity"):
        outs = engine.forward_layer(idx)
        cos = F.cosine_similarity(engine.hidden.float(), outs.float(), dim=-1)  # [n, T]
        fc.append(float((1.0 - cos.mean(dim=1)).mean()))
        engine.advance(outs)
    return np.asarray(fc)


def uniform_allocation(p: float, num_layers: int) -> np.ndarray:
    return np.full(num_layers, float(p))


def fc_allocation(fc: np.ndarray, p: float, lam: float, bound: bool = True) -> np.ndarray:
    """Eq. 8. ``lam`` is lambda in absolute units (the paper uses lambda = 0.5 p)."""
    fc = np.asarray(fc, dtype=np.float64)
    span = fc.max() - fc.min()
    if lam == 0 or span == 0:
        return uniform_allocation(p, fc.size)
    fc_hat = (fc - fc.min()) / span * 2.0 * lam
    sp = p - (fc_hat - fc_hat.mean())
    if not bound or (sp.min() >= p - lam - 1e-12 and sp.max() <= p + lam + 1e-12):
        return sp
    lo_c, hi_c = -2.0 * lam - 1.0, 2.0 * lam + 1.0  # mean(clip(p - fc_hat + c)) is monotone in c

    def mean_at(c):
        return np.clip(p - fc_hat + c, p - lam, p + lam).mean()

    for _ in range(200):
        mid = 0.5 * (lo_c + hi_c)
        lo_c, hi_c = (mid, hi_c) if mean_at(mid) < p else (lo_c, mid)
    sp = np.clip(p - fc_hat + 0.5 * (lo_c + hi_c), p - lam, p + lam)
    return sp + (p - sp.mean())  # remove the last ~1e-16 of bisection error


#: Allocations: uniform, or an importance per layer mapped by Eq. 8 (FC: the paper; taylor and owl: Table 7).
ALLOCATIONS = ("uniform", "fc", "taylor", "owl")


def allocate(method: dict, p: float, importance: np.ndarray, k: int | None) -> np.ndarray:
    """Per-layer sparsities for a resolved method entry; rejects allocations no layer can satisfy.

    ``importance`` is FC for ``fc``, the block Taylor sensitivity for ``taylor``, the outlier ratio for
    ``owl`` (all: more important -> pruned less, through the same Eq. 8 map with lambda = fc_lambda * p).
    """
    if method["allocation"] == "uniform":
        sp = uniform_allocation(p, len(importance))
    elif method["allocation"] in ALLOCATIONS:
        sp = fc_allocation(importance, p, method["fc_lambda"] * p, method["fc_bound"])
    else:
        raise ValueError(f"unknown allocation {method['allocation']!r} ({', '.join(ALLOCATIONS)})")
    cap = 1.0 if k is None else k / (k + 1)
    bad = np.flatnonzero(sp >= cap)
    if bad.size:
        raise ValueError(
            f"allocation gives layer {int(bad[0])} sparsity {sp[bad[0]]:.3f}: the functional groups would be pruned "
            f"past 100% (at most {cap:.3f} of a layer can go when the shared group is exempt)"
        )
    if (sp < 0).any():
        raise ValueError(f"allocation gives a negative sparsity {sp.min():.3f}")
    return sp
