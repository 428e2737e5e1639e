"""Per-layer importance measures other than functional complexity, for the allocation ablation (paper Table 7).

* ``owl``: OWL's layer-wise outlier ratio (Yin et al. 2024) on the dense model: for every linear of block l,
  A_ij = |W_ij| * ||X_j||_2 (the Wanda score); the ratio is the fraction of the block's entries with
  A_ij > M * mean(A) (M = 5), all the block's linears pooled. Layers with more outliers are pruned less.
* ``taylor``: first-order Taylor sensitivity of the LM loss to each block, I_l = sum_{w in block l} |w dL/dw|
  with the gradient accumulated over the calibration windows (LLM-Pruner's element-wise Taylor, pooled per block).

Both map to sparsities exactly as FC does in Eq. 8 (``allocation.importance_allocation``): min-max scaled to
[0, 2 lambda], sp_l = p - (I^_l - mean I^).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from fangprune.core.engine import input_hooks
from fangprune.modeling.lm_loss import causal_lm_loss
from fangprune.modeling.models import decoder_layers, place, roles


def _block_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    return roles(layer).projections()


@torch.no_grad()
def outlier_ratios(engine, m: float = 5.0) -> list[float]:
    """OWL layer outlier ratio (fraction, not percent) of every decoder block, dense layer-wise pass."""
    ratios = []
    for idx, layer in engine.visit("outlier ratios"):
        linears = _block_linears(layer)
        sq: dict[str, torch.Tensor] = {}

        def observe(name, x, _sq=sq):
            x = x.reshape(-1, x.shape[-1]).double()
            _sq[name] = _sq.get(name, 0) + (x * x).sum(0)

        with input_hooks(linears, observe):
            outs = engine.forward_layer(idx)
        scores = torch.cat([
            (lin.weight.data.double().abs() * torch.sqrt(sq[name]).to(lin.weight.device)).flatten()
            for name, lin in linears.items()
        ])
        ratios.append(float((scores > m * scores.mean()).double().mean()))
        engine.advance(outs)
    return ratios


def taylor_sensitivity(model: nn.Module, windows: torch.Tensor, device: torch.device) -> list[float]:
    """I_l = sum over block l's projection weights of |w * dL/dw|, gradient summed over all windows."""
    device = place(model, device)
    params = [[lin.weight for lin in _block_linears(layer).values()] for layer in decoder_layers(model)]
    flat = {id(p) for ps in params for p in ps}
    for p in model.parameters():
        p.requires_grad_(id(p) in flat)
        p.grad = None
    model.eval()
    # the gradient sums live in fp32 on the host: a half-precision model's .grad would accumulate in its own
    # dtype, and the device would hold a second copy of every projection for the whole run
    sums = [[torch.zeros(p.shape, dtype=torch.float32) for p in ps] for ps in params]
    for i in tqdm(range(windows.shape[0]), desc="taylor sensitivity", mininterval=5):
        ids = windows[i : i + 1].to(device)
        causal_lm_loss(model, ids).backward()
        for ps, acc in zip(params, sums):
            for p, a in zip(ps, acc):
                a += p.grad.float().cpu()
                p.grad = None
    out = [float(sum((p.detach().double().cpu() * a.double()).abs().sum() for p, a in zip(ps, acc)))
           for ps, acc in zip(params, sums)]
    for p in model.parameters():
        p.grad = None
        p.requires_grad_(False)
    return out
