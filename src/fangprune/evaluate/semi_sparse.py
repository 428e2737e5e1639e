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


#: Dtypes whose torch semi-structured format is 2:4 (fp32's is 1:2, so a 2:4 fp32 weight is not representable).
SEMI_DTYPES = (torch.float16, torch.bfloat16, torch.int8)


def refusal(weight: torch.Tensor) -> str | None:
    """Why a projection stays dense (None: it can be converted): not 2:4, or a dtype whose format is not 2:4."""
    if weight.dtype not in SEMI_DTYPES:
        return (f"{str(weight.dtype).removeprefix('torch.')}: torch's semi-structured format for it is not 2:4 "
                "(fp32 is 1:2); load the checkpoint in float16 or bfloat16")
    if not is_2of4(weight):
        return "not 2:4"
    return None


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
            why = refusal(lin.weight.data)
            if why is not None:
                dense[key] = why
                continue
            original = lin.weight
            probe = torch.randn(64, lin.in_features, dtype=original.dtype, device=original.device)
            with torch.no_grad():
                want = lin(probe)
            try:
                lin.weight = nn.Parameter(to_sparse_semi_structured(original.data), requires_grad=False)
                with torch.no_grad():
                    got = lin(probe)
            except (RuntimeError, ValueError) as err:  # dtype / minimum shape limits of the kernels
                lin.weight = original
                dense[key] = str(err).splitlines()[0]
                continue
            # the converted weight must compute what the dense one did (half-precision accumulation aside)
            if not torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2 * float(want.abs().max())):
                lin.weight = original
                dense[key] = "converted weight's outputs differ from the dense weight's"
                continue
            converted.append(key)
    return {"converted": converted, "dense": dense, "backend": "cutlass" if cutlass else "cusparselt"}
