"""Perplexity: non-overlapping windows of ``seqlen`` tokens (remainder dropped), exp of the mean next-token NLL
(the Wanda/FLAP/FANG protocol; FANG uses seqlen 2048). The mean NLL of every window is kept, so two models
evaluated on the same windows can be compared with a paired interval (``stats.paired_bootstrap``)."""

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
    window_nll = []
    for i in tqdm(range(0, n, batch_size), desc="perplexity", mininterval=5):
        ids = windows[i : i + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"
        )  # [batch, seqlen - 1]
        window_nll += loss.double().mean(1).tolist()
    nll = sum(window_nll) / n  # every window scores seqlen - 1 tokens, so this is the token mean
    return {"ppl": math.exp(nll), "nll": nll, "windows": n, "tokens": n * seqlen, "window_nll": window_nll}
