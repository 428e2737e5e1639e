"""Pruned checkpoints: safetensors weights + config.json recording every layer's sizes + pruning.json manifest.

Layers of a pruned model have different head counts and MLP widths, which a stock config cannot express;
``load_pruned`` rebuilds the architecture from the recorded sizes before loading the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .io import atomic_path
from .models import decoder_layers, roles

LAYERS_KEY = "fangprune_layers"


def layer_sizes(model: nn.Module) -> list[dict]:
    out = []
    for layer in decoder_layers(model):
        r = roles(layer)
        out.append(
            {
                "num_attention_heads": r.num_heads,
                "num_key_value_heads": r.num_kv_heads,
                "intermediate_size": r.intermediate_size,
                "o_proj_bias": r.o.bias is not None,
                "down_proj_bias": r.down.bias is not None,
            }
        )
    return out


def save_pruned(model: nn.Module, tokenizer, path: str | Path, manifest: dict) -> None:
    """Write the checkpoint directory atomically (a partial directory never appears under ``path``)."""
    model.config.update({LAYERS_KEY: layer_sizes(model)})
    with atomic_path(path, directory=True) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "pruning.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _empty_linear(lin: nn.Linear, out_f: int, in_f: int, bias: bool) -> nn.Linear:
    return nn.Linear(in_f, out_f, bias=bias, dtype=lin.weight.dtype)


def load_pruned(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load a checkpoint written by ``save_pruned`` (or any plain HF directory)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    sizes = getattr(config, LAYERS_KEY, None)
    if sizes is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    for layer, s in zip(decoder_layers(model), sizes):
        r = roles(layer)
        hd, hidden = r.head_dim, r.o.out_features
        attn, mlp = r.attn, r.mlp
        attn.q_proj = _empty_linear(r.q, s["num_attention_heads"] * hd, hidden, r.q.bias is not None)
        attn.k_proj = _empty_linear(r.k, s["num_key_value_heads"] * hd, hidden, r.k.bias is not None)
        attn.v_proj = _empty_linear(r.v, s["num_key_value_heads"] * hd, hidden, r.v.bias is not None)
        attn.o_proj = _empty_linear(r.o, hidden, s["num_attention_heads"] * hd, s["o_proj_bias"])
        mlp.gate_proj = _empty_linear(r.gate, s["intermediate_size"], hidden, r.gate.bias is not None)
        mlp.up_proj = _empty_linear(r.up, s["intermediate_size"], hidden, r.up.bias is not None)
        mlp.down_proj = _empty_linear(r.down, hidden, s["intermediate_size"], s["down_proj_bias"])
    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(f))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"checkpoint {path} does not match its config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.to(dtype).eval()
