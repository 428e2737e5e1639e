"""Random models with the real widths of large models and few layers, to measure what a full model's jobs need
before spending a GPU allocation (docs/scale.md). ``random:<preset>[:<layers>]`` in a config's ``source``
(default 2 layers), e.g. ``random:llama2-70b:1``; weights are seeded random, the tokenizer is SmolLM2's.

The dimensions are those of the published configs (hidden size, MLP width, query / KV heads, head dim, context,
RoPE). The vocabulary is the preset's where it is at least the tokenizer's 49,152 tokens (LLaMA-3.1, Qwen2.5);
the LLaMA-2 presets get 49,152 rows instead of 32,000 so that every token id of the offline tokenizer exists,
which makes their embedding and LM head 1.54x the real ones (the decoder layers are exact).
"""

from __future__ import annotations

#: preset -> (HF model_type, config of the full model). num_hidden_layers is the full model's depth.
SHAPES = {
    "llama2-7b": ("llama", dict(
        hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, head_dim=128,
        num_hidden_layers=32, vocab_size=32000, max_position_embeddings=4096, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "llama3.1-8b": ("llama", dict(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        num_hidden_layers=32, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "qwen2.5-7b": ("qwen2", dict(
        hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4, head_dim=128,
        num_hidden_layers=28, vocab_size=152064, max_position_embeddings=131072, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False)),
    "llama2-70b": ("llama", dict(
        hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8, head_dim=128,
        num_hidden_layers=80, vocab_size=32000, max_position_embeddings=4096, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False)),
}
DEFAULT_LAYERS = 2
TOKENIZER_VOCAB = 49152


def parse_preset(name: str) -> tuple[str, int] | None:
    """(preset, layers) of ``<preset>[:<layers>]``, None when ``name`` is not a shape preset."""
    preset, _, layers = name.partition(":")
    if preset not in SHAPES:
        return None
    if layers and not (layers.isdigit() and int(layers) >= 1):
        raise ValueError(f"random:{name}: the layer count after ':' must be a positive integer")
    return preset, int(layers) if layers else DEFAULT_LAYERS


def preset_config(name: str, vocab_size: int = TOKENIZER_VOCAB) -> tuple[str, dict]:
    """(model_type, config kwargs) of a shape preset cut to its layer count; the vocabulary covers
    ``vocab_size`` token ids (the tokenizer's)."""
    preset, layers = parse_preset(name)
    arch, cfg = SHAPES[preset]
    return arch, {**cfg, "num_hidden_layers": layers, "vocab_size": max(cfg["vocab_size"], vocab_size)}
