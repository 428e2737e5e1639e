"""Context Clustering: per decoder layer, the MLP input tokens (output of post_attention_layernorm) are projected
with PCA and grouped with KMeans into K contexts. A token's context is its nearest centre in PCA space.

``kmeans="balanced"`` is the reference code's size-constrained KMeans (cluster sizes within N/K (1 +- j)); its
assignment step is solved exactly as a transportation LP (totally unimodular, so the LP optimum is integral).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class ContextClusters:
    """PCA mean [L, d], components [L, P, d] and centres [L, K, P] for every layer."""

    mean: torch.Tensor
    components: torch.Tensor
    centres: torch.Tensor

    @property
    def k(self) -> int:
        return self.centres.shape[1]

    def project(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean[layer].to(x.device, torch.float32)
        comp = self.components[layer].to(x.device, torch.float32)
        return (x.float() - mean) @ comp.T

    def assign(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Cluster id of every token of ``x`` [..., d]: the nearest centre in PCA space."""
        shape = x.shape[:-1]
        z = self.project(layer, x.reshape(-1, x.shape[-1]))
        d = torch.cdist(z, self.centres[layer].to(z.device, torch.float32))
        return d.argmin(dim=1).reshape(shape)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "components": self.components, "centres": self.centres}

    @classmethod
    def from_state_dict(cls, sd: dict) -> "ContextClusters":
        return cls(sd["mean"], sd["components"], sd["centres"])


def fit_layer(
    tokens: np.ndarray,
    k: int,
    pca_dims: int,
    seed: int,
    kmeans: str = "kmeans",
    balance_jitter: float = 0.4,
    n_init: int = 16,
    max_iter: int = 25,
    tol: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA + KMeans on one layer's tokens [N, d]. Returns (mean, components [P, d], centres [K, P], labels)."""
    from sklearn.decomposition import PCA
    from sklearn.cluster import KMeans

    tokens = np.asarray(tokens, dtype=np.float32)
    dims = min(pca_dims, tokens.shape[1], tokens.shape[0])
    pca = PCA(n_components=dims, random_state=seed, svd_solver="full" if tokens.shape[1] <= 1024 else "auto")
    z = pca.fit_transform(tokens).astype(np.float64)
    if kmeans == "kmeans":
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed)
        labels = km.fit_predict(z)
        centres = km.cluster_centers_
    elif kmeans == "balanced":
        centres, labels = balanced_kmeans(z, k, balance_jitter, n_init, max_iter, tol, seed)
    else:
        raise ValueError(f"unknown kmeans variant {kmeans!r}")
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32), centres.astype(np.float32), labels


def balanced_assignment(dist2: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Assign N points to K clusters minimising total squared distance with every cluster size in [lo, hi]."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, vstack

    n, k = dist2.shape
    idx = np.arange(n * k)
    rows_eq = csr_matrix((np.ones(n * k), (idx // k, idx)), shape=(n, n * k))
    size = csr_matrix((np.ones(n * k), (idx % k, idx)), shape=(k, n * k))
    res = linprog(
        dist2.ravel(),
        A_ub=vstack([size, -size]),
        b_ub=np.concatenate([np.full(k, hi), np.full(k, -lo)]),
        A_eq=rows_eq,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    if not res.success:
        raise RuntimeError(f"balanced assignment LP failed: {res.message}")
    return res.x.reshape(n, k).argmax(axis=1)


def balanced_kmeans(z, k, jitter, n_init, max_iter, tol, seed):
    from sklearn.cluster import kmeans_plusplus

    n = z.shape[0]
    lo, hi = int(np.floor(n / k * (1 - jitter))), int(np.ceil(n / k * (1 + jitter)))
    rng = np.random.RandomState(seed)
    best = None
    for _ in range(n_init):
        centres, _ = kmeans_plusplus(z, k, random_state=rng.randint(2**31 - 1))
        for _ in range(max_iter):
            d2 = ((z[:, None, :] - centres[None]) ** 2).sum(-1)
            labels = balanced_assignment(d2, lo, hi)
            new = np.stack([z[labels == c].mean(0) for c in range(k)])
            shift = ((new - centres) ** 2).sum()
            centres = new
            if shift <= tol * z.var(0).mean():
                break
        inertia = ((z - centres[labels]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, centres, labels)
    return best[1], best[2]


def fit_context_clusters(
    engine,
    k: int,
    pca_dims: int,
    seed: int,
    kmeans: str = "kmeans",
    balance_jitter: float = 0.4,
    n_init: int = 16,
    max_iter: int = 25,
    tol: float = 1e-3,
    max_tokens: int | None = None,
) -> tuple[ContextClusters, dict]:
    """Fit PCA + KMeans on every layer's MLP inputs of the dense model (engine = a LayerwiseEngine)."""
    from .engine import input_hooks
    from .models import roles

    means, comps, centres, sizes = [], [], [], []
    rng = np.random.RandomState(seed)
    for idx, layer in engine.visit("context clustering"):
        buf: list[torch.Tensor] = []
        with input_hooks({"mlp": roles(layer).mlp}, lambda _n, x: buf.append(x.reshape(-1, x.shape[-1]).float().cpu())):
            outs = engine.forward_layer(idx)
        tokens = torch.cat(buf).numpy()
        if max_tokens is not None and tokens.shape[0] > max_tokens:
            tokens = tokens[np.sort(rng.choice(tokens.shape[0], max_tokens, replace=False))]
        mean, comp, cen, labels = fit_layer(
            tokens, k, pca_dims, seed, kmeans, balance_jitter, n_init, max_iter, tol
        )
        means.append(torch.from_numpy(mean))
        comps.append(torch.from_numpy(comp))
        centres.append(torch.from_numpy(cen))
        sizes.append(np.bincount(labels, minlength=k).tolist())
        engine.advance(outs)
    clusters = ContextClusters(torch.stack(means), torch.stack(comps), torch.stack(centres))
    return clusters, {"cluster_sizes": sizes}
