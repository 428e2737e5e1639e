import numpy as np
import pytest
import torch

from fangprune.fang.allocation import allocate, fc_allocation, uniform_allocation


def test_eq8_hand_computed():
    # FC = [0, 1, 2] -> FC^ = [0, 0.1, 0.2] (lambda = 0.1), mean 0.1 -> sp = p - [-0.1, 0, 0.1]
    sp = fc_allocation(np.array([0.0, 1.0, 2.0]), 0.4, 0.1)
    assert np.allclose(sp, [0.5, 0.4, 0.3])


@pytest.mark.parametrize("p", [0.2, 0.3, 0.4, 0.5])
@pytest.mark.parametrize("seed", range(5))
def test_mean_is_target_and_band_respected(p, seed):
    rng = np.random.default_rng(seed)
    fc = rng.gamma(0.5, size=30)  # skewed, so Eq. 8 alone leaves the band
    lam = 0.5 * p
    sp = fc_allocation(fc, p, lam, bound=True)
    assert abs(sp.mean() - p) < 1e-6
    assert sp.min() >= p - lam - 1e-9 and sp.max() <= p + lam + 1e-9
    # the more a block changes the hidden state, the less it is pruned
    assert np.all(np.diff(sp[np.argsort(fc)]) <= 1e-12)


def test_unbounded_is_reference_eq8():
    fc = np.array([0.0, 0.0, 0.0, 1.0])
    sp = fc_allocation(fc, 0.4, 0.2, bound=False)
    assert np.allclose(sp, [0.5, 0.5, 0.5, 0.1])  # FC^ = [0,0,0,0.4], mean 0.1
    assert abs(sp.mean() - 0.4) < 1e-12


def test_bounded_equals_eq8_inside_band():
    fc = np.linspace(0, 1, 11)
    assert np.allclose(fc_allocation(fc, 0.3, 0.15, True), fc_allocation(fc, 0.3, 0.15, False))


def test_uniform_and_rejection():
    assert np.all(uniform_allocation(0.3, 4) == 0.3)
    method = {"allocation": "fc", "fc_lambda": 0.5, "fc_bound": True}
    with pytest.raises(ValueError, match="past 100%"):
        allocate(method, 0.6, np.array([0.0, 1.0, 2.0]), k=7)  # 0.9 > 7/8
    sp = allocate(method, 0.4, np.array([0.0, 1.0, 2.0]), k=7)
    assert abs(sp.mean() - 0.4) < 1e-9


@pytest.mark.parametrize("method", ["obc", "wanda-sp"])
def test_width_multiple_keeps_mlp_widths_on_multiples_near_the_target(method):
    from conftest import random_windows, tiny_model

    from fangprune.methods import resolve_method
    from fangprune.modeling.models import decoder_layers, roles
    from fangprune.prune.driver import prune_model

    sparsities = [0.15, 0.37, 0.61]
    widths = {}
    for multiple in (1, 32):
        model = tiny_model("llama", intermediate_size=256)
        params = resolve_method(method, {"width_multiple": multiple})
        prune_model(model, random_windows(2, 16), params, sparsities, torch.device("cpu"))
        widths[multiple] = [roles(layer).intermediate_size for layer in decoder_layers(model)]
    assert all(w % 32 == 0 for w in widths[32]) and any(w % 32 for w in widths[1])
    # each layer within half a multiple of its unrounded width: the total within one multiple per layer
    assert all(abs(a - b) <= 16 for a, b in zip(widths[32], widths[1]))
    assert abs(sum(widths[32]) - sum(widths[1])) <= 32 * len(sparsities)


def test_width_multiple_rounding_by_hand():
    from fangprune.core.selection import round_to_width_multiple

    assert round_to_width_multiple(1536, 614, 64, 1535) == 1536 - 896  # kept 922 -> 896 (nearest multiple)
    assert round_to_width_multiple(1536, 600, 64, 1535) == 1536 - 960  # kept 936 -> 960
    assert round_to_width_multiple(1536, 1530, 64, 1535) == 1536 - 64  # at least one multiple kept
    assert round_to_width_multiple(1536, 10, 64, 1535) == 0  # kept 1526 -> 1536, the whole layer
    assert round_to_width_multiple(100, 10, 32, 100) == 100 - 96  # never above the largest multiple <= width
    assert round_to_width_multiple(1536, 614, 1, 1535) == 614
