"""The text decoder of a multimodal checkpoint whose config nests it (``gemma3``: ``text_config``).

Gemma 3 from 4B up ships as ``Gemma3ForConditionalGeneration`` (a SigLIP vision tower, a projector and the
language model). fangprune prunes the language model only, so it is loaded as the plain text model of the nested
config (``Gemma3ForCausalLM``, ``model_type: gemma3_text``), with the text weights read from the safetensors
files by name (``model.language_model.*`` in transformers 5, ``language_model.model.*`` in older saves) and the
vision weights never read. The result is an ordinary text checkpoint once saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from fangprune.modeling.sources import NESTED_TEXT

#: weight-name prefixes of the nested decoder (new layout first) -> the text model's prefix
PREFIXES = (("model.language_model.", "model."), ("language_model.model.", "model."),
            ("lm_head.", "lm_head."), ("language_model.lm_head.", "lm_head."))


def text_config_dict(path: str | Path) -> dict | None:
    """The nested text config of a local multimodal checkpoint (with its model_type), or None."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    text_type = NESTED_TEXT.get(cfg.get("model_type"))
    if text_type is None:
        return None
    text = dict(cfg.get("text_config") or {})
    text["model_type"] = text_type
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # kept at the top level by some saves
        if key not in text and key in cfg:
            text[key] = cfg[key]
    return text


def _text_key(name: str) -> str | None:
    for old, new in PREFIXES:
        if name.startswith(old):
            return new + name[len(old):]
    return None


def load_text_model(path: str | Path, dtype: torch.dtype) -> nn.Module:
    """The nested text decoder of the checkpoint at ``path`` as a causal LM, vision weights left unread."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    text = text_config_dict(path)
    if text is None:
        raise ValueError(f"{path}: not a multimodal checkpoint with a nested text model ({', '.join(NESTED_TEXT)})")
    config = AutoConfig.for_model(**text)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {}
    for shard in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for name in fh.keys():
                key = _text_key(name)
                if key is not None:
                    state[key] = fh.get_tensor(name).to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{path}: text weights do not match {type(model).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    return model.eval()
