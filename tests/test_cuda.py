"""The same pipeline on CUDA as on the CPU (skipped without a GPU; run on a GPU machine)."""

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
