"""Pruned checkpoints: safetensors weights + config.json recording every layer's sizes + pruning.json manifest.

Layers of a pruned model have different head counts and MLP widths, which a stock transformers config cannot
express. config.json keeps the base model type and adds ``fangprune_layers``; the small model code in
``remote/modeling_fangprune.py`` is copied next to the weights and named in ``auto_map``, so both
``load_pruned(path)`` and ``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` rebuild the
architecture before loading the weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from fangprune.io import atomic_path
from fangprune.modeling.models import (
    SHARD_SIZE,
    decoder_layers,
    device_map_kwargs,
    roles,
)
from fangprune.modeling.remote import modeling_fangprune as remote

LAYERS_KEY = remote.LAYERS_KEY
LOW_RANK_KEY = remote.LOW_RANK_KEY
REMOTE_FILE = Path(remote.__file__)


def active_permutation_scope(params: dict) -> str | None:
    """Where RIA's column permutations act (``permutation_scope``: "mlp" / "all"), None when neither
    ``reallocation`` nor ``lsa`` is on."""
    return params.get("permutation_scope") if params.get("lsa") or params.get("reallocation") else None


def stored_pattern(params: dict) -> str:
    """The pattern the stored weights follow: the ``sparsity_type``, marked ``" permuted"`` where RIA's
    permutations chose every projection's N:M groups in its own column order (``permutation_scope: all``)."""
    pattern = params.get("sparsity_type", "unstructured")
    return f"{pattern} permuted" if active_permutation_scope(params) == "all" else pattern



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


def uniform_config(sizes: list[dict], config) -> dict | None:
    """The stock-config keys of a structurally pruned model whose layers all have the same query heads, KV heads
    and MLP width and no bias the base architecture lacks (bias compensation adds o_proj / down_proj biases,
    which a stock Llama config can only express together with q/k/v or gate/up biases); None otherwise.

    ``head_dim`` is written explicitly: with fewer heads, hidden_size / num_attention_heads no longer gives it."""
    first = sizes[0]
    keys = ("num_attention_heads", "num_key_value_heads", "intermediate_size", "o_proj_bias", "down_proj_bias")
    if any(tuple(s[k] for k in keys) != tuple(first[k] for k in keys) for s in sizes):
        return None
    if first["o_proj_bias"] or first["down_proj_bias"]:
        return None
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    plain = {
        "num_attention_heads": first["num_attention_heads"],
        "num_key_value_heads": first["num_key_value_heads"],
        "intermediate_size": first["intermediate_size"],
        "head_dim": head_dim,
    }
    try:  # the base config class must accept the sizes (Gemma 3 wants hidden_size % num_attention_heads == 0)
        type(config).from_dict({**config.to_dict(), **plain})
    except Exception:  # noqa: BLE001 - any validation failure means: keep the per-layer format
        return None
    return plain


#: config.json key of a zeroed (unstructured / N:M) checkpoint: pattern and actual sparsity of every projection.
SPARSITY_KEY = "fangprune_sparsity"


def sparsity_record(model: nn.Module, pattern: str) -> dict:
    """Pattern and the actual fraction of zeros of every projection, per layer."""
    layers = []
    for layer in decoder_layers(model):
        projections = roles(layer).projections()
        layers.append({name: float((lin.weight == 0).double().mean()) for name, lin in projections.items()})
    return {"pattern": pattern, "layers": layers}


def low_rank_spec(model: nn.Module) -> list[dict] | None:
    """Per layer, the rank of every projection stored as a LowRankLinear (None when there is none)."""
    spec, any_low = [], False
    for layer in decoder_layers(model):
        ranks = {}
        for parent in (layer.self_attn, layer.mlp):
            for name, child in parent.named_children():
                if isinstance(child, remote.LowRankLinear):
                    ranks[name] = child.rank
        any_low |= bool(ranks)
        spec.append(ranks)
    return spec if any_low else None


def save_pruned(
    model: nn.Module,
    tokenizer,
    path: str | Path,
    manifest: dict,
    max_shard_size: str = SHARD_SIZE,
    structured: bool = True,
) -> None:
    """Write the checkpoint directory atomically (a partial directory never appears under ``path``).

    Structured checkpoints carry per-layer sizes and the small model code (``auto_map``). A zeroed checkpoint
    (``structured=False``: unstructured or N:M) is a standard one with its zeros, which plain
    ``AutoModelForCausalLM.from_pretrained`` loads without remote code; its config.json records the pattern and
    the actual sparsity of every projection. Shards of at most ``max_shard_size`` bound the serialisation buffer.
    """
    mtype = model.config.model_type
    if structured and mtype not in remote.CLASSES:
        raise ValueError(f"cannot write a pruned checkpoint for architecture {mtype!r}; supported: {', '.join(remote.CLASSES)}")
    fmt = "standard"
    if structured:
        sizes = layer_sizes(model)
        plain = uniform_config(sizes, model.config)
        if plain is not None:  # every layer the same: a smaller config of the base architecture, no remote code
            model.config.update(plain)
        else:
            fmt = "per_layer"
            model.config.update({
                LAYERS_KEY: sizes,
                "auto_map": {"AutoModelForCausalLM": f"{REMOTE_FILE.stem}.{remote.CLASSES[mtype].__name__}"},
            })
    else:
        pattern = stored_pattern(manifest.get("params", {}))
        model.config.update({SPARSITY_KEY: sparsity_record(model, pattern)})
    ranks = low_rank_spec(model)
    if ranks is not None:  # factorised projections: rebuilt by the model code before the weights load
        fmt = "per_layer"
        model.config.update({
            LOW_RANK_KEY: ranks,
            "auto_map": {"AutoModelForCausalLM": f"{REMOTE_FILE.stem}.{remote.CLASSES[mtype].__name__}"},
        })
    with atomic_path(path, directory=True) as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        if fmt == "per_layer":
            shutil.copyfile(REMOTE_FILE, tmp / REMOTE_FILE.name)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "pruning.json").write_text(json.dumps({**manifest, "checkpoint_format": fmt}, indent=2) + "\n")


def load_pruned(
    path: str | Path, dtype: torch.dtype = torch.float32, device_map: str | dict | None = None
) -> nn.Module:
    """Load a checkpoint written by ``save_pruned`` (or any plain HF directory) with the package's model code.

    ``device_map`` spreads it over the visible GPUs (ignored without CUDA), as in ``models.load_model``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    kwargs = device_map_kwargs(device_map)
    config = AutoConfig.from_pretrained(path)
    if getattr(config, LAYERS_KEY, None) is None and getattr(config, LOW_RANK_KEY, None) is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs).eval()
    if config.model_type not in remote.CLASSES:
        raise ValueError(f"{path}: unsupported architecture {config.model_type!r}")
    model = remote.CLASSES[config.model_type].from_pretrained(path, dtype=dtype, **kwargs)
    return model.eval()
