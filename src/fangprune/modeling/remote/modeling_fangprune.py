"""Structurally pruned LLaMA-family models: every decoder layer at its own head count and MLP width.

This file is copied next to each pruned checkpoint and named in its config.json ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` works without fangprune installed. It
depends on torch and transformers only. config.json keeps the base model type (llama, mistral, qwen2, qwen3,
gemma3_text; Gemma's per-head q/k norms act on head_dim, so they keep their shape)
and adds ``fangprune_layers``: per layer, the number of query and key/value heads, the MLP width, and whether
o_proj / down_proj carry a bias (added by bias compensation); and/or ``fangprune_low_rank``: per layer, the rank
of every projection stored as two smaller linears (low-rank attention after unstructured pruning).
"""

from __future__ import annotations

from torch import nn
from transformers import (
    Gemma3ForCausalLM,
    LlamaForCausalLM,
    MistralForCausalLM,
    Qwen2ForCausalLM,
    Qwen3ForCausalLM,
)

LAYERS_KEY = "fangprune_layers"
LOW_RANK_KEY = "fangprune_low_rank"


class LowRankLinear(nn.Module):
    """y = up(down(x)): a rank-r factorisation of a Linear (W ~ U_r S_r V_r^T, down = S_r V_r^T, up = U_r)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @property
    def weight(self):
        """The dense equivalent (for inspection and diagnostics; the forward never builds it)."""
        return self.up.weight @ self.down.weight

    @property
    def bias(self):
        return self.up.bias

    def forward(self, x):
        return self.up(self.down(x))


def apply_low_rank(model: nn.Module) -> None:
    """Replace the projections listed in ``config.fangprune_low_rank`` by LowRankLinear modules of their ranks."""
    spec = getattr(model.config, LOW_RANK_KEY, None)
    if not spec:
        return
    for layer, ranks in zip(model.model.layers, spec):
        for name, rank in ranks.items():
            parent = layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
            old = getattr(parent, name)
            new = LowRankLinear(old.in_features, old.out_features, rank, old.bias is not None,
                                device=old.weight.device, dtype=old.weight.dtype)
            setattr(parent, name, new)


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
        apply_low_rank(self)


class FangPrunedMistralForCausalLM(MistralForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)
        apply_low_rank(self)


class FangPrunedQwen2ForCausalLM(Qwen2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)
        apply_low_rank(self)


class FangPrunedQwen3ForCausalLM(Qwen3ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)
        apply_low_rank(self)


class FangPrunedGemma3ForCausalLM(Gemma3ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        resize_layers(self)
        apply_low_rank(self)


CLASSES = {
    "gemma3_text": FangPrunedGemma3ForCausalLM,
    "llama": FangPrunedLlamaForCausalLM,
    "mistral": FangPrunedMistralForCausalLM,
    "qwen2": FangPrunedQwen2ForCausalLM,
    "qwen3": FangPrunedQwen3ForCausalLM,
}
