"""The unstructured and N:M family: masks, hand-computed scores, SparseGPT vs magnitude, LSA, plain checkpoints."""

import json

import pytest
import torch
from conftest import random_windows, tiny_model

from fangprune.core.obs import sparsegpt_prune
from fangprune.core.selection import (
    kept_score,
    lsa_permutation,
    nm_mask,
    prune_mask,
    reallocation_permutation,
    row_mask,
    slot_gain,
)
from fangprune.methods.registry import resolve_method
from fangprune.methods.unstructured import (
    WandaPruner,
    clearcut_score,
    ria_score,
    wanda_score,
)
from fangprune.modeling.checkpoint import SPARSITY_KEY, save_pruned
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")
W23 = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
XNORM = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)


def test_scores_on_a_2x3_example_by_hand():
    assert torch.allclose(wanda_score(W23, XNORM), torch.tensor([[1.0, 8.0, 27.0], [4.0, 20.0, 54.0]], dtype=torch.float64))
    # row sums 6, 15; column sums 5, 7, 9; ||X||^0.5 = 1, 2, 3
    ria = torch.tensor([[1 / 5 + 1 / 6, (2 / 7 + 2 / 6) * 2, (3 / 9 + 3 / 6) * 3],
                        [4 / 5 + 4 / 15, (5 / 7 + 5 / 15) * 2, (6 / 9 + 6 / 15) * 3]], dtype=torch.float64)
    assert torch.allclose(ria_score(W23, XNORM), ria)
    inter = torch.tensor([[1 / 30, 4 / 42 * 2, 9 / 54 * 3], [16 / 75, 25 / 105 * 2, 36 / 135 * 3]], dtype=torch.float64)
    assert torch.allclose(clearcut_score(W23, XNORM), ria + 0.1 * inter)


def test_nm_masks_have_exactly_n_zeros_in_every_group_and_row_masks_hit_the_ratio():
    scores = torch.rand(8, 16, generator=torch.Generator().manual_seed(0))
    for n, m in ((1, 4), (2, 4), (3, 4), (4, 8)):
        mask = nm_mask(scores, n, m)
        assert (mask.reshape(8, 16 // m, m).sum(-1) == n).all()
    assert (row_mask(scores, 0.5).sum(1) == 8).all() and (prune_mask(scores, "unstructured", 0.25).sum(1) == 4).all()


def test_nm_selection_by_topk_or_stable_sort():
    scores = torch.rand(8, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nm_mask(scores, 2, 4, select="topk"), nm_mask(scores, 2, 4))  # distinct scores: same mask
    tied = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert nm_mask(tied, 2, 4).tolist() == [[True, True, False, False]]  # stable sort: ties to the lower columns
    assert int(nm_mask(tied, 2, 4, select="topk").sum()) == 2


def test_reference_numerics_keep_the_fp32_running_mean_per_window():
    ref = WandaPruner(resolve_method("wanda", {"numerics": "reference"}), 0)
    exact = WandaPruner(resolve_method("wanda", {}), 0)
    for x in (torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[3.0, 0.0]]])):
        ref.observe("attn_in", x)
        exact.observe("attn_in", x)
    # ||x_j||^2 per window: [1, 4] then [9, 0]; running mean over 2 windows [5, 2], exact sums [10, 4]
    assert ref.sq["attn_in"].dtype == torch.float32 and ref.sq["attn_in"].tolist() == [5.0, 2.0]
    assert exact.sq["attn_in"].dtype == torch.float64 and exact.sq["attn_in"].tolist() == [10.0, 4.0]
    W = torch.tensor([[1.0, 1.0]])
    assert ref.score("q", W).dtype == torch.float32 and exact.score("q", W).dtype == torch.float64


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_reference_and_exact_numerics_agree_away_from_fp32_ties(pattern):
    masks = []
    for numerics in ("exact", "reference"):
        model = tiny_model()
        params = resolve_method("wanda", {"sparsity_type": pattern, "numerics": numerics})
        prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
        layers = model.model.layers
        masks.append([lin.weight == 0 for lin in (layers[0].self_attn.q_proj, layers[2].mlp.down_proj)])
    assert all(torch.equal(a, b) for a, b in zip(*masks))


