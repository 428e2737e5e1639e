"""The same pipeline on CUDA as on the CPU (skipped without a GPU; run on a GPU machine in one go:
``python -m pytest -q tests/test_cuda.py``, a few minutes)."""

import pytest
import torch
from conftest import random_windows, tiny_model

from fangprune.core.engine import LayerwiseEngine
from fangprune.evaluate.perplexity import perplexity
from fangprune.fang.clustering import fit_context_clusters
from fangprune.fang.grouping import build_groups
from fangprune.fang.scores import taylor_scores
from fangprune.methods.registry import resolve_method
from fangprune.prune.driver import prune_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run(device, algo):
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_model(num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4)
    windows = random_windows(8, 64)
    clusters = groups = None
    if algo == "o-fang":
        clusters, _ = fit_context_clusters(LayerwiseEngine(model, windows, device), k=3, pca_dims=8, seed=0, n_init=2)
        scores, _ = taylor_scores(model, windows, clusters, device)
        model.to("cpu")
        groups = {"layers": []}
        for s in scores:
            g = build_groups(s.numpy())
            groups["layers"].append({"shared": g["shared"].tolist(), "groups": [x.tolist() for x in g["groups"]]})
    report = prune_model(model, windows, resolve_method(algo, {}), [0.4, 0.4], device, batch_size=4, clusters=clusters, groups=groups)
    ppl = perplexity(model, random_windows(4, 64, seed=9).reshape(-1), 64, device)["ppl"]
    return report, ppl


@pytest.mark.parametrize("algo", ["obc", "o-fang"])
def test_cuda_matches_cpu(algo):
    cpu_report, cpu_ppl = run(torch.device("cpu"), algo)
    gpu_report, gpu_ppl = run(torch.device("cuda"), algo)
    assert gpu_report["block_params"] == cpu_report["block_params"]
    same = sum(
        a.get("kept_channels") == b.get("kept_channels") for a, b in zip(cpu_report["layers"], gpu_report["layers"])
    )
    assert same >= 1  # selection may flip on near-ties, but not everywhere
    assert gpu_ppl == pytest.approx(cpu_ppl, rel=0.05)
    print(f"{algo}: cpu ppl {cpu_ppl:.3f} gpu ppl {gpu_ppl:.3f}, peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_taylor_scores_over_a_device_map_match_one_device(tmp_path):
    from accelerate import dispatch_model

    from fangprune.modeling.models import is_dispatched

    model = tiny_model(num_hidden_layers=4)
    windows = random_windows(3, 32)
    clusters, _ = fit_context_clusters(LayerwiseEngine(model, windows, torch.device("cuda")), k=3, pca_dims=8, seed=0, n_init=2)
    one, _ = taylor_scores(model, windows, clusters, torch.device("cuda:0"))
    model.to("cpu")
    split = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0, "model.layers.1": 0,
             "model.layers.2": 1, "model.layers.3": 1, "model.norm": 1, "lm_head": 1}
    model = dispatch_model(model, device_map=split)
    assert is_dispatched(model)
    two, _ = taylor_scores(model, windows, clusters, torch.device("cuda:0"))
    assert torch.allclose(one, two, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("name", sorted(__import__("fangprune.methods.registry", fromlist=["m"]).methods()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_method_on_cuda_matches_its_cpu_run(name, dtype):
    """Every registered method through the driver on CUDA (statistics on the GPU, the layer moved back to the
    host between layers): the same kept sizes as on the CPU, finite logits, perplexity within 10 %."""
    import copy

    from fangprune.methods.registry import get_method
    from test_pruning import artifacts

    base = tiny_model()
    windows = random_windows(4, 32)
    params = resolve_method(name, {})
    grouped = get_method(params["algorithm"]).uses_groups
    clusters, groups, *_ = artifacts(base, windows) if grouped else (None, None)
    results = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(base).to(dtype)
        report = prune_model(model, windows, params, [0.4] * 3, torch.device(device), clusters=clusters,
                             groups=groups, holdout=random_windows(2, 32, seed=3))
        results[device] = (report, perplexity(model.float(), random_windows(4, 64, seed=9).reshape(-1), 64,
                                              torch.device(device))["ppl"])
    (cpu, cpu_ppl), (gpu, gpu_ppl) = results["cpu"], results["cuda"]
    assert gpu["block_params"] == pytest.approx(cpu["block_params"], rel=0.02)
    assert gpu_ppl == pytest.approx(cpu_ppl, rel=0.10)


def test_recovery_on_cuda_in_bf16_autocast_keeps_fp32_weights_and_lowers_the_loss():
    import copy

    from fangprune.recovery.distill import TrainSpec, distill
    from fangprune.recovery.losses import kl_div

    teacher = tiny_model()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.model.layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    held = random_windows(4, 16, seed=2).cuda()
    spec = TrainSpec(tokens=4 * 8 * 16, batch_size=8, seqlen=16, lr=1e-3, warmup_frac=0.0)
    with torch.no_grad():
        before = float(kl_div(student.cuda()(held).logits, teacher.cuda()(held).logits))
    distill(student, teacher, random_windows(8, 16, seed=1), held.cpu(), spec, torch.device("cuda"))
    assert all(p.dtype == torch.float32 for p in student.parameters())
    with torch.no_grad():
        assert float(kl_div(student(held).logits, teacher(held).logits)) < before


def test_2_4_conversion_in_bf16_computes_what_dense_does():
    from fangprune.evaluate.semi_sparse import accelerate_2of4

    model = tiny_model(hidden_size=128, intermediate_size=256, head_dim=32).to(torch.bfloat16)
    prune_model(model, random_windows(4, 64), resolve_method("wanda", {"sparsity_type": "2:4"}), [0.5] * 3,
                torch.device("cuda"))
    model.cuda()
    ids = random_windows(2, 32, seed=4).cuda()
    with torch.no_grad():
        want = model(ids).logits.float()
        info = accelerate_2of4(model)
        got = model(ids).logits.float()
    assert info["converted"] or info["dense"]
    assert torch.allclose(got, want, rtol=5e-2, atol=5e-2 * float(want.abs().max()))
