import numpy as np
import torch

from fangprune.fang.clustering import ContextClusters, balanced_assignment, fit_layer


def test_assignment_is_nearest_centre():
    torch.manual_seed(0)
    d, p, k = 12, 4, 5
    clusters = ContextClusters(torch.randn(2, d), torch.linalg.qr(torch.randn(d, p))[0].T.expand(2, p, d), torch.randn(2, k, p))
    x = torch.randn(3, 7, d)
    ids = clusters.assign(1, x)
    z = (x.reshape(-1, d) - clusters.mean[1]) @ clusters.components[1].T
    brute = torch.stack([((z - c) ** 2).sum(1) for c in clusters.centres[1]], 1).argmin(1)
    assert torch.equal(ids.reshape(-1), brute)
    assert ids.shape == (3, 7)


def test_fit_layer_recovers_separated_contexts():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 20
    tokens = np.concatenate([c + rng.normal(size=(50, 16)) for c in centres]).astype(np.float32)
    mean, comp, cen, labels = fit_layer(tokens, k=3, pca_dims=4, seed=0, n_init=4)
    assert comp.shape == (4, 16) and cen.shape == (3, 4)
    for block in range(3):
        assert len(set(labels[block * 50 : (block + 1) * 50])) == 1
    clusters = ContextClusters(torch.from_numpy(mean)[None], torch.from_numpy(comp)[None], torch.from_numpy(cen)[None])
    assert np.array_equal(clusters.assign(0, torch.from_numpy(tokens)).numpy(), labels)


def test_fit_is_deterministic():
    tokens = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
    a = fit_layer(tokens, 3, 4, seed=0, n_init=2)
    b = fit_layer(tokens, 3, 4, seed=0, n_init=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_balanced_assignment_respects_sizes():
    rng = np.random.default_rng(0)
    d2 = rng.random((30, 3))
    d2[:, 0] -= 1.0  # every point prefers cluster 0
    labels = balanced_assignment(d2, lo=8, hi=12)
    sizes = np.bincount(labels, minlength=3)
    assert sizes.min() >= 8 and sizes.max() <= 12


def _lp_optimum(d2, lo, hi):
    """The transportation LP's optimal objective (scipy HiGHS): the oracle for the flow solver."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, vstack

    n, k = d2.shape
    idx = np.arange(n * k)
    one = csr_matrix((np.ones(n * k), (idx // k, idx)), shape=(n, n * k))
    size = csr_matrix((np.ones(n * k), (idx % k, idx)), shape=(k, n * k))
    res = linprog(d2.ravel(), A_ub=vstack([size, -size]), b_ub=np.r_[np.full(k, hi), np.full(k, -lo)],
                  A_eq=one, b_eq=np.ones(n), bounds=(0, 1), method="highs")
    return res.fun


def test_balanced_assignment_is_optimal_against_the_lp():
    rng = np.random.default_rng(1)
    for _ in range(12):
        n, k, d = int(rng.integers(50, 400)), int(rng.integers(2, 8)), int(rng.integers(2, 6))
        z = rng.normal(size=(n, d)) * rng.uniform(0.3, 3, size=d)
        z[: n // 3] += 2  # an unbalanced nearest-centre start
        d2 = ((z[:, None] - z[rng.choice(n, k, replace=False)][None]) ** 2).sum(-1)
        j = rng.uniform(0.05, 0.5)
        lo, hi = int(np.floor(n / k * (1 - j))), int(np.ceil(n / k * (1 + j)))
        labels = balanced_assignment(d2, lo, hi)
        sizes = np.bincount(labels, minlength=k)
        assert sizes.min() >= lo and sizes.max() <= hi
        assert d2[np.arange(n), labels].sum() <= _lp_optimum(d2, lo, hi) * (1 + 1e-9) + 1e-9


def test_balanced_kmeans_sizes():
    tokens = np.random.default_rng(2).normal(size=(90, 6)).astype(np.float32)
    tokens[:60] += 4  # unbalanced blobs
    _, _, _, labels = fit_layer(tokens, 3, 3, seed=0, kmeans="balanced", balance_jitter=0.2, n_init=1, max_iter=5)
    sizes = np.bincount(labels, minlength=3)
    assert sizes.min() >= 24 and sizes.max() <= 36
