"""Which llama.cpp architecture a checkpoint maps onto, its GGUF metadata, and its tensors under llama.cpp's names.

A structurally pruned model whose layers share one head count and MLP width is a smaller Llama, written as
llama.cpp's ``llama`` architecture. One with per-layer sizes is written as ``deci`` (NVIDIA's Nemotron-NAS format),
whose loader reads ``attention.head_count``, ``attention.head_count_kv`` and ``feed_forward_length`` as per-layer
arrays and builds each layer at its own size, with optional q/k/v, o_proj and MLP biases (so FLAP's bias
compensation and Qwen2's q/k/v biases fit). Both graphs rotate consecutive pairs of a head's values while HF
Llama/Qwen2 weights rotate halves, so q_proj and k_proj rows (and biases) are reordered per head.

What llama.cpp's llama/deci graphs cannot express is refused with a message before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fangprune.modeling.models import decoder_layers, roles
from fangprune.modeling.remote.modeling_fangprune import LowRankLinear

#: HF model types whose decoder is a Llama block (RMSNorm, SwiGLU MLP, rotary attention, optional biases).
LLAMA_LIKE = ("llama", "mistral", "qwen2")
#: Families this exporter refuses, and why.
UNSUPPORTED = {
    "qwen3": "Qwen3 applies an RMSNorm to every query and key head (q_norm / k_norm), which llama.cpp's "
    "llama and deci graphs do not; llama.cpp's qwen3 architecture has no per-layer head counts or MLP widths",
    "gemma3_text": "Gemma 3 has four norms per layer with (1 + w) weights, q/k norms, a scaled embedding and "
    "sliding-window layers, none of which llama.cpp's llama or deci graphs apply",
}


class GGUFExportError(ValueError):
    """The checkpoint cannot be written as a GGUF that llama.cpp would read as the same model."""


@dataclass
class Layout:
    arch: str  # "llama" or "deci"
    heads: list[int]
    kv_heads: list[int]
    ff: list[int]
    head_dim: int
    context_length: int
    notes: list[str] = field(default_factory=list)

    @property
    def uniform(self) -> bool:
        return len(set(zip(self.heads, self.kv_heads, self.ff))) == 1


def _rope(config) -> dict:
    params = dict(getattr(config, "rope_parameters", None) or {})
    legacy = getattr(config, "rope_scaling", None) or {}
    params = {**legacy, **params}
    if "rope_theta" not in params:
        params["rope_theta"] = getattr(config, "rope_theta", 10000.0)
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def plan(model: nn.Module) -> Layout:
    """Choose the architecture and check that llama.cpp can represent the model; raises GGUFExportError."""
    cfg = model.config
    mtype = cfg.model_type
    if mtype in UNSUPPORTED:
        raise GGUFExportError(f"GGUF export of model_type {mtype!r} is not supported: {UNSUPPORTED[mtype]}")
    if mtype not in LLAMA_LIKE:
        raise GGUFExportError(f"GGUF export supports {', '.join(LLAMA_LIKE)}; got model_type {mtype!r}")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise GGUFExportError(f"hidden_act {cfg.hidden_act!r}: llama.cpp's llama/deci MLP is SiLU-gated")
    if getattr(cfg, "partial_rotary_factor", 1.0) not in (None, 1.0):
        raise GGUFExportError("partial rotary embeddings: llama.cpp's llama/deci graphs rotate the whole head")
    if mtype == "qwen2" and getattr(cfg, "use_sliding_window", False):
        raise GGUFExportError("Qwen2 with use_sliding_window: llama.cpp's llama/deci graphs attend to the full context")
    rope = _rope(cfg)
    if rope["rope_type"] not in ("default", "linear", "llama3"):
        raise GGUFExportError(f"RoPE type {rope['rope_type']!r}: this exporter writes default, linear and llama3")
    heads, kv, ff, notes = [], [], [], []
    head_dim = None
    for i, layer in enumerate(decoder_layers(model)):
        r = roles(layer)
        for name, lin in r.projections().items():
            if isinstance(lin, LowRankLinear):
                raise GGUFExportError(
                    f"layer {i} {name}_proj is stored low-rank ({lin.rank}): llama.cpp's llama/deci layers have "
                    "one matrix per projection; export the checkpoint before low-rank factorisation")
        if r.intermediate_size == 0:
            raise GGUFExportError(
                f"layer {i} has no MLP channels left: llama.cpp's deci graph skips the rest of such a layer, "
                "attention output included, so the file would compute a different model")
        if r.num_kv_heads == 0 or r.num_heads == 0:
            raise GGUFExportError(f"layer {i} has no attention heads left; not written (llama.cpp would drop its "
                                  "o_proj bias)")
        heads.append(r.num_heads)
        kv.append(r.num_kv_heads)
        ff.append(r.intermediate_size)
        hd = r.q.out_features // r.num_heads
        if head_dim not in (None, hd):
            raise GGUFExportError("head dimension differs between layers")
        head_dim = hd
    ctx = int(cfg.max_position_embeddings)
    window = getattr(cfg, "sliding_window", None) if mtype == "mistral" else None
    if window is not None and window < ctx:
        notes.append(f"Mistral sliding window {window}: llama.cpp attends to the full context, so the file's "
                     f"training context is set to {window} tokens, where the two agree")
        ctx = int(window)
    layout = Layout("llama", heads, kv, ff, head_dim, ctx, notes)
    if not layout.uniform:
        layout.arch = "deci"
    return layout


def rope_pairs(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder the rows of each head from HF's halves layout (value j rotates with j + d/2) to llama.cpp's pairs
    layout (value 2j rotates with 2j + 1); works on a weight [heads*d, in] or a bias [heads*d]."""
    d = weight.shape[0] // n_heads
    rest = weight.shape[1:]
    return weight.reshape(n_heads, 2, d // 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def llama3_rope_divisors(rope: dict, head_dim: int) -> np.ndarray:
    """Per rotary frequency, the divisor llama.cpp applies (``rope_freqs`` tensor) for Llama 3.1's frequency-
    dependent scaling: 1 for short wavelengths, ``factor`` for long ones, a smooth blend between."""
    base, factor = rope["rope_theta"], rope["factor"]
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope["original_max_position_embeddings"]
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    divisor = 1.0 / ((1 - smooth) / factor + smooth)
    divisor = np.where(wavelen < old_ctx / high, 1.0, divisor)
    divisor = np.where(wavelen > old_ctx / low, factor, divisor)
    return divisor.astype(np.float32)


def metadata(model: nn.Module, layout: Layout) -> list[tuple[str, tuple]]:
    """(GGUFWriter method, args) pairs of the architecture's keys."""
    cfg = model.config
    one = (lambda xs: xs[0]) if layout.arch == "llama" else list
    rope = _rope(cfg)
    out = [
        ("add_context_length", (layout.context_length,)),
        ("add_embedding_length", (cfg.hidden_size,)),
        ("add_block_count", (len(layout.heads),)),
        ("add_feed_forward_length", (one(layout.ff),)),
        ("add_head_count", (one(layout.heads),)),
        ("add_head_count_kv", (one(layout.kv_heads),)),
        ("add_key_length", (layout.head_dim,)),
        ("add_value_length", (layout.head_dim,)),
        ("add_rope_dimension_count", (layout.head_dim,)),
        ("add_rope_freq_base", (float(rope["rope_theta"]),)),
        ("add_layer_norm_rms_eps", (float(cfg.rms_norm_eps),)),
        ("add_vocab_size", (int(model.get_input_embeddings().weight.shape[0]),)),
    ]
    if rope["rope_type"] == "linear":
        import gguf

        out += [("add_rope_scaling_type", (gguf.RopeScalingType.LINEAR,)),
                ("add_rope_scaling_factor", (float(rope["factor"]),))]
    return out


def tensors(model: nn.Module, layout: Layout):
    """Yield (llama.cpp tensor name, float32 numpy array) for every weight, q/k rows in llama.cpp's RoPE layout."""
    import gguf

    def name(kind, bid=None, suffix="weight"):
        base = gguf.TENSOR_NAMES[kind]
        return f"{base.format(bid=bid) if bid is not None else base}.{suffix}"

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float32).cpu().numpy()

    T = gguf.MODEL_TENSOR
    yield name(T.TOKEN_EMBD), arr(model.get_input_embeddings().weight)
    yield name(T.OUTPUT_NORM), arr(model.model.norm.weight)
    if not model.config.tie_word_embeddings:
        yield name(T.OUTPUT), arr(model.get_output_embeddings().weight)
    rope = _rope(model.config)
    if rope["rope_type"] == "llama3":
        yield name(T.ROPE_FREQS), llama3_rope_divisors(rope, layout.head_dim)
    kinds = {"q": T.ATTN_Q, "k": T.ATTN_K, "v": T.ATTN_V, "o": T.ATTN_OUT,
             "gate": T.FFN_GATE, "up": T.FFN_UP, "down": T.FFN_DOWN}
    for i, layer in enumerate(decoder_layers(model)):
        r = roles(layer)
        yield name(T.ATTN_NORM, i), arr(layer.input_layernorm.weight)
        yield name(T.FFN_NORM, i), arr(layer.post_attention_layernorm.weight)
        for role, lin in r.projections().items():
            w = arr(lin.weight)
            b = arr(lin.bias) if lin.bias is not None else None
            if role in ("q", "k"):
                n = layout.heads[i] if role == "q" else layout.kv_heads[i]
                w = rope_pairs(w, n)
                b = rope_pairs(b, n) if b is not None else None
            yield name(kinds[role], i), w
            if b is not None:
                yield name(kinds[role], i, "bias"), b