@pytest.mark.parametrize("algo", ["magnitude", "wanda", "sparsegpt", "ria", "clearcut"])
@pytest.mark.parametrize("pattern", ["unstructured", "2:4", "4:8"])
def test_every_method_and_pattern_on_a_tiny_model(algo, pattern):
    model = tiny_model()
    params = resolve_method(algo, {"sparsity_type": pattern})
    report = prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
    for layer in model.model.layers:
        for lin in (layer.self_attn.q_proj, layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.down_proj):
            zero = lin.weight == 0
            if pattern != "unstructured":
                n, m = map(int, pattern.split(":"))
                assert (zero.reshape(lin.out_features, -1, m).sum(-1) == n).all()
            elif params["comparison"] == "row" and algo != "sparsegpt":
                assert (zero.sum(1) == lin.in_features // 2).all()  # the ratio in every row
            else:
                assert abs(float(zero.double().mean()) - 0.5) < 0.02
    assert all(abs(e["achieved_sparsity"] - 0.5) < 0.02 for e in report["layers"])


def test_sparsegpt_reconstructs_better_than_magnitude():
    torch.manual_seed(0)
    X = torch.randn(2048, 64) * torch.linspace(0.2, 3, 64)
    W = torch.randn(32, 64)
    H = X.T @ X
    err = lambda Wh: float(torch.einsum("ij,jk,ik->", (W - Wh).double(), H.double(), (W - Wh).double()))
    magnitude = W.masked_fill(prune_mask(W.abs(), "unstructured", 0.5, "layer"), 0)
    sgpt, mask = sparsegpt_prune(W, H, 0.5)
    assert abs(float(mask.double().mean()) - 0.5) < 0.02 and err(sgpt) < 0.7 * err(magnitude)
    # reconstruction after a fixed mask never hurts that mask
    fixed, _ = sparsegpt_prune(W, H, 0.5, mask=magnitude == 0)
    assert torch.equal(fixed == 0, magnitude == 0) and err(fixed) < err(magnitude)


@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (3, 4), (4, 8)])
def test_lsa_slot_gain_equals_the_kept_score_of_every_candidate_in_every_group(n, m):
    S = torch.rand(5, 6 * m, generator=torch.Generator().manual_seed(n + m), dtype=torch.float64)
    slots = torch.randperm(6 * m, generator=torch.Generator().manual_seed(1)).reshape(6, m)
    pos = 1
    gain = slot_gain(S, slots, pos, n)
    for c in range(6):
        for g in range(6):
            cols = slots[g].clone()
            cols[pos] = slots[c, pos]
            assert gain[c, g] == pytest.approx(kept_score(S[:, cols], n, m))


def test_lsa_never_lowers_the_kept_score():
    for seed in range(4):
        scores = torch.rand(16, 32, generator=torch.Generator().manual_seed(seed)) ** 3
        perm = lsa_permutation(scores, 2, 4)
        kept = lambda s: float((s * ~nm_mask(s, 2, 4)).sum())
        assert sorted(perm.tolist()) == list(range(32)) and kept(scores[:, perm]) >= kept(scores)


def test_reallocation_deals_one_column_of_every_band_to_each_group_as_a_snake():
    # column sums 0..7 (column j sums to j): bands {0,1}, {2,3}, {4,5}, {6,7} for 2:4 over 8 columns
    scores = torch.arange(8, dtype=torch.float64).repeat(3, 1) / 3
    perm = reallocation_permutation(scores, 2, 4)
    assert perm.tolist() == [0, 3, 4, 7, 1, 2, 5, 6]  # band p at position p; bands 1 and 3 reversed
    # retained degree: the kept score under an unstructured 2/4 mask of the matrix orders the columns
    s = torch.tensor([[5.0, 1.0, 0.0, 9.0], [0.0, 0.5, 8.0, 9.0]])
    # layer mask zeroes the four lowest (0, 0, 0.5, 1): kept per column 5, 0, 8, 18 -> order 1, 0, 2, 3
    assert reallocation_permutation(s, 2, 4, "retained_degree_unstructured").tolist() == [1, 0, 2, 3]
    # per row: row 0 keeps 5, 9; row 1 keeps 8, 9 -> kept 5, 0, 8, 18, the same order here
    assert reallocation_permutation(s, 2, 4, "retained_degree_per_outneuron").tolist() == [1, 0, 2, 3]


def test_lsa_from_the_reallocation_never_lowers_its_kept_score():
    for seed in range(4):
        scores = torch.rand(16, 32, generator=torch.Generator().manual_seed(seed)) ** 3
        start = reallocation_permutation(scores, 2, 4)
        perm = lsa_permutation(scores, 2, 4, start=start)
        assert sorted(perm.tolist()) == list(range(32))
        assert kept_score(scores, 2, 4, perm) >= kept_score(scores, 2, 4, start)


