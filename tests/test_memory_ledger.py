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
