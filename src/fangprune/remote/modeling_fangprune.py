"""Structurally pruned LLaMA-family models: every decoder layer at its own head count and MLP width.

This file is copied next to each pruned checkpoint and named in its config.json ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` works without fangprune installed. It
depends on torch and transformers only. config.json keeps the base model type (llama, mistral, qwen2, qwen3,
gemma3_text; Gemma's per-head q/k norms act on head_dim, so they keep their shape)
and adds ``fangprune_layers``: per layer, the number of query and key/value heads, the MLP width, and whether
o_proj / down_proj carry a bias (added by bias compensation).
"""

from __future__ import annotations

from torch import nn
from transformers import Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

LAYERS_KEY = "fangprune_layers"


def _linear(in_features: int, out_features: int, bias: bool, like: nn.Linear) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=bias, device=like.weight.device, dtype=like.weight.dtype)


def resize_layers(model: nn.Module) -> None:
    """Rebuild each decoder layer's projections at the sizes recorded in ``config.fangprune_layers``."""
    sizes = getattr(model.config, LAYERS_KEY, None)
    if not sizes:
        return
    layers = model.model.layers
    if len(sizes) != len(layers):
        raise ValueError(f"{LAYERS_KEY} lists {len(sizes)} layers, the model has {len(layers)}")
    hidden = model.config.hidden_size
    for layer, s in zip(layers, sizes):
        attn, mlp = layer.self_attn, layer.mlp
        hd = attn.head_dim
        nq, nkv, width = s["num_attention_heads"], s["num_key_value_heads"], s["intermediate_size"]
        if nkv <= 0 or nq % nkv:
            raise ValueError(f"layer {attn.layer_idx}: {nq} query heads cannot share {nkv} key/value heads")
        attn.q_proj = _linear(hidden, nq * hd, attn.q_proj.bias is not None, attn.q_proj)
        attn.k_proj = _linear(hidden, nkv * hd, attn.k_proj.bias is not None, attn.k_proj)
        attn.v_proj = _linear(hidden, nkv * hd, attn.v_proj.bias is not None, attn.v_proj)
        attn.o_proj = _linear(nq * hd, hidden, s.get("o_proj_bias", False), attn.o_proj)
        attn.num_key_value_groups = nq // nkv  # repeat_kv factor of this layer
        mlp.gate_proj = _linear(hidden, width, mlp.gate_proj.bias is not None, mlp.gate_proj)
        mlp.up_proj = _linear(hidden, width, mlp.up_proj.bias is not None, mlp.up_proj)
        mlp.down_proj = _linear(width, hidden, s.get("down_proj_bias", False), mlp.down_proj)


class FangPrunedLlamaForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)


class FangPrunedMistralForCausalLM(MistralForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)


class FangPrunedQwen2ForCausalLM(Qwen2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)


class FangPrunedQwen3ForCausalLM(Qwen3ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)


class FangPrunedGemma3ForCausalLM(Gemma3ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)


CLASSES = {
    "gemma3_text": FangPrunedGemma3ForCausalLM,
    "llama": FangPrunedLlamaForCausalLM,
    "mistral": FangPrunedMistralForCausalLM,
    "qwen2": FangPrunedQwen2ForCausalLM,
    "qwen3": FangPrunedQwen3ForCausalLM,
}
