"""Pruned checkpoints reload in a fresh process, through plain transformers, with identical logits."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import random_windows, tiny_model
from fangprune.checkpoint import load_pruned, save_pruned
from fangprune.methods import resolve_method
from fangprune.models import count_params, decoder_layers, roles
from fangprune.pruning import prune_model

RELOAD = """
import sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, dtype=torch.float32).eval()
ids = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save({"logits": model(input_ids=ids).logits, "params": sum(p.numel() for p in model.parameters()),
                "class": type(model).__name__}, sys.argv[3])
"""


def reload_in_fresh_process(path, ids, tmp_path):
    torch.save(ids, tmp_path / "ids.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", RELOAD, str(path), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")],
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
    save_pruned(model, None, tmp_path / "ckpt", {"method": method})
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForCausalLM"].startswith("modeling_fangprune.FangPruned")
    assert cfg["model_type"] == arch and len(cfg["fangprune_layers"]) == 3
    out = reload_in_fresh_process(tmp_path / "ckpt", ids, tmp_path)
    assert out["class"].startswith("FangPruned") and out["params"] == count_params(model)
    assert (out["logits"] - expected).abs().max().item() == 0.0
    assert torch.equal(_logits(load_pruned(tmp_path / "ckpt"), ids), expected)
    if method == "flap":
        assert any(roles(layer).o.bias is not None for layer in decoder_layers(model))


@pytest.mark.slow
def test_default_model_checkpoint_reloads_identically(tmp_path, tokenizer):
    from fangprune.models import load_model
    from fangprune.testing import SMOLLM2_GGUF

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
    from fangprune.models import is_dispatched, place

    model = tiny_model()
    assert not is_dispatched(model) and place(model, torch.device("cpu")) == torch.device("cpu")
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers": 1, "lm_head": 1}  # as accelerate records it

    def refuse(*args, **kwargs):
        raise AssertionError("a dispatched model must stay where accelerate put it")

    model.to = refuse
    assert is_dispatched(model)
    assert place(model, torch.device("cpu")) == model.get_input_embeddings().weight.device
