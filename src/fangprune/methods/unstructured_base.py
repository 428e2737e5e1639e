"""Shared machinery of the unstructured and N:M methods (magnitude, Wanda, SparseGPT, RIA, ClearCut).

Every projection of a decoder layer (q, k, v, o, gate, up, down) gets a mask from the method's score: the
``sparsity`` fraction of every output row (``comparison: row``; Wanda, RIA, ClearCut) or of the whole matrix
(``layer``; magnitude, as the reference toolkits), or N of every M consecutive inputs (``sparsity_type: N:M``).
The weights stay dense with zeros, so checkpoints load with plain ``from_pretrained``. Options:

* ``reconstruction``: after the selection, SparseGPT's OBS update with that fixed mask (``obs.sparsegpt_prune``);
* ``reallocation`` and ``lsa`` (N:M only): RIA's column permutations before the N:M selection, the heuristic
  channel reallocation (``selection.reallocation_permutation``, bands by ``importance_score``) and its refinement
  by linear sum assignment (``selection.lsa_permutation``, from the reallocation when both are on). Where the
  permutation acts is ``permutation_scope``:

  - ``mlp`` (default): the MLP's intermediate channels are physically reordered (gate/up rows and down columns
    together), so the model computes the same function and the stored down_proj is exactly N:M; the other
    projections read the residual stream, whose order one layer cannot change, and are masked as stored.
  - ``all`` (the RIA reference): every projection chooses its N:M groups in its own permuted column order and
    the mask is mapped back, so stored weights are N:M only under that permutation (recorded as
    ``"N:M permuted"``): no torch 2:4 kernel can use them without permuting the inputs at run time.
* ``numerics``: ``exact`` (default) computes ||X_j||^2 as fp64 sums and the scores in fp64, N:M ties to the
  lower column; ``reference`` repeats the Wanda / RIA / llm-compressor code: the fp32 running mean
  ||x_j||^2 / n over calibration windows, fp32 scores and ``torch.topk`` inside N:M groups. Both rank the same
  exact scores; they differ where two scores agree to fp32 rounding, which N:M groups (one decision per group of
  M, ~150 per row) meet far more often than a row's single unstructured cut.
* ``low_rank: {rank_ratio, targets}``: after pruning, the target attention projections are replaced by a rank-r
  SVD factorisation of their pruned weights, r = round(rank_ratio * min(out, in)), stored as two smaller linears
  (``remote.modeling_fangprune.LowRankLinear``; such checkpoints need the project's loader or remote code).

Inputs of q/k/v and of gate/up are the same tensors, so one statistic serves each pair of hooks.
"""

from __future__ import annotations

import torch

from fangprune.core.obs import HessianAccumulator, sparsegpt_prune
from fangprune.core.selection import (
    lsa_permutation,
    parse_pattern,
    prune_mask,
    reallocation_permutation,
)
from fangprune.methods.registry import ParamError
from fangprune.modeling.checkpoint import active_permutation_scope, stored_pattern
from fangprune.modeling.models import LayerRoles
from fangprune.modeling.remote.modeling_fangprune import LowRankLinear

INPUT_OF = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "o": "o", "gate": "mlp_in", "up": "mlp_in", "down": "down"}
PATTERNS = ["unstructured", "1:4", "2:4", "3:4", "4:8"]

