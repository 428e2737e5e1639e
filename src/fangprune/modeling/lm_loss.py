"""Next-token losses computed from the final hidden states with the LM head applied a chunk of tokens at a time.

A large vocabulary makes full logits the biggest tensor of a step (Gemma 3: 262,144 entries per token, 537 MB per
512-token window in fp32, and again for its gradient). Here the head runs on ``chunk`` tokens at a time; with
gradients on, each chunk is recomputed in the backward (activation checkpointing), so only the hidden states
are kept. The logits match the model's own forward, final-logit soft-capping included (Gemma 2/3).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

#: Logit entries per chunk (2^26 fp32 = 256 MB): 256 tokens for Gemma 3's vocabulary, 1365 for SmolLM2's.
CHUNK_ENTRIES = 2**26


def chunk_tokens(model: nn.Module) -> int:
    return max(1, CHUNK_ENTRIES // model.config.vocab_size)


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """LM-head logits of ``hidden`` as the model's forward computes them (fp32)."""
    logits = model.lm_head(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _chunk_nll(model: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head_logits(model, hidden)
    # a tied LM head under a device map may sit on another device than the final norm's output
    targets = targets.to(logits.device)
    return nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")


def token_nll(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor | None = None, chunk: int | None = None):
    """Per-token NLL [B, T-1] of predicting labels[:, 1:] (default: the inputs) from positions 0..T-2; tokens
    labelled -100 get 0. Differentiable when gradients are enabled."""
    labels = input_ids if labels is None else labels
    hidden = model.model(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    targets = labels[:, 1:].to(hidden.device)
    chunk = chunk or chunk_tokens(model)
    parts = []
    for s in range(0, hidden.shape[1], chunk):
        h, t = hidden[:, s : s + chunk], targets[:, s : s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(checkpoint(_chunk_nll, model, h, t, use_reentrant=False))
        else:
            parts.append(_chunk_nll(model, h, t))
    return torch.cat(parts, dim=1)


def causal_lm_loss(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor | None = None, chunk=None):
    """Mean next-token loss over the labelled tokens (as ``model(..., labels=...).loss``), chunked."""
    labels = input_ids if labels is None else labels
    nll = token_nll(model, input_ids, labels, chunk)
    mask = (labels[:, 1:] != -100).to(nll.device)
    return nll.sum() / mask.sum().clamp(min=1)
