"""Perplexity: non-overlapping windows of ``seqlen`` tokens (remainder dropped), exp of the mean next-token NLL
(the Wanda/FLAP/FANG protocol; FANG uses seqlen 2048). The mean NLL of every window is kept, so two models
evaluated on the same windows can be compared with a paired interval (``stats.paired_bootstrap``)."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from fangprune.data import with_bos
from fangprune.modeling.lm_loss import token_nll
from fangprune.modeling.models import place


def evaluation_windows(token_ids: torch.Tensor, seqlen: int, max_windows: int | None = None,
                       bos_id: int | None = None) -> torch.Tensor:
    """The non-overlapping windows [n, seqlen] that ``perplexity`` scores (remainder dropped; with ``bos_id``,
    BOS + ``seqlen - 1`` text tokens each), the first ``max_windows`` of them."""
    text_len = seqlen - (bos_id is not None)
    n = token_ids.numel() // text_len
    if n == 0:
        raise ValueError(f"evaluation text has {token_ids.numel()} tokens, fewer than seqlen={seqlen}")
    if max_windows is not None:
        n = min(n, max_windows)
    return with_bos(token_ids[: n * text_len].reshape(n, text_len), bos_id)


@torch.no_grad()
def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    seqlen: int,
    device: torch.device,
    max_windows: int | None = None,
    batch_size: int = 1,
    bos_id: int | None = None,
) -> dict:
    """exp(mean NLL) over non-overlapping windows; with ``bos_id`` (models trained with BOS at every sequence
    start, e.g. Gemma) each window is BOS + ``seqlen - 1`` text tokens, every text token scored."""
    windows = evaluation_windows(token_ids, seqlen, max_windows, bos_id)
    n = windows.shape[0]
    device = place(model, device)
    model.eval()
    window_nll = []
    for i in tqdm(range(0, n, batch_size), desc="perplexity", mininterval=5):
        ids = windows[i : i + batch_size].to(device)
        window_nll += token_nll(model, ids).double().mean(1).tolist()  # [batch, seqlen - 1], LM head in chunks
    nll = sum(window_nll) / n  # every window scores seqlen - 1 tokens, so this is the token mean
    return {"ppl": math.exp(nll), "nll": nll, "windows": n, "tokens": n * seqlen, "bos": bos_id is not None,
            "window_nll": window_nll}
