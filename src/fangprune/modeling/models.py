"""Model loading (hub id, local directory, GGUF) and role-based access to decoder layers.

Paper section "Preliminary: Pruning of Transformer": a decoder block is multi-head attention (q, k, v, o) plus a
gated MLP (gate, up, down). Pruning removes attention heads (rows of q/k/v, columns of o) and MLP channels
(rows of gate/up, columns of down).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fangprune.modeling.sources import (
    NESTED_TEXT,
    SUPPORTED_MODEL_TYPES,
    resolve_source,
)

log = logging.getLogger(__name__)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


#: Set to 1 to run on the CPU although the scheduler allocated GPUs (a cluster whose GPUs are placeholders for
#: scheduling, such as a test cluster's fake GRES).
CPU_FALLBACK_ENV = "FANG_CPU_FALLBACK"
#: Environment variables through which a scheduler hands a job its GPUs.
GPU_ALLOCATION_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


def allocated_gpus() -> str | None:
    """The scheduler's GPU allocation of this job (the first variable set to a GPU list), else None."""
    for var in GPU_ALLOCATION_VARS:
        value = os.environ.get(var, "").strip()
        if value and value not in ("-1", "NoDevFiles", "0" if var == "SLURM_GPUS_ON_NODE" else "\0"):
            return f"{var}={value}"
    return None