#: Parameters every unstructured method accepts.
UNSTRUCTURED_DEFAULTS = {
    "allocation": "uniform",
    "fc_lambda": 0.5,
    "fc_bound": True,
    "sparsity_type": "unstructured",
    "comparison": "row",
    "reconstruction": False,
    "lsa": False,
    "reallocation": False,
    "importance_score": "sum",
    "permutation_scope": "mlp",
    "percdamp": 0.01,
    "numerics": "exact",
    "low_rank": None,
}
UNSTRUCTURED_SCHEMA = {
    "sparsity_type": {"enum": PATTERNS, "description": "unstructured (ratio = the sparsity) or N zeros in every M inputs."},
    "comparison": {"enum": ["row", "layer"], "description": "Unstructured masks per output row or per matrix."},
    "reconstruction": {"type": "boolean", "description": "SparseGPT's OBS weight update after the selection."},
    "lsa": {"type": "boolean", "description": "RIA's channel permutation by linear sum assignment before N:M."},
    "reallocation": {"type": "boolean", "description": "RIA's heuristic channel reallocation before N:M."},
    "importance_score": {
        "enum": ["sum", "retained_degree_unstructured", "retained_degree_per_outneuron"],
        "description": "Column importance that orders the reallocation's bands (RIA's --importance_score).",
    },
    "permutation_scope": {
        "enum": ["mlp", "all"],
        "description": "mlp: reorder the MLP channels (exact stored N:M); all: every projection, mask mapped back (reference).",
    },
    "numerics": {
        "enum": ["exact", "reference"],
        "description": "exact: fp64 input norms and scores; reference: the Wanda/llm-compressor fp32 running "
        "mean and topk (no effect on sparsegpt, whose OBS sweep has its own numerics).",
    },
    "low_rank": {
        "type": ["object", "null"],
        "additionalProperties": False,
        "required": ["rank_ratio"],
        "properties": {
            "rank_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "targets": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["q", "k", "v", "o"]}},
        },
        "description": "SVD of the attention projections after pruning: {rank_ratio, targets (default q/k/v/o)}.",
    },
}


def factorise(lin, rank_ratio: float) -> LowRankLinear:
    """A LowRankLinear holding the best rank-r approximation (truncated SVD) of ``lin``'s weight."""
    W = lin.weight.data.double()
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    rank = max(1, round(rank_ratio * min(W.shape)))
    new = LowRankLinear(lin.in_features, lin.out_features, rank, lin.bias is not None,
                        device=lin.weight.device, dtype=lin.weight.dtype)
    new.down.weight.data = (S[:rank, None] * Vh[:rank]).to(lin.weight.dtype)
    new.up.weight.data = U[:, :rank].contiguous().to(lin.weight.dtype)
    if lin.bias is not None:
        new.up.bias.data = lin.bias.data.clone()
    return new


def check_unstructured(params: dict) -> None:
    for key in ("lsa", "reallocation"):
        if params[key] and parse_pattern(params["sparsity_type"]) is None:
            raise ParamError(key, f"{key} permutes channels for an N:M pattern; it needs sparsity_type N:M")


