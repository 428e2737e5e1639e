"""Every registered method and option through the driver with a second device in play (``device_harness``): no
operation may mix host and device tensors, nothing is left on the device afterwards, and the pruned model is
bit-identical to a CPU-only run. The other GPU rules' code (clusters, Taylor scores and sensitivity, perplexity,
a recovery step) is run the same way."""

import copy

import pytest
import torch
from conftest import random_windows, tiny_model
from device_harness import DeviceMixError, VirtualDevice

from fangprune.methods.registry import get_method, methods, resolve_method
from fangprune.prune.driver import prune_model

CPU, DEV = torch.device("cpu"), VirtualDevice.DEVICE

# every method at its defaults, plus the options that take another code path
VARIANTS = [(name, {}) for name in sorted(methods())] + [
    ("obc", {"obc_variant": "iterative"}),
    ("obc", {"head_unit": "query_head"}),
    ("obc", {"obc_variant": "iterative", "head_unit": "query_head"}),
    ("obc", {"allocation": "fc"}),
    ("obc", {"module_balance": "per_module", "width_multiple": 8}),
    ("o-fang", {"obc_variant": "iterative"}),
    ("o-fang", {"shared_group": False}),
    ("o-fang", {"function_aware": False}),
    ("o-fang", {"reweighting": "reverse"}),
    ("o-fang", {"reweighting": "uniform"}),
    ("o-fang", {"reweighting": "only-matched"}),
    ("o-fang", {"compensation": "layer"}),
    ("o-fang", {"group_quota": "global"}),
    ("o-fang", {"head_unit": "query_head", "width_multiple": 8}),
    ("flap", {"metric": "IFV"}),
    ("flap", {"metric": "WIFN"}),
    ("flap", {"structure": "UL-UM"}),
    ("flap", {"structure": "UL-MM", "remove_heads": 2}),
    ("flap", {"structure": "AL-MM", "remove_heads": 2}),
    ("flap", {"flap_variance": "reference", "bias_compensation": False}),
    ("f-fang", {"metric": "IFV"}),
    ("f-fang", {"metric": "WIFN", "shared_group": False}),
    ("wanda-sp", {"allocation": "fc"}),
    ("mag-sp", {"head_unit": "query_head"}),
    ("magnitude", {"sparsity_type": "2:4"}),
    ("wanda", {"reconstruction": True}),
    ("wanda", {"sparsity_type": "2:4", "numerics": "reference"}),
    ("wanda", {"low_rank": {"rank_ratio": 0.5}}),
    ("sparsegpt", {"sparsity_type": "2:4"}),
    ("sparsegpt", {"mask_scope": "row"}),
    ("ria", {"sparsity_type": "2:4", "lsa": True}),
    ("ria", {"sparsity_type": "2:4", "reallocation": True, "importance_score": "retained_degree_unstructured"}),
    ("ria", {"sparsity_type": "2:4", "lsa": True, "permutation_scope": "all"}),
    ("clearcut", {"reconstruction": True}),
]


@pytest.fixture(scope="module")
def setup():
    from test_pruning import artifacts

    model = tiny_model(num_attention_heads=8, num_key_value_heads=4)
    windows = random_windows(4, 32)
    clusters, groups, _, _ = artifacts(model, windows)
    return model, windows, random_windows(2, 32, seed=3), clusters, groups


def _prune(setup, name, options, device):
    model, windows, holdout, clusters, groups = setup
    m = copy.deepcopy(model)
    params = resolve_method(name, options)
    grouped = get_method(params["algorithm"]).uses_groups
    report = prune_model(m, windows, params, [0.4] * 3, device, clusters=clusters if grouped else None,
                         groups=groups if grouped else None, holdout=holdout)
    return m, report


def test_the_harness_catches_what_cuda_refuses():
    with VirtualDevice() as vd:
        host = torch.ones(4, 3)
        dev = host.to(DEV)
        assert dev.device == DEV and host.device == CPU and vd.on_device(dev) and not vd.on_device(host)
        for mixed in (lambda: host + dev, lambda: torch.cat([host, dev]), lambda: host[torch.tensor([0]).to(DEV)],
                      lambda: dev.numpy(), lambda: torch.nn.Linear(3, 2).to(DEV)(host)):
            with pytest.raises(DeviceMixError):
                mixed()
        # what CUDA allows: scalars, copies across devices, host indices, factories on the device, moves back
        assert (dev * torch.tensor(2.0)).device == DEV and (dev.sum() + host.sum()).device == DEV
        host.copy_(dev)
        host[:2] = dev[:2]
        assert dev[torch.tensor([0, 2])].device == DEV
        assert torch.zeros(3, device=dev.device).device == DEV and (dev.cpu() + host).device == CPU
        layer = torch.nn.Linear(3, 2).to(DEV)
        x = dev.clone().requires_grad_()
        layer(x).sum().backward()
        assert layer.weight.grad.device == DEV and x.grad.device == DEV
        assert layer.to(CPU)(host).device == CPU


def test_the_harness_catches_the_flap_defect(setup, monkeypatch):
    """The defect found by reading the code: FLAP's statistics gathered on the device, its selection run after the
    engine moved the layer back to the host. The old product, put back, fails the driver run here."""
    from fangprune.methods import flap

    def old_channel_metric(metric, W, stats, variance=None):
        return (stats.variance if variance is None else variance) * (W.double() ** 2).sum(0)

    monkeypatch.setattr(flap, "channel_metric", old_channel_metric)
    _prune(setup, "flap", {}, CPU)  # fine on one device
    with VirtualDevice(), pytest.raises(DeviceMixError, match="mul"):
        _prune(setup, "flap", {}, DEV)


