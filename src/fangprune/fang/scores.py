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


#: Initial loss scale of an fp16 model's backward (halved while a window's gradients overflow).
FP16_LOSS_SCALE = 2.0**16
MAX_SCALE_HALVINGS = 24


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
    # fp16 gradients underflow to zero without loss scaling (as torch.amp.GradScaler): the loss is multiplied by
    # ``scale`` and a window whose contributions are not all finite is redone at half the scale
    scale = [FP16_LOSS_SCALE if next(model.parameters()).dtype == torch.float16 else 1.0]
    pending: list = []

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
                # fp32 products of the (possibly half-precision) gradient and activation, unscaled; summed in
                # fp64 by a one-hot matrix product, which is deterministic on CUDA (index_add_ is not)
                contrib = (g.float() * _h.float()).abs().reshape(-1, _h.shape[-1]) / scale[0]
                cid = ids_of[_idx].reshape(-1)
                pending.append((_idx, cid, contrib))

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
                for _ in range(MAX_SCALE_HALVINGS + 1):
                    pending.clear()
                    (causal_lm_loss(model, ids, labels) * scale[0]).backward()  # LM head in chunks
                    ids_of.clear()
                    hooked.clear()
                    if all(bool(torch.isfinite(c).all()) for _, _, c in pending):
                        break
                    if scale[0] <= 1.0:
                        raise FloatingPointError(f"window {i}: non-finite Taylor contributions at loss scale 1")
                    scale[0] /= 2
                for idx, cid, contrib in pending:
                    onehot = nn.functional.one_hot(cid, k).to(torch.float64)
                    sums[idx] += onehot.T @ contrib.double()
                    counts[idx] += onehot.sum(0)
                pending.clear()
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
