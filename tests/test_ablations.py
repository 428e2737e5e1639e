"""The paper's ablations as options (Tables 5, 6, 7, 9), the FLAP reference variance, and the diagnostics."""

import numpy as np
import pytest
import torch
from conftest import markdown_cells, random_windows, tiny_model
from test_pruning import artifacts

from fangprune.core.obs import dampened_inverse, prune_columns
from fangprune.evaluate.diagnostics import InputMoments, relative_error
from fangprune.fang.grouping import build_groups, check_partition
from fangprune.fang.reweighting import alpha_weights, effective_fraction
from fangprune.methods.flap import Moments
from fangprune.methods.registry import resolve_method
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")


def test_random_grouping_keeps_the_sizes_and_changes_the_partition():
    scores = np.random.default_rng(0).random((3, 32))
    lap = build_groups(scores, "lap")
    rnd = build_groups(scores, "random", rng=np.random.default_rng(1))
    assert [len(g) for g in rnd["groups"]] == [len(g) for g in lap["groups"]] and len(rnd["shared"]) == len(lap["shared"])
    check_partition(rnd["shared"], rnd["groups"], 32)
    assert not all(np.array_equal(a, b) for a, b in zip(rnd["groups"], lap["groups"]))
    again = build_groups(scores, "random", rng=np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(rnd["groups"], again["groups"]))  # seeded


@pytest.mark.parametrize("method", ["lap", "greedy", "random"])
def test_no_shared_group_puts_every_channel_in_a_functional_group(method):
    scores = np.random.default_rng(2).random((3, 32))
    g = build_groups(scores, method, shared=False, rng=np.random.default_rng(0))
    assert g["shared"].size == 0 and sorted(len(x) for x in g["groups"]) == [10, 11, 11]
    check_partition(g["shared"], g["groups"], 32)


def test_reweighting_modes():
    torch.manual_seed(0)
    x, ids = torch.randn(12, 4), torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 1, 2])
    uniform = alpha_weights(x, ids, 4, 9.0, "uniform")
    assert torch.equal(uniform, torch.full((4, 12), 1 / 12))
    matched = alpha_weights(x, ids, 4, 9.0, "only-matched")
    for k in range(3):
        assert torch.allclose(matched[k][ids == k], torch.full((int((ids == k).sum()),), 1 / int((ids == k).sum())))
        assert matched[k][ids != k].abs().sum() == 0  # all weight on the group's own context
    assert torch.allclose(matched[3], torch.full((12,), 1 / 12))  # absent context: uniform
    ours, reverse = alpha_weights(x, ids, 4, 2.0, "ours"), alpha_weights(x, ids, 4, 2.0, "reverse")
    for k in range(3):
        assert ours[k][ids == k].min() >= ours[k][ids != k].max() - 1e-7
        assert reverse[k][ids == k].max() <= reverse[k][ids != k].min() + 1e-7  # own context weighs least
    assert torch.allclose(effective_fraction(uniform), torch.ones(4))
    assert torch.allclose(effective_fraction(matched[:1]), torch.tensor([3 / 12]))  # 3 of 12 tokens carry it


def test_iterative_with_one_pruned_column_equals_one_shot():
    torch.manual_seed(0)
    X, W = torch.randn(100, 12), torch.randn(4, 12)
    Hinv = dampened_inverse(X.T @ X, 0.01)
    a, pa = prune_columns(W, Hinv, 1, variant="one-shot")
    b, pb = prune_columns(W, Hinv, 1, variant="iterative")
    assert torch.equal(pa, pb) and torch.allclose(a, b, atol=1e-12)


def _prune(algo, extra, model_seed=0, sp=0.3):
    model = tiny_model(seed=model_seed)
    windows = random_windows(4, 32)
    clusters, groups, scores, _ = artifacts(model, windows)
    if not extra.get("shared_group", True):  # the workflow builds this groups artifact for shared_group: false
        groups = {"layers": [{"shared": g["shared"].tolist(), "groups": [x.tolist() for x in g["groups"]]}
                             for g in (build_groups(s.numpy(), shared=False) for s in scores)]}
        assert all(not layer["shared"] for layer in groups["layers"])
    prune_model(model, windows, resolve_method(algo, extra), [sp] * 3, CPU, clusters=clusters, groups=groups)
    return model


def test_function_aware_off_without_shared_group_equals_obc():
    # groups are irrelevant with FAP and SNGR off: the method is OBC over the whole layer
    fang = _prune("o-fang", {"function_aware": False, "shared_group": False, "allocation": "uniform"})
    obc = _prune("obc", {"allocation": "uniform"})
    for (na, a), (nb, b) in zip(fang.state_dict().items(), obc.state_dict().items()):
        assert na == nb and torch.equal(a, b), na


def test_layer_compensation_gives_no_higher_unweighted_error_than_group():
    torch.manual_seed(0)
    model = tiny_model()
    windows = random_windows(8, 32)
    clusters, groups, *_ = artifacts(model, windows)
    errors = {}
    for comp in ("group", "layer"):
        m = tiny_model()
        captured = {}
        layer = m.model.layers[0]
        h = layer.mlp.down_proj.register_forward_pre_hook(lambda mod, args: captured.setdefault("x", []).append(args[0]))
        dense_W = layer.mlp.down_proj.weight.data.clone()
        prune_model(m, windows, resolve_method("o-fang", {"compensation": comp, "allocation": "uniform"}), [0.3] * 3,
                    CPU, clusters=clusters, groups=groups)
        h.remove()
        moments = InputMoments()
        moments.add(torch.cat(captured["x"][:1]))  # the pruning pass's inputs of layer 0 (its Hessian)
        errors[comp] = relative_error(dense_W, None, m.model.layers[0].mlp.down_proj, moments)
    assert errors["layer"] <= errors["group"] + 1e-12 and errors["layer"] < errors["group"]