@pytest.mark.parametrize("name, options", VARIANTS, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                                                         for n, o in VARIANTS])
def test_every_method_keeps_its_devices_apart(setup, name, options):
    want, want_report = _prune(setup, name, options, CPU)
    with VirtualDevice() as vd:
        got, report = _prune(setup, name, options, DEV)
        assert vd.moves > 0
        left = [n for n, t in [*got.named_parameters(), *got.named_buffers()] if vd.on_device(t)]
    assert not left, f"left on the device: {left[:4]}"
    assert report["block_params_kept_frac"] == want_report["block_params_kept_frac"]
    for (n, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items()):
        assert torch.equal(a, b), n
    errors = [e.get("reconstruction_error") for e in report["layers"]]
    assert all(errors) and errors == [e.get("reconstruction_error") for e in want_report["layers"]]


def test_the_other_gpu_rules_keep_their_devices_apart(setup):
    from fangprune.core.engine import LayerwiseEngine
    from fangprune.evaluate.perplexity import perplexity
    from fangprune.fang.clustering import fit_context_clusters
    from fangprune.fang.layer_importance import taylor_sensitivity
    from fangprune.fang.scores import taylor_scores

    model, windows, _, clusters, _ = setup

    def run(device):
        m = copy.deepcopy(model)
        fitted, _ = fit_context_clusters(LayerwiseEngine(m, windows, device), k=3, pca_dims=8, seed=0, n_init=2)
        full = taylor_scores(m, windows, clusters, device)
        recomputed = taylor_scores(m, windows, clusters, device, loss="last_token", recompute=True)
        sensitivity = taylor_sensitivity(m, windows, device)
        ppl = perplexity(m, windows.flatten(), 16, device)["ppl"]
        return fitted, full, recomputed, sensitivity, ppl

    want = run(CPU)
    with VirtualDevice() as vd:
        got = run(DEV)
        assert vd.moves > 0
    for a, b in zip([*got[0].state_dict().values(), *got[1], *got[2]],
                    [*want[0].state_dict().values(), *want[1], *want[2]]):
        assert torch.equal(a, b)
    assert got[3] == want[3] and got[4] == want[4]


def test_a_recovery_run_keeps_its_devices_apart():
    """Distillation with the hidden-state term: masks, AdamW state and the held-out curve on the device."""
    from fangprune.recovery.distill import TrainSpec, distill
    from fangprune.recovery.losses import LossWeights

    teacher = tiny_model()
    pruned = copy.deepcopy(teacher)
    with torch.no_grad():
        pruned.model.layers[0].mlp.down_proj.weight[:, ::2] = 0
    spec = TrainSpec(tokens=4 * 16 * 3, batch_size=4, seqlen=16, lr=1e-3, warmup_frac=0.0,
                     loss=LossWeights(ce=0.5, hidden=0.5, temperature=2.0))
    train, held = random_windows(8, 16, seed=1), random_windows(2, 16, seed=2)

    def run(device):
        student = copy.deepcopy(pruned)
        curve = distill(student, copy.deepcopy(teacher), train, held, spec, device)
        return {k: v.cpu() for k, v in student.state_dict().items()}, curve

    want = run(CPU)
    with VirtualDevice() as vd:
        got = run(DEV)
        assert vd.moves > 0
    assert got[1] == want[1]
    for name, w in want[0].items():
        assert torch.equal(got[0][name], w), name


def _shape_and_tokens(model, windows, sparsegpt=False):
    from fangprune.resources import Shape, Tokens

    c = model.config
    shape = Shape(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                  c.num_key_value_heads, c.head_dim, c.vocab_size, bool(c.tie_word_embeddings))
    n, seqlen = windows.shape
    return shape, Tokens(calib=n * seqlen, calib_seqlen=seqlen, calib_batch=1, eval_seqlen=seqlen, eval_batch=1,
                         eval_tokens=n * seqlen, zeroshot_batch=1, zeroshot_tokens=0, sparsegpt=sparsegpt,
                         holdout=True)


@pytest.mark.parametrize("name", ["obc", "o-fang", "sparsegpt", "wanda", "flap"])
def test_the_prune_prediction_counts_what_a_gpu_holds(setup, name):
    """The device storage alive at once during a prune (one layer, its statistics and OBS state) stays within
    ``resources.gpu_mib("prune")``, the figure validation checks against resources.gpu_memory_mb."""
    from fangprune.resources import MiB, Terms, gpu_mib

    model, windows = setup[0], setup[1]
    with VirtualDevice() as vd:
        _prune(setup, name, {}, DEV)
        peak = vd.peak_bytes
    shape, tokens = _shape_and_tokens(model, windows, sparsegpt=name == "sparsegpt")
    predicted = gpu_mib("prune", Terms.of(shape, tokens)) * MiB
    assert 0 < peak <= predicted, (peak, predicted)


@pytest.mark.parametrize("recompute", [False, True])
def test_the_scores_prediction_counts_what_a_gpu_holds(setup, recompute):
    """Taylor scores: the model, every layer's down_proj input kept for its gradient hook, the backward's
    activations; with recomputation too (it keeps those inputs until the backward)."""
    from fangprune.fang.scores import taylor_scores
    from fangprune.resources import MiB, Terms, gpu_mib

    model, windows, _, clusters, _ = setup
    with VirtualDevice() as vd:
        taylor_scores(copy.deepcopy(model), windows, clusters, DEV, recompute=recompute)
        peak = vd.peak_bytes
    shape, tokens = _shape_and_tokens(model, windows)
    predicted = gpu_mib("scores", Terms.of(shape, tokens)) * MiB
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert weights < peak <= predicted, (peak, predicted)
