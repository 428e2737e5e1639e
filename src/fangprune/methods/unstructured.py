"""The unstructured and N:M methods of the ClearCut / Wanda / SparseGPT / RIA toolkits (one score each):

* ``magnitude``: |W_ij| (per matrix, as Wanda's magnitude baseline);
* ``wanda`` (Sun et al. 2024): |W_ij| * ||X_j||_2, compared per output row;
* ``sparsegpt`` (Frantar & Alistarh 2023): OBS reconstruction with column blocks of 128 and lazy batch updates,
  masks chosen inside each block from w^2 / [H^-1]_jj^2 (``obs.sparsegpt_prune``);
* ``ria`` (Zhang et al. 2024): relative importance (|W_ij| / sum_j |W_ij| + |W_ij| / sum_i |W_ij|) * ||X_j||^a,
  a = 0.5, per output row;
* ``clearcut``: (|W_ij| / sum_i |W_ij| + |W_ij| / sum_j |W_ij| + alpha |W_ij|^2 / (sum_j |W_ij| sum_i |W_ij|))
  * ||X_j||^a, alpha = 0.1, a = 0.5, per output row.

(sum_j: over the inputs of row i, the row sum; sum_i: over the outputs of column j, the column sum.)
"""

from __future__ import annotations

import torch

from fangprune.core.obs import dampened_inverse, sparsegpt_prune
from fangprune.core.selection import parse_pattern
from fangprune.methods.registry import Method, ParamError, register
from fangprune.methods.unstructured_base import (
    INPUT_OF,
    UNSTRUCTURED_DEFAULTS,
    UNSTRUCTURED_SCHEMA,
    UnstructuredPruner,
    check_unstructured,
)
from fangprune.modeling.checkpoint import active_permutation_scope
from fangprune.modeling.models import LayerRoles

# Scores are computed in the dtype of ``xnorm`` (fp64 for ``numerics: exact``, fp32 for ``reference``).


def wanda_score(W: torch.Tensor, xnorm: torch.Tensor) -> torch.Tensor:
    return W.abs().to(xnorm.dtype) * xnorm.to(W.device).unsqueeze(0)


def ria_score(W: torch.Tensor, xnorm: torch.Tensor, a: float = 0.5) -> torch.Tensor:
    A = W.abs().to(xnorm.dtype)
    rel = A / A.sum(dim=1, keepdim=True) + A / A.sum(dim=0, keepdim=True)
    return rel * xnorm.to(W.device).unsqueeze(0) ** a


def clearcut_score(W: torch.Tensor, xnorm: torch.Tensor, a: float = 0.5, alpha: float = 0.1) -> torch.Tensor:
    A = W.abs().to(xnorm.dtype)
    row, col = A.sum(dim=1, keepdim=True), A.sum(dim=0, keepdim=True)
    return (A / col + A / row + alpha * A**2 / (row * col)) * xnorm.to(W.device).unsqueeze(0) ** a


class MagnitudePruner(UnstructuredPruner):
    def observed(self, r: LayerRoles) -> dict:
        needs_data = self.params["reconstruction"]  # magnitude alone needs no calibration data
        return super().observed(r) if needs_data else {}

    def score(self, name, W):
        return W.abs().to(self.score_dtype)


class WandaPruner(UnstructuredPruner):
    def score(self, name, W):
        return wanda_score(W, self.input_norm(name))


class RIAPruner(UnstructuredPruner):
    def score(self, name, W):
        return ria_score(W, self.input_norm(name), self.params["a"])


class ClearCutPruner(UnstructuredPruner):
    def score(self, name, W):
        return clearcut_score(W, self.input_norm(name), self.params["a"], self.params["alpha"])


class SparseGPTPruner(UnstructuredPruner):
    needs_hessian = True

    def score(self, name, W):  # for lsa: the OBS saliency w^2 / [H^-1]_jj^2 of the dense weights
        Hinv = dampened_inverse(self.H[INPUT_OF[name]].H, self.params["percdamp"]).to(W.device)
        return W.double() ** 2 / torch.diagonal(Hinv).unsqueeze(0) ** 2

    def prune_weight(self, name, W, sp):
        nm = parse_pattern(self.params["sparsity_type"])
        W_new, _ = sparsegpt_prune(W, self.H[INPUT_OF[name]].H, sp, n_m=nm, blocksize=self.params["blocksize"],
                                   percdamp=self.params["percdamp"], mask_scope=self.params["mask_scope"])
        return W_new.to(W.dtype)


def check_sparsegpt(params: dict) -> None:
    check_unstructured(params)
    if active_permutation_scope(params) == "all":
        raise ParamError("permutation_scope", "sparsegpt chooses its N:M groups inside the OBS sweep in stored "
                         "column order; use permutation_scope: mlp")


_A = {"a": {"type": "number", "minimum": 0, "description": "Exponent of the input norm (0.5)."}}

MAGNITUDE = register(Method(
    name="magnitude", summary="Unstructured / N:M magnitude |W| (per matrix).",
    defaults={**UNSTRUCTURED_DEFAULTS, "comparison": "layer"}, schema=UNSTRUCTURED_SCHEMA,
    layer_pruner=MagnitudePruner, check=check_unstructured, structured=False,
))
WANDA = register(Method(
    name="wanda", summary="Wanda: |W| x ||X||_2 per output row.",
    defaults=UNSTRUCTURED_DEFAULTS, schema=UNSTRUCTURED_SCHEMA,
    layer_pruner=WandaPruner, check=check_unstructured, structured=False,
))
RIA = register(Method(
    name="ria", summary="RIA: relative importance x ||X||^a per output row.",
    defaults={**UNSTRUCTURED_DEFAULTS, "a": 0.5}, schema={**UNSTRUCTURED_SCHEMA, **_A},
    layer_pruner=RIAPruner, check=check_unstructured, structured=False,
))
CLEARCUT = register(Method(
    name="clearcut", summary="ClearCut: row- and column-normalised |W| + interaction term, x ||X||^a per row.",
    defaults={**UNSTRUCTURED_DEFAULTS, "a": 0.5, "alpha": 0.1},
    schema={**UNSTRUCTURED_SCHEMA, **_A, "alpha": {"type": "number", "minimum": 0, "description": "Interaction weight."}},
    layer_pruner=ClearCutPruner, check=check_unstructured, structured=False,
))
SPARSEGPT = register(Method(
    name="sparsegpt", summary="SparseGPT: OBS reconstruction in column blocks with lazy updates.",
    defaults={**UNSTRUCTURED_DEFAULTS, "blocksize": 128, "mask_scope": "block"},
    schema={**UNSTRUCTURED_SCHEMA,
            "blocksize": {"type": "integer", "minimum": 1},
            "mask_scope": {"enum": ["block", "row"], "description": "Unstructured mask per block (reference) or row."},
            "reconstruction": {"const": False, "description": "SparseGPT always reconstructs."}},
    layer_pruner=SparseGPTPruner, check=check_sparsegpt, structured=False,
))