def test_flap_reference_variance_hand_computed():
    # one channel, two windows of two tokens: x1 = [1, 3], x2 = [2, 6]
    m = Moments()
    m.add(torch.tensor([[[1.0], [3.0]]]))
    m.add(torch.tensor([[[2.0], [6.0]]]))
    # reference: window 1 sets mean 2 and fluc 0; window 2: mean = 2 * 1/2 + 4/2 = 3,
    # fluc = 0 + ((2 - 3)^2 + (6 - 3)^2) / 2 = 5; the unbiased variance of [1, 3, 2, 6] is 14 / 3
    assert float(m.fluctuation("reference")) == pytest.approx(5.0)
    assert float(m.fluctuation("unbiased")) == pytest.approx(14 / 3)
    assert float(m.baseline("reference")) == pytest.approx(3.0) and float(m.baseline("unbiased")) == pytest.approx(3.0)


def test_relative_error_hand_computed():
    W = torch.tensor([[1.0, 2.0]])
    pruned = torch.nn.Linear(2, 1, bias=False)
    pruned.weight.data = torch.tensor([[1.0, 0.0]])  # column 1 removed, no compensation
    m = InputMoments()
    m.add(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
    # dense outputs 3 and 4 (sum of squares 25); errors 2 and 4 (sum of squares 20)
    assert relative_error(W, None, pruned, m) == pytest.approx(20 / 25)
    pruned.bias = torch.nn.Parameter(torch.tensor([3.0]))  # bias compensation: outputs 4 and 3 -> errors 1, 1
    assert relative_error(W, None, pruned, m) == pytest.approx(2 / 25)


def test_holdout_diagnostics_in_the_report():
    model = tiny_model()
    windows, holdout = random_windows(4, 32), random_windows(2, 32, seed=3)
    report = prune_model(model, windows, resolve_method("obc", {}), [0.3] * 3, CPU, holdout=holdout)
    for e in report["layers"]:
        assert set(e["reconstruction_error"]) == {"o_proj", "down_proj"} and 0 < e["reconstruction_error"]["down_proj"] < 1


def test_global_group_quota_removes_the_lowest_saliencies_across_groups():
    from fangprune.core.obs import HessianAccumulator
    from fangprune.methods.fang import OFangPruner

    torch.manual_seed(0)
    groups = {"layers": [{"shared": [6, 7], "groups": [[0, 1, 2], [3, 4, 5]]}]}
    params = resolve_method("o-fang", {"group_quota": "global"})
    pruner = OFangPruner(params, 0, clusters=None, groups=groups)
    X = torch.randn(50, 8)
    for g, idx in enumerate(pruner.groups):
        acc = HessianAccumulator()
        acc.add(X[:, idx])
        pruner.H[g] = acc.H
    W = torch.ones(4, 8)
    W[:, 3:6] *= 0.01  # group 1's channels matter far less: all removals but its best channel go there
    assert pruner._global_quota(W, 3) == [1, 2]
    assert pruner._global_quota(W, 2) == [0, 2]


def test_diagnostics_report_summarises_each_checkpoint_over_its_layers():
    from fangprune.report.diagnostics import COLUMNS, diagnostics_frame, summary_markdown

    def layer(i, o, d, ess=None):
        e = {"layer": i, "target_sparsity": 0.4, "achieved_sparsity": 0.4, "reconstruction_error": {
            "o_proj": o, "down_proj": d}}
        if ess is not None:
            e["groups"] = [{"kept": 3, "in_group_ratio": 0.5, "effective_sample_fraction": f, "context_tokens": 10}
                           for f in ess]
        return e

    manifests = [
        {"model": "m", "method": "obc", "sparsity": 0.4, "report": {"layers": [layer(0, 0.1, 0.2), layer(1, 0.3, 0.6)]}},
        {"model": "m", "method": "o-fang", "sparsity": 0.4,
         "report": {"layers": [layer(0, 0.2, 0.1, [0.5, 0.7]), layer(1, 0.4, 0.5, [1.0])]}},
    ]
    frame = diagnostics_frame(manifests)
    assert list(frame.columns) == COLUMNS and len(frame) == 4
    assert frame["ess_mean"].tolist()[2:] == pytest.approx([0.6, 1.0]) and frame["ess_min"].iloc[2] == 0.5
    assert frame["group_kept"].iloc[2] == "3/3" and frame["ess_mean"].iloc[:2].isna().all()
    rows = [r for r in markdown_cells(summary_markdown(frame, "2 windows")) if isinstance(r, list)]
    # per checkpoint: o_proj mean / max, down_proj mean / max over the two layers, mean ESS over layers
    assert ["o-fang", "40%", "0.3000", "0.4000", "0.3000", "0.5000", "0.800"] in rows
    assert ["obc", "40%", "0.2000", "0.3000", "0.4000", "0.6000", "-"] in rows