class UnstructuredPruner:
    """Masks every projection of one layer by ``score`` (subclasses) and the pattern; optional reconstruction."""

    needs_hessian = False

    def __init__(self, params: dict, layer_idx: int, clusters=None, groups=None):
        self.params = params
        self.layer_idx = layer_idx
        self.sq: dict[str, torch.Tensor] = {}
        self.windows: dict[str, int] = {}
        self.reference = params.get("numerics", "exact") == "reference"
        self.score_dtype = torch.float32 if self.reference else torch.float64
        self.H = {name: HessianAccumulator() for name in set(INPUT_OF.values())}

    def observed(self, r: LayerRoles) -> dict:
        return {"attn_in": r.q, "o": r.o, "mlp_in": r.gate, "down": r.down}

    def observe(self, name: str, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])
        if self.reference:  # fp32 running mean of ||x_j||^2 per window, in the reference code's order
            seen, added = self.windows.get(name, 0), (x.shape[0] if x.dim() == 3 else 1)
            sq = self.sq.get(name, torch.zeros(flat.shape[1], device=flat.device)) * (seen / (seen + added))
            self.windows[name] = seen + added
            self.sq[name] = sq + torch.norm(flat.t().float(), p=2, dim=1) ** 2 / self.windows[name]
        else:
            self.sq[name] = self.sq.get(name, 0) + (flat.double() ** 2).sum(0)
        if self.needs_hessian or self.params["reconstruction"]:
            self.H[name].add(flat)

    def input_norm(self, name: str) -> torch.Tensor:
        """||X_j||_2 of every input channel of projection ``name`` over the calibration tokens (``reference``:
        divided by the square root of the window count, which ranks the same)."""
        return torch.sqrt(self.sq[INPUT_OF[name]])

    def score(self, name: str, W: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def permutes(self, scope: str) -> bool:
        return active_permutation_scope(self.params) == scope

    def permutation(self, scores: torch.Tensor) -> torch.Tensor:
        """The column order RIA's reallocation and/or LSA choose for ``scores`` (on the CPU)."""
        nm = parse_pattern(self.params["sparsity_type"])
        scores = scores.cpu()
        perm = None
        if self.params["reallocation"]:
            perm = reallocation_permutation(scores, *nm, self.params["importance_score"])
        if self.params["lsa"]:
            perm = lsa_permutation(scores, *nm, start=perm)
        return perm

    def mask(self, name: str, W: torch.Tensor, sp: float) -> torch.Tensor:
        scores = self.score(name, W)
        if self.permutes("all"):
            perm = self.permutation(scores).to(scores.device)
            mask = torch.empty_like(scores, dtype=torch.bool)
            mask[:, perm] = prune_mask(scores[:, perm], self.params["sparsity_type"], sp, nm_select=self.nm_select)
            return mask
        return prune_mask(scores, self.params["sparsity_type"], sp, self.params["comparison"], self.nm_select)

    @property
    def nm_select(self) -> str:
        return "topk" if self.reference else "sort"

    def prune_weight(self, name: str, W: torch.Tensor, sp: float) -> torch.Tensor:
        """The pruned weight (zeros at the mask), reconstructed if asked."""
        mask = self.mask(name, W, sp)
        if self.params["reconstruction"]:
            W_new, _ = sparsegpt_prune(W, self.H[INPUT_OF[name]].H, sp, mask=mask, percdamp=self.params["percdamp"])
            return W_new.to(W.dtype)
        return W.masked_fill(mask.to(W.device), 0)

    def prune(self, r: LayerRoles, sp: float) -> dict:
        if self.permutes("mlp"):
            self._permute_mlp(r)
        zeros = total = 0
        actual = {}
        for name, lin in r.projections().items():
            W = lin.weight.data
            lin.weight.data = self.prune_weight(name, W, sp).to(W.dtype)
            z = int((lin.weight.data == 0).sum())
            actual[name] = z / lin.weight.numel()
            zeros, total = zeros + z, total + lin.weight.numel()
        out = {"pattern": stored_pattern(self.params), "linear_sparsity": actual, "achieved_sparsity": zeros / total}
        low_rank = self.params.get("low_rank")
        if low_rank:
            ranks = {}
            for name in low_rank.get("targets", ["q", "k", "v", "o"]):
                new = factorise(getattr(r, name), low_rank["rank_ratio"])
                setattr(r.attn, f"{name}_proj", new)
                ranks[f"{name}_proj"] = new.rank
            out["low_rank"] = ranks
        return out

    def _permute_mlp(self, r: LayerRoles) -> None:
        """Reorder the MLP's intermediate channels so down_proj's N:M selection keeps more score."""
        perm = self.permutation(self.score("down", r.down.weight.data)).to(r.down.weight.device)
        for lin in (r.gate, r.up):
            lin.weight.data = lin.weight.data[perm]
            if lin.bias is not None:
                lin.bias.data = lin.bias.data[perm]
        r.down.weight.data = r.down.weight.data[:, perm]
        self.sq["down"] = self.sq["down"][perm.to(self.sq["down"].device)]
        if self.H["down"].H is not None:
            p = perm.to(self.H["down"].H.device)
            self.H["down"].H = self.H["down"].H[p][:, p]
