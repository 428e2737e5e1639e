"""Pruned checkpoints reload in a fresh process, through plain transformers, with identical logits."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import random_windows, tiny_model

from fangprune.methods import resolve_method
from fangprune.modeling.checkpoint import (
    layer_sizes,
    load_pruned,
    save_pruned,
    uniform_config,
)
from fangprune.modeling.models import count_params, decoder_layers, roles
from fangprune.prune.driver import prune_model

RELOAD = """
import sys, torch
from transformers import AutoModelForCausalLM
remote = sys.argv[4] == "remote"
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=remote, dtype=torch.float32).eval()
ids = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save({"logits": model(input_ids=ids).logits, "params": sum(p.numel() for p in model.parameters()),
                "class": type(model).__name__}, sys.argv[3])
"""


def reload_in_fresh_process(path, ids, tmp_path, remote_code=True):
    torch.save(ids, tmp_path / "ids.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    flag = "remote" if remote_code else "plain"
    subprocess.run([sys.executable, "-c", RELOAD, str(path), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt"), flag],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    return torch.load(tmp_path / "out.pt")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize(
    "arch, heads, kv, method",
    [
        ("llama", 4, 4, "obc"),  # LLaMA-1/2 style multi-head attention
        ("qwen2", 4, 2, "flap"),  # GQA with q/k/v biases; FLAP adds o_proj/down_proj biases
        ("mistral", 4, 2, "wanda-sp"),
        ("llama", 4, 2, "obc-query"),  # GQA, query heads removed inside each KV group
    ],
)
def test_reload_in_fresh_process_gives_identical_logits(tmp_path, arch, heads, kv, method):
    model = tiny_model(arch, num_attention_heads=heads, num_key_value_heads=kv)
    windows = random_windows(4, 32)
    dense_params = count_params(model)
    if method == "obc-query":
        method = "obc"
        params = resolve_method("obc", {"head_unit": "query_head"})
    else:
        params = resolve_method(method, {})
    prune_model(model, windows, params, [0.5] * 3, torch.device("cpu"))
    if params.get("head_unit") == "query_head":
        assert all((roles(layer).num_heads, roles(layer).num_kv_heads) == (2, 2) for layer in decoder_layers(model))
    assert count_params(model) < dense_params
    if heads == kv:  # multi-head attention stays multi-head (whole KV groups are single heads)
        assert all(roles(layer).num_heads == roles(layer).num_kv_heads for layer in decoder_layers(model))
    ids = random_windows(2, 24, seed=1)
    expected = _logits(model, ids)
    uniform = uniform_config(layer_sizes(model), model.config) is not None
    save_pruned(model, None, tmp_path / "ckpt", {"method": method})
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    fmt = json.loads((tmp_path / "ckpt" / "pruning.json").read_text())["checkpoint_format"]
    assert cfg["model_type"] == arch and fmt == ("standard" if uniform else "per_layer")
    if uniform:  # a smaller stock config: no remote code at all
        assert "auto_map" not in cfg and "fangprune_layers" not in cfg
        assert not (tmp_path / "ckpt" / "modeling_fangprune.py").exists()
    else:
        assert cfg["auto_map"]["AutoModelForCausalLM"].startswith("modeling_fangprune.FangPruned")
        assert len(cfg["fangprune_layers"]) == 3
    out = reload_in_fresh_process(tmp_path / "ckpt", ids, tmp_path, remote_code=not uniform)
    assert out["class"].startswith("FangPruned") != uniform and out["params"] == count_params(model)
    assert (out["logits"] - expected).abs().max().item() == 0.0
    assert torch.equal(_logits(load_pruned(tmp_path / "ckpt"), ids), expected)
    if method == "flap":
        assert any(roles(layer).o.bias is not None for layer in decoder_layers(model))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma3_text"])
def test_uniform_widths_give_a_stock_config_that_loads_without_remote_code(tmp_path, arch):
    """Uniform allocation with module_balance layer_params removes the same heads and channels from every layer:
    the checkpoint is a smaller config of the base architecture (explicit head_dim), loaded by plain
    ``from_pretrained`` without trust_remote_code, with identical logits."""
    model = tiny_model(arch)
    params = resolve_method("obc", {"allocation": "uniform", "module_balance": "layer_params"})
    prune_model(model, random_windows(4, 32), params, [0.5] * 3, torch.device("cpu"))
    sizes = layer_sizes(model)
    assert len({(s["num_attention_heads"], s["num_key_value_heads"], s["intermediate_size"]) for s in sizes}) == 1
    assert sizes[0]["num_key_value_heads"] < model.config.num_key_value_heads or sizes[0]["num_attention_heads"] < \
        model.config.num_attention_heads or sizes[0]["intermediate_size"] < model.config.intermediate_size
    ids = random_windows(2, 24, seed=1)
    expected = _logits(model, ids)
    save_pruned(model, None, tmp_path / "ckpt", {"method": "obc"})
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert "auto_map" not in cfg and "fangprune_layers" not in cfg
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]) == (
        sizes[0]["num_attention_heads"], sizes[0]["num_key_value_heads"], sizes[0]["intermediate_size"])
    out = reload_in_fresh_process(tmp_path / "ckpt", ids, tmp_path, remote_code=False)
    assert not out["class"].startswith("FangPruned") and out["params"] == count_params(model)
    assert (out["logits"] - expected).abs().max().item() == 0.0


@pytest.mark.slow
def test_default_model_checkpoint_reloads_identically(tmp_path, tokenizer):
    from fangprune.modeling.models import load_model
    from fangprune.modeling.tiny import SMOLLM2_GGUF

    model = load_model(SMOLLM2_GGUF, dtype="float32")
    dense_params = count_params(model)
    save_pruned_dense = tmp_path / "dense"
    model.save_pretrained(save_pruned_dense)
    windows = tokenizer("The quick brown fox jumps over the lazy dog. " * 12, return_tensors="pt").input_ids[:, :64]
    prune_model(model, windows, resolve_method("mag-sp", {}), [0.4] * 30, torch.device("cpu"))
    ids = windows[:, :32]
    expected = _logits(model, ids)
    save_pruned(model, tokenizer, tmp_path / "ckpt", {"method": "mag-sp"})
    out = reload_in_fresh_process(tmp_path / "ckpt", ids, tmp_path)
    assert (out["logits"] - expected).abs().max().item() == 0.0
    assert out["params"] == count_params(model) < dense_params
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "ckpt") < 0.8 * size(save_pruned_dense)
    assert (tmp_path / "ckpt" / "tokenizer.json").exists()


def test_a_model_spread_by_a_device_map_is_not_moved():
    from fangprune.modeling.models import is_dispatched, place

    model = tiny_model()
    assert not is_dispatched(model) and place(model, torch.device("cpu")) == torch.device("cpu")
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers": 1, "lm_head": 1}  # as accelerate records it

    def refuse(*args, **kwargs):
        raise AssertionError("a dispatched model must stay where accelerate put it")

    model.to = refuse
    assert is_dispatched(model)
    assert place(model, torch.device("cpu")) == model.get_input_embeddings().weight.device


def _modes(root):
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_every_file_of_a_checkpoint_and_a_converted_model_gets_the_umask_permissions(tmp_path, umask, file_mode,
                                                                                     dir_mode):
    """save_pretrained writes safetensors shards 0600 inside the temporary directory; every file must come out
    as a plain open() would have made it, so a group can share a results directory."""
    from fangprune.io import atomic_path
    from fangprune.modeling.models import prepare_model

    old = os.umask(umask)
    try:
        model = tiny_model("llama", num_attention_heads=4, num_key_value_heads=2)
        prune_model(model, random_windows(2, 16), resolve_method("mag-sp", {}), [0.3] * 3, torch.device("cpu"))
        save_pruned(model, None, tmp_path / "ckpt", {"method": "mag-sp"}, max_shard_size="20KB")
        with atomic_path(tmp_path / "prepared", directory=True) as tmp:
            prepare_model("random:llama", tmp)
    finally:
        os.umask(old)
    shards = list((tmp_path / "ckpt").glob("model-*.safetensors"))
    assert len(shards) > 1  # sharded, as the default model's checkpoints are
    for root in (tmp_path / "ckpt", tmp_path / "prepared"):
        modes = _modes(root)
        assert len(modes) > 3
        for name, mode in modes.items():
            expected = dir_mode if (root / name).is_dir() else file_mode
            assert mode == expected, (root.name, name, oct(mode))


def test_a_random_preset_is_saved_once_in_the_sharded_layout(tmp_path):
    """Every weight file of a prepared random model is a shard its index names (no stale single-file copy
    beside the shards), and the weights are the seeded model's."""
    from safetensors.torch import load_file

    from fangprune.modeling.models import load_tokenizer, prepare_model
    from fangprune.modeling.sources import random_spec
    from fangprune.modeling.tiny import SMOLLM2_GGUF, random_model

    prepare_model("random:llama", tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    assert {p.name for p in tmp_path.glob("*.safetensors")} == shards
    saved = {k: v for s in shards for k, v in load_file(tmp_path / s).items()}
    arch, overrides = random_spec("llama")
    expected = random_model(arch, load_tokenizer(SMOLLM2_GGUF), **overrides).state_dict()
    assert set(saved) <= set(expected) and len(saved) > 5
    for name, tensor in saved.items():
        assert torch.equal(tensor, expected[name]), name
