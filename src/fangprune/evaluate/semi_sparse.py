"""torch's 2:4 semi-structured sparse kernels for zeroed 2:4 checkpoints (``speed.semi_sparse_acc``).

A 2:4 checkpoint is stored dense with its zeros (plain safetensors). At load time on a CUDA device, every
decoder-layer projection whose weight has at least 2 zeros in every group of 4 inputs gets its weight replaced by
``torch.sparse.to_sparse_semi_structured(weight)``, so ``F.linear`` runs the CUTLASS / cuSPARSELt sparse kernel.
The kernels are CUDA-only (on a CPU tensor torch raises "Only CUDA tensors are currently supported") and have
dtype and minimum-shape limits; a projection torch refuses stays dense, and the reason is reported.
"""

from __future__ import annotations

import torch
from torch import nn

from fangprune.modeling.models import decoder_layers, roles


def is_2of4(weight: torch.Tensor) -> bool:
    """At least 2 zeros in every group of 4 consecutive inputs of every output row."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight == 0).reshape(weight.shape[0], -1, 4).sum(-1) >= 2).all())


def accelerate_2of4(model: nn.Module, *, cutlass: bool = True) -> dict:
    """Convert the 2:4 projections of ``model`` (on CUDA) to semi-structured sparse weights, in place.

    Returns ``{"converted": [names], "dense": {name: reason}}``. ``cutlass=False`` uses cuSPARSELt.
    """
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    device = next(model.parameters()).device
    if device.type != "cuda":
        raise RuntimeError(f"semi_sparse_acc needs a CUDA device (torch's 2:4 kernels are CUDA-only); model is on {device}")
    SparseSemiStructuredTensor._FORCE_CUTLASS = cutlass
    converted, dense = [], {}
    for i, layer in enumerate(decoder_layers(model)):
        for name, lin in roles(layer).projections().items():
            key = f"layers.{i}.{name}"
            if not isinstance(lin, nn.Linear):
                dense[key] = f"not a plain linear ({type(lin).__name__})"
                continue
            if not is_2of4(lin.weight.data):
                dense[key] = "not 2:4"
                continue
            try:
                lin.weight = nn.Parameter(to_sparse_semi_structured(lin.weight.data), requires_grad=False)
            except (RuntimeError, ValueError) as err:  # dtype / minimum shape limits of the kernels
                dense[key] = str(err).splitlines()[0]
                continue
            converted.append(key)
    return {"converted": converted, "dense": dense, "backend": "cutlass" if cutlass else "cusparselt"}
