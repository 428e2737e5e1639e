"""Real-width shape presets (modeling/shapes.py): the published dimensions, few layers, through prune and reload."""

import pytest
import torch
from conftest import random_windows
from test_checkpoint import _logits, reload_in_fresh_process

from fangprune.methods import resolve_method
from fangprune.modeling.checkpoint import save_pruned
from fangprune.modeling.models import count_params, decoder_layers, roles
from fangprune.modeling.shapes import SHAPES, preset_config
from fangprune.modeling.sources import random_spec, resolve_source, source_shape
from fangprune.modeling.tiny import tiny_config
from fangprune.prune.driver import prune_model


def test_presets_carry_the_published_dimensions():
    want = {  # hidden, MLP, query heads, KV heads, head dim, vocabulary, context, full depth
        "llama2-7b": (4096, 11008, 32, 32, 128, 32000, 4096, 32),
        "llama3.1-8b": (4096, 14336, 32, 8, 128, 128256, 131072, 32),
        "qwen2.5-7b": (3584, 18944, 28, 4, 128, 152064, 131072, 28),
        "llama2-70b": (8192, 28672, 64, 8, 128, 32000, 4096, 80),
    }
    keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
            "vocab_size", "max_position_embeddings", "num_hidden_layers")
    assert {name: tuple(cfg[k] for k in keys) for name, (_, cfg) in SHAPES.items()} == want
    # cut to the asked depth; the vocabulary covers the offline tokenizer's 49,152 ids
    arch, cfg = preset_config("llama2-70b:1")
    assert arch == "llama" and cfg["num_hidden_layers"] == 1 and cfg["vocab_size"] == 49152
    assert preset_config("qwen2.5-7b")[1]["vocab_size"] == 152064 and preset_config("qwen2.5-7b")[1][
        "num_hidden_layers"] == 2
    shape = source_shape(resolve_source("random:llama3.1-8b:3"))
    assert (shape["layers"], shape["kv_heads"], shape["context"]) == (3, 8, 131072)


@pytest.mark.parametrize("bad", ["llama2-7b:0", "llama2-7b:two", "llama2-13b"])
def test_a_bad_preset_is_named(bad):
    with pytest.raises(FileNotFoundError, match="layer count|shape presets"):
        resolve_source(f"random:{bad}")


@pytest.mark.slow
def test_a_7b_shaped_two_layer_model_prunes_and_reloads_identically(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    arch, overrides = random_spec("llama2-7b")  # what prepare_model builds for random:llama2-7b (2 layers)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **overrides)).eval()
    layers = decoder_layers(model)
    r = roles(layers[0])
    assert len(layers) == 2 and model.config.hidden_size == 4096
    assert (r.intermediate_size, r.num_heads, r.num_kv_heads, r.head_dim) == (11008, 32, 32, 128)
    windows = random_windows(2, 16, vocab_size=32000)
    dense = count_params(model)
    report = prune_model(model, windows, resolve_method("obc", {}), [0.3, 0.3], torch.device("cpu"))
    assert abs(report["block_params_kept_frac"] - 0.7) < 0.01 and count_params(model) < dense
    assert {"hessian", "inverse", "selection", "compensation"} <= set(report["layers"][0]["seconds"])
    ids = windows[:1, :8]
    expected = _logits(model, ids)
    save_pruned(model, None, tmp_path / "ckpt", {"method": "obc"})
    out = reload_in_fresh_process(tmp_path / "ckpt", ids, tmp_path)
    assert (out["logits"] - expected).abs().max().item() == 0.0
