"""Inference cost of a pruned checkpoint against its dense model, measured in one process on one device.

Prefill: one forward pass over ``batch x prompt_len`` tokens. Decode: ``decode_tokens`` greedy steps with the
KV cache, one token per sequence per step. Dense and pruned runs alternate, so slow drifts of the machine hit
both alike; the speedup of each repeat is dense time / pruned time of that pair, reported as median, min and max
over the repeats (``speedups``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn

from fangprune.modeling.models import count_params, place


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _prefill_s(model: nn.Module, ids: torch.Tensor) -> float:
    _sync(ids.device)
    t0 = time.perf_counter()
    model(input_ids=ids, use_cache=False)
    _sync(ids.device)
    return time.perf_counter() - t0


@torch.no_grad()
def _decode_s(model: nn.Module, ids: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` cached greedy decode steps after the prompt (the prefill is not counted)."""
    out = model(input_ids=ids, use_cache=True)
    cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    _sync(ids.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    _sync(ids.device)
    return time.perf_counter() - t0


def speedups(dense_s: list[float], pruned_s: list[float]) -> dict:
    """Per-repeat speedups (dense / pruned seconds of each alternating pair): median, min, max, n."""
    ratios = [d / p for d, p in zip(dense_s, pruned_s)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios),
            "ratios": ratios}


def disk_bytes(path: str | Path) -> int:
    """Bytes of the weight files (safetensors shards) of a checkpoint directory."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def compare_speed(
    models: dict[str, nn.Module],
    device: torch.device,
    *,
    prompt_len: int = 128,
    decode_tokens: int = 32,
    batch_size: int = 1,
    repeats: int = 3,
    vocab_size: int | None = None,
    seed: int = 0,
) -> dict[str, dict]:
    """Median prefill and decode throughput (tokens/s) of each model, measured alternately on the same input."""
    vocab = vocab_size or min(m.config.vocab_size for m in models.values())
    ids = torch.randint(0, vocab, (batch_size, prompt_len), generator=torch.Generator().manual_seed(seed))
    inputs = {}  # the same tokens on each model's input device (models under a device_map may differ)
    for name, m in models.items():
        inputs[name] = ids.to(place(m, device))
        m.eval()
        _prefill_s(m, inputs[name][:, : min(16, prompt_len)])  # warm-up: kernels, allocator
    times = {name: {"prefill": [], "decode": []} for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            times[name]["prefill"].append(_prefill_s(m, inputs[name]))
            times[name]["decode"].append(_decode_s(m, inputs[name], decode_tokens))
    out = {}
    for name, m in models.items():
        pre, dec = statistics.median(times[name]["prefill"]), statistics.median(times[name]["decode"])
        out[name] = {
            "params": count_params(m),
            "prefill_tokens_per_s": batch_size * prompt_len / pre,
            "decode_tokens_per_s": batch_size * decode_tokens / dec,
            "prefill_s": times[name]["prefill"],
            "decode_s": times[name]["decode"],
        }
    return out
