import numpy as np
import pytest
import torch
from conftest import random_windows, tiny_model
from torch import nn

from fangprune.config import ConfigError, validate_config
from fangprune.methods.baselines import MagnitudeSPPruner, WandaSPPruner
from fangprune.methods.flap import Moments, bias_compensate, channel_metric
from fangprune.methods.registry import resolve_method
from fangprune.modeling.models import roles
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")
# 3 tokens x 2 channels, W is 2 x 2
X = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
W = torch.tensor([[1.0, -2.0], [3.0, 0.0]])


def moments():
    m = Moments()
    m.add(X)
    m.windows = 1
    return m


def test_metrics_hand_computed():
    m = moments()
    # channel 0: values 1,3,5 -> mean 3, unbiased variance 4; channel 1 constant -> 0
    assert torch.allclose(channel_metric("IFV", W, m), torch.tensor([4.0, 0.0], dtype=torch.float64))
    # ||W[:,0]||^2 = 10, ||W[:,1]||^2 = 4
    assert torch.allclose(channel_metric("WIFV", W, m), torch.tensor([40.0, 0.0], dtype=torch.float64))
    # mean|W| = [2, 1]; sqrt(sum x^2 / windows) = [sqrt(35), sqrt(12)]
    expect = torch.tensor([2 * 35**0.5, 1 * 12**0.5], dtype=torch.float64)
    assert torch.allclose(channel_metric("WIFN", W, m), expect)
    assert torch.allclose(m.mean, torch.tensor([3.0, 2.0], dtype=torch.float64))


def test_baseline_scores_hand_computed():
    wanda = WandaSPPruner({}, 0)
    wanda.observe("down", X)
    assert torch.allclose(wanda.score("down", W), torch.tensor([2 * 35**0.5, 12**0.5], dtype=torch.float64))
    mag = MagnitudeSPPruner({}, 0)
    assert torch.allclose(mag.score("down", W), torch.tensor([10**0.5, 2.0], dtype=torch.float64))


def test_bias_compensation_exact_for_constant_channels():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    x[:, [1, 4]] = torch.tensor([0.7, -1.3])  # pruned channels are constant
    lin = nn.Linear(6, 3, bias=False)
    dense = lin(x).detach()
    m = Moments()
    m.add(x)
    kept = torch.tensor([0, 2, 3, 5])
    bias_compensate(lin, kept, m.mean)
    pruned_out = x[:, kept] @ lin.weight.data[:, kept].T + lin.bias.data
    assert torch.allclose(pruned_out, dense, atol=1e-6)


def test_bias_compensation_lowers_error():
    torch.manual_seed(1)
    x = torch.randn(200, 8) + torch.linspace(-2, 2, 8)  # channels with non-zero means
    lin = nn.Linear(8, 4, bias=False)
    dense = lin(x).detach()
    kept = torch.tensor([0, 1, 2, 5])
    no_bias = x[:, kept] @ lin.weight.data[:, kept].T
    m = Moments()
    m.add(x)
    bias_compensate(lin, kept, m.mean)
    with_bias = no_bias + lin.bias.data
    assert ((with_bias - dense) ** 2).mean() < ((no_bias - dense) ** 2).mean()


def test_weighted_variance_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    w = rng.random((40, 3))
    m = Moments()
    m.add(torch.from_numpy(x), torch.from_numpy(w))
    mean = (w * x).sum(0) / w.sum(0)
    var = (w * (x - mean) ** 2).sum(0) / w.sum(0) * w.sum(0) / (w.sum(0) - 1)
    assert np.allclose(m.variance.numpy(), var)


def _prune(structure, sp=0.3, **extra):
    model = tiny_model(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, seed=3)
    # make layers differ in scale so adaptive structures have something to adapt to
    for i, layer in enumerate(model.model.layers):
        layer.mlp.down_proj.weight.data *= 0.5 + i
    method = resolve_method("flap", {"structure": structure, **extra})
    report = prune_model(model, random_windows(4, 32), method, [sp] * 4, CPU)
    return model, report


def test_structures_differ():
    _, ulum = _prune("UL-UM")
    sizes = {(l["num_kv_heads"], l["intermediate_size"]) for l in ulum["layers"]}
    assert len(sizes) == 1  # uniform: every layer loses the same
    _, alam = _prune("AL-AM")
    assert len({l["intermediate_size"] for l in alam["layers"]}) > 1 or len({l["num_kv_heads"] for l in alam["layers"]}) > 1
    for rep in (ulum, alam):
        assert abs(rep["block_params_kept_frac"] - 0.7) < 0.03


@pytest.mark.parametrize("structure", ["UL-MM", "AL-MM"])
def test_manual_head_structures(structure):
    model, report = _prune(structure, remove_heads=4)
    assert sum(4 - l["num_kv_heads"] for l in report["layers"]) == 4
    assert abs(report["block_params_kept_frac"] - 0.7) < 0.03


def test_flap_checkpoint_keeps_biases(tmp_path):
    from fangprune.modeling.checkpoint import load_pruned, save_pruned

    model, report = _prune("AL-AM")
    for layer, entry in zip(model.model.layers, report["layers"]):
        r = roles(layer)
        assert (r.o.bias is not None) == (entry["num_kv_heads"] < 4)  # biases exactly where units were removed
        assert (r.down.bias is not None) == (entry["intermediate_size"] < 128)
    assert any(roles(l).o.bias is not None for l in model.model.layers)
    ids = random_windows(1, 16, seed=4)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_pruned(model, None, tmp_path / "c", {})
    with torch.no_grad():
        assert torch.equal(load_pruned(tmp_path / "c")(input_ids=ids).logits, before)


def test_unknown_metric_or_structure_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for bad in ({"metric": "XYZ"}, {"structure": "AL-XX"}, {"structure": "AL-MM"}):
        cfg = {"models": {"m": {"source": str(tmp_path)}}, "sparsities": [0.2], "methods": {"flap": bad}}
        with pytest.raises(ConfigError, match="methods.flap"):
            validate_config(cfg)


@pytest.mark.parametrize("algo", ["wanda-sp", "mag-sp", "f-fang"])
def test_other_methods_hit_target(algo):
    from test_pruning import artifacts

    model = tiny_model(num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4)
    windows = random_windows(4, 32)
    clusters, groups, *_ = artifacts(model, windows) if algo == "f-fang" else (None, None)
    report = prune_model(model, windows, resolve_method(algo, {}), [0.4, 0.4], CPU, clusters=clusters, groups=groups)
    assert abs(report["block_params_kept_frac"] - 0.6) < 0.02
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=random_windows(1, 16)).logits).all()
    if algo == "f-fang":
        for entry, g in zip(report["layers"], groups["layers"]):
            assert set(g["shared"]) <= set(entry["kept_channels"])