@pytest.mark.parametrize("scope", ["mlp", "all"])
def test_reallocation_on_a_tiny_model_by_scope(scope):
    model = tiny_model()
    params = resolve_method("ria", {"sparsity_type": "2:4", "reallocation": True, "lsa": True, "permutation_scope": scope})
    report = prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
    layer = model.model.layers[0]
    exact = lambda lin: bool(((lin.weight == 0).reshape(lin.out_features, -1, 4).sum(-1) == 2).all())
    assert all(abs(e["achieved_sparsity"] - 0.5) < 1e-6 for e in report["layers"])
    if scope == "mlp":  # down_proj's inputs physically reordered: every stored group exact
        assert report["layers"][0]["pattern"] == "2:4"
        assert exact(layer.mlp.down_proj) and exact(layer.self_attn.q_proj)
    else:  # every projection's groups in its own column order: 2 zeros of 4 per row, not in stored groups
        assert report["layers"][0]["pattern"] == "2:4 permuted"
        for lin in (layer.self_attn.q_proj, layer.mlp.down_proj):
            assert ((lin.weight == 0).sum(1) == lin.in_features // 2).all()
        assert not exact(layer.mlp.down_proj)
    with pytest.raises(ValueError, match="permutation_scope"):
        resolve_method("sparsegpt", {"sparsity_type": "2:4", "reallocation": True, "permutation_scope": "all"})
    with pytest.raises(ValueError, match="reallocation"):
        resolve_method("ria", {"reallocation": True})


def test_lsa_permutation_keeps_the_function_and_gives_exact_2_4_groups():
    from fangprune.methods.unstructured import WandaPruner
    from fangprune.modeling.models import roles

    model = tiny_model()
    ids = random_windows(2, 16, seed=5)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    params = resolve_method("wanda", {"sparsity_type": "2:4", "lsa": True})
    pruner = WandaPruner(params, 0)
    r = roles(model.model.layers[0])
    pruner.sq = {"down": torch.rand(r.intermediate_size, dtype=torch.float64) + 0.1}
    old_down = r.down.weight.data.clone()
    pruner._permute_mlp(r)
    assert not torch.equal(r.down.weight.data, old_down)  # channels moved
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)  # the MLP is permutation-invariant
    prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
    down = model.model.layers[0].mlp.down_proj.weight
    assert ((down == 0).reshape(down.shape[0], -1, 4).sum(-1) == 2).all()
    with pytest.raises(ValueError, match="N:M"):
        resolve_method("wanda", {"lsa": True})


def test_a_2_4_checkpoint_reloads_with_plain_from_pretrained(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model()
    params = resolve_method("wanda", {"sparsity_type": "2:4"})
    prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
    ids = random_windows(2, 16, seed=5)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_pruned(model, None, tmp_path / "ckpt", {"params": params}, structured=False)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert "auto_map" not in cfg and not (tmp_path / "ckpt" / "modeling_fangprune.py").exists()
    assert cfg[SPARSITY_KEY]["pattern"] == "2:4" and cfg[SPARSITY_KEY]["layers"][0]["down"] == 0.5
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")  # no remote code
    with torch.no_grad():
        assert torch.equal(back(input_ids=ids).logits, before)
    for layer in back.model.layers:
        w = layer.mlp.up_proj.weight
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all()


def test_low_rank_with_full_rank_reproduces_the_layer():
    from fangprune.methods.unstructured_base import factorise

    lin = torch.nn.Linear(12, 8)
    x = torch.randn(5, 12)
    full = factorise(lin, 1.0)
    assert full.rank == 8 and torch.allclose(full(x), lin(x), atol=1e-5)
    half = factorise(lin, 0.5)
    assert half.rank == 4 and sum(p.numel() for p in half.parameters()) == 12 * 4 + 4 * 8 + 8


def test_clearcut_2_4_with_low_rank_checkpoint_reloads(tmp_path):
    from transformers import AutoModelForCausalLM

    from fangprune.modeling.checkpoint import load_pruned

    model = tiny_model()
    dense_params = sum(p.numel() for p in model.parameters())
    params = resolve_method("clearcut", {"sparsity_type": "2:4", "low_rank": {"rank_ratio": 0.5}})
    report = prune_model(model, random_windows(4, 32), params, [0.5] * 3, CPU)
    assert report["layers"][0]["low_rank"] == {"q_proj": 32, "k_proj": 16, "v_proj": 16, "o_proj": 32}
    assert report["params"] < dense_params  # the factorised layers are counted
    ids = random_windows(2, 16, seed=5)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_pruned(model, None, tmp_path / "ckpt", {"params": params}, structured=False)
    for back in (load_pruned(tmp_path / "ckpt"),
                 AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", trust_remote_code=True)):
        with torch.no_grad():
            assert torch.equal(back(input_ids=ids).logits, before)
        down = back.model.layers[0].mlp.down_proj.weight
        assert ((down == 0).reshape(down.shape[0], -1, 4).sum(-1) == 2).all()  # the MLP stays exactly 2:4
