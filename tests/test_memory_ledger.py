"""A memory ledger over the layer-wise driver: a ``TorchDispatchMode`` records every square matrix at least as wide
as the hidden size that a method creates (Hessians, inverses, held-out moments); when the driver moves on to the
next layer, none of the previous layer's may still be alive (on a GPU each would hold n x n of its memory)."""

import gc
import weakref

import pytest
import torch
from conftest import random_windows, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fangprune.core.engine import LayerwiseEngine
from fangprune.methods.registry import get_method, resolve_method
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")


class Ledger(TorchDispatchMode):
    def __init__(self, width: int):
        super().__init__()
        self.width, self.layer, self.made = width, -1, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[0] == t.shape[1] >= self.width:
                self.made.append((weakref.ref(t), self.layer, tuple(t.shape)))
        return out

    def alive_from_before(self, layer: int, keep: set) -> list:
        gc.collect()
        return [(lay, shape) for ref, lay, shape in self.made
                if lay < layer and (t := ref()) is not None and t.untyped_storage().data_ptr() not in keep]


@pytest.mark.parametrize("name", ["obc", "o-fang", "sparsegpt", "wanda", "wanda-sp"])
def test_no_square_matrix_of_a_layer_outlives_it(monkeypatch, name):
    from test_pruning import artifacts

    model, windows = tiny_model(), random_windows(4, 32)
    params = resolve_method(name, {})
    clusters = groups = None
    if get_method(params["algorithm"]).uses_groups:
        clusters, groups, *_ = artifacts(model, windows)
    ledger = Ledger(model.config.hidden_size)
    leaks = []
    visit = LayerwiseEngine.visit

    def checked_visit(self, desc):
        for idx, layer in visit(self, desc):
            keep = {p.untyped_storage().data_ptr() for p in model.parameters()}
            leaks.extend(ledger.alive_from_before(idx, keep))
            ledger.layer = idx
            yield idx, layer

    monkeypatch.setattr(LayerwiseEngine, "visit", checked_visit)
    with ledger:
        prune_model(model, windows, params, [0.4] * 3, CPU, clusters=clusters, groups=groups,
                    holdout=random_windows(2, 32, seed=7))
    assert ledger.made, "the ledger saw no Hessian"
    assert leaks == []


class SquareCount(TorchDispatchMode):
    """The most float64 n x n matrices alive at once."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.alive, self.most = n, [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64 and tuple(t.shape) == (self.n, self.n):
                if all(r() is None or r().untyped_storage().data_ptr() != t.untyped_storage().data_ptr()
                       for r in self.alive):
                    self.alive.append(weakref.ref(t))
        self.alive = [r for r in self.alive if r() is not None]
        self.most = max(self.most, len(self.alive))
        return out


def test_sparsegpt_holds_two_square_matrices_and_matches_the_reference_algebra():
    """SparseGPT's H^-1 is made in place (two n x n float64 matrices at most: it and its Cholesky factor, where
    the reference's chain holds three), with the reference's result."""
    from fangprune.core.obs import sparsegpt_prune

    g = torch.Generator().manual_seed(0)
    n = 2048  # wider than the in-place inverse's 1024-row blocks (narrower ones are one block: n x n temporaries)
    X = torch.randn(4096, n, generator=g, dtype=torch.float64)
    H = (X.T @ X).float()
    H[5, :] = H[:, 5] = 0  # a dead input
    W = torch.randn(8, n, generator=g)
    count = SquareCount(n)
    with count:
        got, mask = sparsegpt_prune(W, H, 0.5, blocksize=128)
    assert count.most <= 2, count.most

    # the reference's steps (SparseGPT's sparsegpt.py), written out
    Hr = H.double().clone()
    dead = torch.diagonal(Hr) == 0
    Hr[dead, dead] = 1
    Hr += 0.01 * torch.diagonal(Hr).mean() * torch.eye(n, dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hr)), upper=True)
    Wr = W.double().clone()
    Wr[:, dead] = 0
    want_mask = torch.zeros_like(Wr, dtype=torch.bool)
    for i1 in range(0, n, 128):
        i2 = i1 + 128
        W1, H1 = Wr[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        d = torch.diagonal(H1)
        tmp = W1**2 / d**2
        m1 = tmp <= torch.sort(tmp.flatten())[0][int(tmp.numel() * 0.5)]
        Q1, E1 = torch.zeros_like(W1), torch.zeros_like(W1)
        for i in range(i2 - i1):
            q = W1[:, i].clone()
            q[m1[:, i]] = 0
            Q1[:, i] = q
            err = (W1[:, i] - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ H1[i, i:].unsqueeze(0)
            E1[:, i] = err
        Wr[:, i1:i2] = Q1
        Wr[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
        want_mask[:, i1:i2] = m1
    assert torch.equal(mask, want_mask)
    assert torch.allclose(got, Wr, rtol=1e-9, atol=1e-9)
