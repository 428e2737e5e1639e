"""Context Clustering: per decoder layer, the MLP input tokens (output of post_attention_layernorm) are projected
with PCA and grouped with KMeans into K contexts. A token's context is its nearest centre in PCA space.

``kmeans="balanced"`` is the reference code's size-constrained KMeans (cluster sizes within N/K (1 +- j)); its
assignment step is solved exactly as a min-cost flow (the reference uses k-means-constrained's OR-tools flow).
"""

from __future__ import annotations

import heapq
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
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

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
    """Assign N points to K clusters minimising total squared distance with every cluster size in [lo, hi].

    The transportation problem solved exactly as a min-cost flow by successive shortest paths on the K-node
    cluster graph: start from the nearest-centre assignment (optimal for its own sizes), then move one point at a
    time along the cheapest path from a cluster over ``hi`` (then: to a cluster under ``lo``), where an arc
    c -> c' costs the cheapest d(i, c') - d(i, c) over the points i now in c (per-arc heaps; Bellman-Ford, since
    arcs back along earlier moves are negative). Each move keeps the assignment optimal for its sizes, so the last
    is optimal under the bounds: the LP's objective (tested against scipy's LP on random cases); measured 0.3 s
    against 3.1 s for the LP at 16,384 points and 7 clusters.
    """
    n, k = dist2.shape
    labels = dist2.argmin(1)
    sizes = np.bincount(labels, minlength=k)
    heaps: list[list[list]] = [[[] for _ in range(k)] for _ in range(k)]  # [from][to]: (cost of moving, point)

    def push(points: np.ndarray, c: int) -> None:
        for c2 in range(k):
            if c2 != c:
                for item in zip((dist2[points, c2] - dist2[points, c]).tolist(), points.tolist()):
                    heapq.heappush(heaps[c][c2], item)

    def top(c: int, c2: int):
        h = heaps[c][c2]
        while h and labels[h[0][1]] != c:  # points that moved away since they were pushed
            heapq.heappop(h)
        return h[0] if h else None

    for c in range(k):
        push(np.flatnonzero(labels == c), c)
    while True:
        over, under = sizes > hi, sizes < lo
        if not over.any() and not under.any():
            return labels
        src, dst = (over, sizes < hi) if over.any() else (sizes > lo, under)
        cost = np.full((k, k), np.inf)
        for c in range(k):
            for c2 in range(k):
                t = top(c, c2) if c2 != c else None
                if t is not None:
                    cost[c, c2] = t[0]
        dist, pred = np.where(src, 0.0, np.inf), np.full(k, -1)
        for _ in range(k - 1):
            cand = dist[:, None] + cost
            best = cand.argmin(0)
            val = cand[best, np.arange(k)]
            better = val < dist - 1e-12
            if not better.any():
                break
            dist, pred = np.where(better, val, dist), np.where(better, best, pred)
        path = [int(np.argmin(np.where(dst & ~src, dist, np.inf)))]
        while pred[path[-1]] != -1:
            path.append(int(pred[path[-1]]))
        path.reverse()
        moves = [(a, b, top(a, b)[1]) for a, b in zip(path, path[1:])]  # points chosen before any moves
        for _, b, i in moves:
            labels[i] = b
            push(np.array([i]), b)
        sizes[path[0]] -= 1
        sizes[path[-1]] += 1


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
    from fangprune.core.engine import input_hooks
    from fangprune.modeling.models import roles

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
