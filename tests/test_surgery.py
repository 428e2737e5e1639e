import torch
from conftest import random_windows, tiny_model

from fangprune.core.surgery import head_columns, keep_channels, keep_kv_groups
from fangprune.modeling.checkpoint import load_pruned, save_pruned
from fangprune.modeling.models import roles


def _layer_inputs(model, windows):
    from fangprune.core.engine import LayerwiseEngine

    eng = LayerwiseEngine(model, windows, torch.device("cpu"))
    return eng, eng.hidden


def test_kv_group_removal_equals_masked_attention():
    for arch in ("llama", "qwen2"):
        model = tiny_model(arch, num_attention_heads=4, num_key_value_heads=2)
        eng, hidden = _layer_inputs(model, random_windows(2, 16))
        layer = model.model.layers[0]
        r = roles(layer)
        masked_o = r.o.weight.data.clone()
        cols = head_columns(torch.tensor([0, 1]), r.head_dim)  # query heads of KV group 0
        masked_o[:, cols] = 0
        r.o.weight.data, dense_o = masked_o, r.o.weight.data
        expected = eng.forward_layer(0)
        r.o.weight.data = dense_o
        keep_kv_groups(r, torch.tensor([1]))
        r = roles(layer)
        assert (r.num_heads, r.num_kv_heads) == (2, 1)
        assert torch.allclose(eng.forward_layer(0), expected, atol=1e-6)


def test_channel_removal_equals_masked_mlp():
    model = tiny_model()
    eng, _ = _layer_inputs(model, random_windows(2, 16))
    r = roles(model.model.layers[1])
    kept = torch.arange(0, 128, 3)
    mask = torch.zeros(128, dtype=torch.bool)
    mask[kept] = True
    dense = r.down.weight.data.clone()
    r.down.weight.data[:, ~mask] = 0
    expected = eng.forward_layer(1)
    r.down.weight.data = dense
    keep_channels(r, kept)
    assert roles(model.model.layers[1]).intermediate_size == kept.numel()
    assert torch.allclose(eng.forward_layer(1), expected, atol=1e-6)


def test_checkpoint_roundtrip_identical_logits(tmp_path):
    model = tiny_model("qwen2")
    keep_kv_groups(roles(model.model.layers[0]), torch.tensor([0]))
    keep_channels(roles(model.model.layers[1]), torch.arange(50))
    ids = random_windows(2, 16)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_pruned(model, None, tmp_path / "ckpt", {"method": "test"})
    assert (tmp_path / "ckpt" / "pruning.json").exists()
    reloaded = load_pruned(tmp_path / "ckpt")
    with torch.no_grad():
        after = reloaded(input_ids=ids).logits
    assert torch.equal(before, after)


def test_query_head_removal_within_groups_equals_masked_attention():
    from fangprune.core.surgery import keep_query_heads

    for arch in ("llama", "qwen2"):
        model = tiny_model(arch, num_attention_heads=4, num_key_value_heads=2)
        eng, _ = _layer_inputs(model, random_windows(2, 16))
        layer = model.model.layers[0]
        r = roles(layer)
        dense_o = r.o.weight.data.clone()
        r.o.weight.data[:, head_columns(torch.tensor([1, 2]), r.head_dim)] = 0  # head 1 of group 0, head 2 of group 1
        expected = eng.forward_layer(0)
        r.o.weight.data = dense_o
        keep_query_heads(r, torch.tensor([0, 3]))
        r = roles(layer)
        assert (r.num_heads, r.num_kv_heads, r.attn.num_key_value_groups) == (2, 2, 1)
        assert torch.allclose(eng.forward_layer(0), expected, atol=1e-6)


def test_query_heads_must_stay_balanced_across_groups():
    import pytest

    from fangprune.core.surgery import keep_query_heads

    r = roles(tiny_model(num_attention_heads=4, num_key_value_heads=2).model.layers[0])
    with pytest.raises(ValueError, match="equal and non-zero"):
        keep_query_heads(r, torch.tensor([0, 1, 2]))


def test_lowest_per_group_picks_inside_each_group():
    from fangprune.core.selection import lowest_per_group

    scores = torch.tensor([5.0, 1.0, 3.0, 0.5, 9.0, 2.0])  # 2 KV groups of 3 query heads
    assert lowest_per_group(scores, 3, 1).tolist() == [1, 3]
    assert lowest_per_group(scores, 3, 2).tolist() == [1, 2, 3, 5]
