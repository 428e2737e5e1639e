"""Physical removal of attention heads and MLP channels (Eq. 1-3): the pruned model is really smaller.

Heads are removed in whole KV groups (one KV head with the query heads sharing it), or as query heads within
groups, the same number from each group; either way a GQA layer keeps a uniform number of query heads per KV
head and the attention kernels need no change.
"""

from __future__ import annotations

import torch
from torch import nn

from fangprune.modeling.models import LayerRoles

#: Attribute of a shrunk Linear: the indices of the original input columns it keeps (not saved).
KEPT_IN = "fangprune_kept_in"


def shrink_linear(lin: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding the rows ``out_idx`` and columns ``in_idx`` of ``lin``."""
    w = lin.weight.data
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if in_idx is not None:  # which dense input columns survive (diagnostics compare against the dense layer)
        before = getattr(lin, KEPT_IN, None)
        new.__dict__[KEPT_IN] = in_idx.cpu() if before is None else before[in_idx.cpu()]
    elif getattr(lin, KEPT_IN, None) is not None:
        new.__dict__[KEPT_IN] = getattr(lin, KEPT_IN)
    if lin.bias is not None:
        b = lin.bias.data if out_idx is None else lin.bias.data.index_select(0, out_idx.to(w.device))
        new.bias.data.copy_(b)
    return new


def head_columns(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).reshape(-1)


def complement(size: int, removed: torch.Tensor) -> torch.Tensor:
    """Sorted indices in range(size) that are not in ``removed``."""
    mask = torch.ones(size, dtype=torch.bool)
    mask[removed.cpu()] = False
    return torch.nonzero(mask).squeeze(1)


def kv_group_columns(r: LayerRoles, kv_heads: torch.Tensor) -> torch.Tensor:
    """o_proj input columns (= q_proj output rows) of the query heads that share the KV heads ``kv_heads``."""
    g = r.num_heads // r.num_kv_heads
    q_heads = (kv_heads.to(torch.long).unsqueeze(1) * g + torch.arange(g)).reshape(-1)
    return head_columns(q_heads, r.head_dim)


def keep_kv_groups(r: LayerRoles, kept_kv: torch.Tensor) -> None:
    """Keep only the KV heads ``kept_kv`` (sorted) and their query heads."""
    kept_kv = kept_kv.to(torch.long).sort().values
    q_rows, kv_rows = kv_group_columns(r, kept_kv), head_columns(kept_kv, r.head_dim)
    attn = r.attn
    attn.q_proj = shrink_linear(r.q, out_idx=q_rows)
    attn.k_proj = shrink_linear(r.k, out_idx=kv_rows)
    attn.v_proj = shrink_linear(r.v, out_idx=kv_rows)
    attn.o_proj = shrink_linear(r.o, in_idx=q_rows)
    for name, value in (("num_heads", q_rows.numel() // r.head_dim), ("num_key_value_heads", kept_kv.numel())):
        if hasattr(attn, name):  # older transformers keep these attributes; newer derive them from shapes
            setattr(attn, name, value)


DEFAULT_HEAD_UNIT = "kv_group"


def head_unit_of(params: dict) -> str:
    """A method's head unit. Not among the registry defaults, so parameter sets (and the checkpoints and rerun
    decisions keyed on them) written before the option existed stay unchanged."""
    return params.get("head_unit", DEFAULT_HEAD_UNIT)


def query_units(r: LayerRoles, head_unit: str) -> bool:
    """Whether heads go as query heads within groups (only meaningful with several query heads per KV head)."""
    if head_unit not in ("kv_group", "query_head"):
        raise ValueError(f"unknown head_unit {head_unit!r}")
    return head_unit == "query_head" and r.heads_per_group > 1


def keep_query_heads(r: LayerRoles, kept_q: torch.Tensor) -> None:
    """Keep the query heads ``kept_q`` (the same number in every KV group); K and V are untouched."""
    kept_q = kept_q.to(torch.long).sort().values
    g = r.heads_per_group
    per_group = torch.bincount(kept_q // g, minlength=r.num_kv_heads)
    if not bool((per_group == per_group[0]).all()) or int(per_group[0]) == 0:
        raise ValueError(f"query heads kept per KV group must be equal and non-zero, got {per_group.tolist()}")
    rows = head_columns(kept_q, r.head_dim)
    attn = r.attn
    attn.q_proj = shrink_linear(r.q, out_idx=rows)
    attn.o_proj = shrink_linear(r.o, in_idx=rows)
    attn.num_key_value_groups = int(per_group[0])  # repeat_kv factor of this layer
    if hasattr(attn, "num_heads"):
        attn.num_heads = kept_q.numel()


def keep_channels(r: LayerRoles, kept: torch.Tensor) -> None:
    """Keep only the MLP channels ``kept`` (sorted): rows of gate/up, columns of down."""
    kept = kept.to(torch.long).sort().values
    mlp = r.mlp
    mlp.gate_proj = shrink_linear(r.gate, out_idx=kept)
    mlp.up_proj = shrink_linear(r.up, out_idx=kept)
    mlp.down_proj = shrink_linear(r.down, in_idx=kept)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = kept.numel()
