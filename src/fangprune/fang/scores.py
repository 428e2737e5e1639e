"""Cluster-neuron score matrix (Eq. 5): for layer l, context k and MLP channel j,

    s_kj = 1/|T_k| * sum_{t in T_k} | h_tj * dL/dh_tj |

with h the down_proj input (the intermediate activation) and T_k the calibration tokens whose MLP input falls
in context k. ``loss="full"`` (paper) uses the LM loss of every token; ``loss="last_token"`` reproduces the
reference code, whose calibration targets label only the last token of each window.

Memory: one window at a time and weights frozen, so no weight gradients are stored (the reference keeps them:
~80 GB on a 7B model). With ``recompute=True`` each decoder layer runs under non-reentrant activation
checkpointing, so the backward holds one layer's internals at a time instead of every layer's; the scores are
unchanged (tested).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from fangprune.fang.clustering import ContextClusters
from fangprune.modeling.lm_loss import causal_lm_loss
from fangprune.modeling.models import decoder_layers, place, roles

log = logging.getLogger(__name__)


def taylor_scores(
    model: nn.Module,
    windows: torch.Tensor,
    clusters: ContextClusters,
    device: torch.device,
    loss: str = "full",
    recompute: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (scores [L, K, N_n], token counts [L, K]); scores are means over each context's tokens.

    ``recompute`` trades one extra forward per layer for activation memory (layer-wise recomputation).
    """
    if loss not in ("full", "last_token"):
        raise ValueError(f"unknown score loss {loss!r}")
    device = place(model, device)
    layers = decoder_layers(model)
    k = clusters.k
    # per-layer accumulators live beside their layer, which may sit on another GPU under a device_map
    at = [roles(l).down.weight.device for l in layers]
    sums = [torch.zeros(k, roles(l).intermediate_size, dtype=torch.float64, device=d) for l, d in zip(layers, at)]
    counts = [torch.zeros(k, dtype=torch.float64, device=d) for d in at]
    ids_of: dict[int, torch.Tensor] = {}
    hooked: set[int] = set()  # recomputation re-runs the forward hooks; count each activation once
    was_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    handles = []

    def on_mlp_input(idx):
        def hook(module, args):
            if idx not in ids_of:
                ids_of[idx] = clusters.assign(idx, args[0].detach())

        return hook

    def on_down_input(idx):
        def hook(module, args):
            h = args[0]
            if idx in hooked or not h.requires_grad:
                return
            hooked.add(idx)

            def on_grad(g, _h=h.detach(), _idx=idx):
                contrib = (g.float() * _h.float()).abs().reshape(-1, _h.shape[-1])
                cid = ids_of[_idx].reshape(-1)
                sums[_idx].index_add_(0, cid, contrib.double())
                counts[_idx] += torch.bincount(cid, minlength=k).double()

            h.register_hook(on_grad)

        return hook

    def on_embeddings(module, args, out):
        return out.requires_grad_(True)  # gradients must flow to activations while weights stay frozen

    for idx, layer in enumerate(layers):
        r = roles(layer)
        handles.append(r.mlp.register_forward_pre_hook(on_mlp_input(idx)))
        handles.append(r.down.register_forward_pre_hook(on_down_input(idx)))
    handles.append(model.get_input_embeddings().register_forward_hook(on_embeddings))
    try:
        with _recomputed(layers, recompute):
            for i in tqdm(range(windows.shape[0]), desc="taylor scores", mininterval=5):
                ids = windows[i : i + 1].to(device)
                labels = ids.clone()
                if loss == "last_token":
                    labels[:, :-1] = -100
                causal_lm_loss(model, ids, labels).backward()  # LM head in chunks (large vocabularies)
                ids_of.clear()
                hooked.clear()
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(model.parameters(), was_grad):
            p.requires_grad_(g)
    scores = torch.stack([(s / c.clamp(min=1).unsqueeze(1)).cpu() for s, c in zip(sums, counts)])
    return scores.float(), torch.stack([c.cpu() for c in counts])


@contextmanager
def _recomputed(layers, enabled: bool):
    """Wrap each decoder layer's forward in non-reentrant activation checkpointing while the context is open."""
    if not enabled:
        yield
        return
    originals = [layer.forward for layer in layers]
    for layer, fwd in zip(layers, originals):
        layer.forward = partial(checkpoint, fwd, use_reentrant=False)
    try:
        yield
    finally:
        for layer, fwd in zip(layers, originals):
            layer.forward = fwd