def pick_device(name: str = "auto") -> torch.device:
    """The job's compute device. ``auto``: CUDA when usable, else the CPU, except that a job the scheduler gave
    GPUs to fails rather than run on the CPU under GPU-sized time limits (driver too old, wrong node).
    ``cuda:N`` beyond the visible GPUs of a job (a one-GPU allocation shows one GPU, cuda:0) is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        given = allocated_gpus()
        if given is not None and os.environ.get(CPU_FALLBACK_ENV) != "1":
            raise RuntimeError(f"this job was given GPUs ({given}) but CUDA is not usable here (driver, CUDA "
                               f"build of torch or node); refusing to run on the CPU. Set 'device: cpu' (or "
                               f"{CPU_FALLBACK_ENV}=1 where the GPUs are placeholders) to do so")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r}: this job sees {torch.cuda.device_count()} GPU(s) (cuda:0 .. "
                               f"cuda:{torch.cuda.device_count() - 1}); a scheduler's allocation renumbers them "
                               "from 0, so use 'device: cuda' or 'auto'")
        return dev
    return torch.device(name)


def is_dispatched(model: nn.Module) -> bool:
    """True when accelerate placed the model over several devices (``device_map``)."""
    devices = set(getattr(model, "hf_device_map", {}).values())
    return len(devices) > 1


def place(model: nn.Module, device: torch.device) -> torch.device:
    """Move ``model`` to ``device`` unless it is dispatched over several devices; return its input device."""
    if is_dispatched(model):
        return model.get_input_embeddings().weight.device
    model.to(device)
    return device


def load_tokenizer(source: str, revision: str | None = None):
    from transformers import AutoTokenizer

    src = resolve_source(source)
    kwargs = {"gguf_file": src["gguf_file"]} if src["gguf_file"] else {}
    return AutoTokenizer.from_pretrained(src["path"], revision=revision, **kwargs)


SHARD_SIZE = "100MB"  # prepared and pruned checkpoints: bounded read buffers when loaded without mmap


def _supports_disable_mmap() -> bool:
    import inspect

    from transformers import PreTrainedModel

    return "disable_mmap" in inspect.signature(PreTrainedModel.from_pretrained).parameters


def device_map_kwargs(device_map: str | dict | None) -> dict:
    """``from_pretrained`` arguments for an accelerate device map; none without CUDA, so one config runs anywhere."""
    if device_map is None:
        return {}
    if not torch.cuda.is_available():
        log.info("device_map=%r ignored: no CUDA device", device_map)
        return {}
    return {"device_map": device_map}


def load_model(
    source: str, dtype: str = "float32", revision: str | None = None, device_map: str | dict | None = None
) -> nn.Module:
    """Load a causal LM on CPU in ``dtype``; GGUF weights are de-quantised.

    ``device_map`` (e.g. "auto", "balanced") spreads a model that does not fit one GPU over all visible GPUs
    (accelerate); it applies only when CUDA is available, so the same config also runs on a CPU machine.
    Local safetensors are read shard by shard into private memory rather than memory-mapped: a pruning job
    replaces every layer, and mapped pages of the dense weights would stay resident until the end (measured:
    +513 MB peak RSS on the default model).
    """
    from transformers import AutoModelForCausalLM

    src = resolve_source(source)
    nested = _nested_text_dir(src, revision)
    if nested is not None:  # a multimodal checkpoint: its text decoder only
        from fangprune.modeling.nested_text import load_text_model

        model = load_text_model(nested, DTYPES[dtype])
        check_supported(model)
        return model
    kwargs = {"gguf_file": src["gguf_file"]} if src["gguf_file"] else {}
    if src["kind"] == "dir" and _supports_disable_mmap():
        kwargs["disable_mmap"] = True
    kwargs.update(device_map_kwargs(device_map))
    model = AutoModelForCausalLM.from_pretrained(
        src["path"], revision=revision, dtype=DTYPES[dtype], low_cpu_mem_usage=True, **kwargs
    )
    if src["gguf_file"]:
        # A de-quantised GGUF model is a plain model; drop the quantizer so it can be saved and pruned.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.config._is_quantized = False
    model.eval()
    check_supported(model)
    return model


def _nested_text_dir(src: dict, revision: str | None) -> Path | None:
    """Local directory of a multimodal checkpoint whose config nests the text model (hub ids are downloaded
    first, weights and configs only), or None for any other source."""
    if src["kind"] not in ("dir", "hub"):
        return None
    if src["kind"] == "dir":
        cfg = json.loads((Path(src["path"]) / "config.json").read_text())
        return Path(src["path"]) if cfg.get("model_type") in NESTED_TEXT else None
    from transformers import AutoConfig

    if AutoConfig.from_pretrained(src["path"], revision=revision).model_type not in NESTED_TEXT:
        return None
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(src["path"], revision=revision,
                                  allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.jinja"]))


#: Families trained with a BOS token at the start of every sequence: windows begin with BOS for them.
BOS_FAMILIES = ("gemma", "gemma2", "gemma3", "gemma3_text")


def needs_bos(model_type: str) -> bool:
    return model_type in BOS_FAMILIES


def check_supported(model: nn.Module) -> None:
    mtype = getattr(model.config, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {mtype!r} ({type(model).__name__}); supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.model.layers


#: Role names of a decoder block's projections (attention q/k/v/o, MLP gate/up/down).
PROJECTION_NAMES = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass
class LayerRoles:
    """The modules of one decoder block, by role."""

    layer: nn.Module
    attn: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    mlp: nn.Module
    gate: nn.Linear
    up: nn.Linear
    down: nn.Linear
    attn_norm: nn.Module
    mlp_norm: nn.Module

    @property
    def head_dim(self) -> int:
        return int(self.attn.head_dim)

    @property
    def num_heads(self) -> int:
        return self.q.out_features // self.head_dim

    @property
    def num_kv_heads(self) -> int:
        return self.k.out_features // self.head_dim

    @property
    def intermediate_size(self) -> int:
        return self.down.in_features

    def attention_params(self) -> int:
        return sum(p.numel() for m in (self.q, self.k, self.v, self.o) for p in m.parameters())

    def mlp_params(self) -> int:
        return sum(p.numel() for m in (self.gate, self.up, self.down) for p in m.parameters())

    def kv_unit_params(self) -> int:
        """Parameters removed with one KV group (a KV head and the query heads sharing it)."""
        if self.num_kv_heads == 0:
            return 0
        return self.attention_params() // self.num_kv_heads - (
            self.o.bias.numel() // self.num_kv_heads if self.o.bias is not None else 0
        )

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_kv_heads if self.num_kv_heads else 0

    def query_unit_params(self) -> int:
        """Parameters removed with one query head from every KV group (q rows and bias, o_proj columns)."""
        per_head = self.head_dim * (self.q.in_features + self.o.out_features)
        if self.q.bias is not None:
            per_head += self.head_dim
        return self.num_kv_heads * per_head

    def projections(self) -> dict[str, nn.Linear]:
        """The seven projections by role name (q, k, v, o, gate, up, down)."""
        return {name: getattr(self, name) for name in PROJECTION_NAMES}

    def channel_params(self) -> int:
        """Parameters removed with one MLP channel (gate row, up row, down column)."""
        h = self.down.out_features
        bias = sum(1 for m in (self.gate, self.up) if m.bias is not None)
        return 3 * h + bias


def roles(layer: nn.Module) -> LayerRoles:
    attn, mlp = layer.self_attn, layer.mlp
    return LayerRoles(
        layer=layer,
        attn=attn,
        q=attn.q_proj,
        k=attn.k_proj,
        v=attn.v_proj,
        o=attn.o_proj,
        mlp=mlp,
        gate=mlp.gate_proj,
        up=mlp.up_proj,
        down=mlp.down_proj,
        attn_norm=layer.input_layernorm,
        # Gemma 2/3 normalise the attention output (post_attention_layernorm) and the MLP input separately
        mlp_norm=getattr(layer, "pre_feedforward_layernorm", None) or layer.post_attention_layernorm,
    )


def block_params(model: nn.Module) -> int:
    """Parameters of all attention and MLP projections (the pruned blocks)."""
    total = 0
    for layer in decoder_layers(model):
        r = roles(layer)
        total += r.attention_params() + r.mlp_params()
    return total


def block_zero_frac(model: nn.Module) -> float:
    """Fraction of zero entries in the projection weights (biases excluded): the actual sparsity that
    unstructured and N:M pruning leave in dense tensors."""
    zeros = total = 0
    for layer in decoder_layers(model):
        for m in roles(layer).projections().values():
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prepare_model(source: str, out_dir: str | Path, dtype: str = "float32", revision: str | None = None,
                  max_shard_size: str = SHARD_SIZE) -> dict:
    """Convert ``source`` into a plain local HF directory (weights + tokenizer) so later jobs load it fast.

    GGUF de-quantisation takes ~30 s per load; doing it once here saves it in every downstream job.
    """
    out_dir = Path(out_dir)
    original, src = source, resolve_source(source)
    if src["kind"] == "random":
        # Built in memory and saved once: saving it first in the default layout and then re-saving sharded
        # left a stale full-size model.safetensors beside the shards (13 GiB on disk for the 70B preset).
        from fangprune.modeling.sources import random_spec
        from fangprune.modeling.tiny import SMOLLM2_GGUF, random_model

        arch, overrides = random_spec(src["path"])
        tok = load_tokenizer(SMOLLM2_GGUF)
        model = random_model(arch, tok, **overrides).to(DTYPES[dtype]).eval()
        check_supported(model)
    else:
        model = load_model(source, dtype=dtype, revision=revision)
        tok = load_tokenizer(source, revision=revision)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    tok.save_pretrained(out_dir)
    return {
        "source": original,
        "random_init": src["kind"] == "random",
        "revision": revision,
        "dtype": dtype,
        "model_type": model.config.model_type,
        "num_layers": len(decoder_layers(model)),
        "params": count_params(model),
        "block_params": block_params(model),
    }
