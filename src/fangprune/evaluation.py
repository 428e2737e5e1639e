"""Perplexity on WikiText-2 test: non-overlapping windows of ``seqlen`` tokens (remainder dropped), exp of the
mean next-token NLL (the Wanda/FLAP/FANG protocol; FANG uses seqlen 2048)."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from .models import place


@torch.no_grad()
def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    seqlen: int,
    device: torch.device,
    max_windows: int | None = None,
    batch_size: int = 1,
) -> dict:
    n = token_ids.numel() // seqlen
    if n == 0:
        raise ValueError(f"evaluation text has {token_ids.numel()} tokens, fewer than seqlen={seqlen}")
    if max_windows is not None:
        n = min(n, max_windows)
    windows = token_ids[: n * seqlen].reshape(n, seqlen)
    device = place(model, device)
    model.eval()
    nll, count = 0.0, 0
    for i in tqdm(range(0, n, batch_size), desc="perplexity", mininterval=5):
        ids = windows[i : i + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
        )
        nll += float(loss)
        count += ids[:, 1:].numel()
    return {"ppl": math.exp(nll / count), "nll": nll / count, "windows": n, "tokens": count + n}
