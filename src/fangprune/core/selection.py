"""Budgets and selection shared by every method: how many units a layer loses, and which ones.

Structured budgets (heads and MLP channels per layer at a target sparsity), lowest-k selection (global, inside
every KV group) and the masks of unstructured pruning (per-row ratio, N:M along the input dimension). Methods
import from here; nothing here imports a method, so imports flow one way.
"""

from __future__ import annotations

import math

import torch

from fangprune.core.surgery import DEFAULT_HEAD_UNIT, head_unit_of, query_units
from fangprune.modeling.models import LayerRoles

# --- structured budgets -------------------------------------------------------------------------------------


def unit_budget(r: LayerRoles, sp: float, head_unit: str = DEFAULT_HEAD_UNIT) -> int:
    """Head units removed at sparsity ``sp``: floor(sp * #units), never all of them.

    A unit is a KV group, or with ``head_unit="query_head"`` one query head from every KV group.
    """
    n = r.heads_per_group if query_units(r, head_unit) else r.num_kv_heads
    return min(math.floor(sp * n + 1e-9), n - 1)


def unit_params(r: LayerRoles, head_unit: str = DEFAULT_HEAD_UNIT) -> int:
    return r.query_unit_params() if query_units(r, head_unit) else r.kv_unit_params()


def channel_budget(r: LayerRoles, sp: float, n_units: int, head_unit: str = DEFAULT_HEAD_UNIT) -> int:
    """MLP channels to remove so the layer loses sp of its parameters when n_units head units go."""
    spend = sp * (r.attention_params() + r.mlp_params()) - n_units * unit_params(r, head_unit)
    return max(0, round(spend / r.channel_params()))


def layer_budget(r: LayerRoles, sp: float, params: dict, max_channels: int) -> tuple[int, int]:
    """(head units, MLP channels) to remove from one layer at sparsity ``sp``.

    ``module_balance="layer_params"``: floor(sp * #units) units go (never all), and MLP channels take the
    rest of the layer's parameter budget sp * (attention + MLP params). ``"per_module"`` (reference): the same
    ratio for heads (floor) and channels (floor).
    """
    head_unit = head_unit_of(params)
    n_units = unit_budget(r, sp, head_unit) if params["prune_attention"] else 0
    n = r.intermediate_size
    if params["module_balance"] == "per_module":
        n_channels = math.floor(sp * n + 1e-9)
    else:
        n_channels = channel_budget(r, sp, n_units, head_unit)
    n_channels = round_to_width_multiple(n, n_channels, params.get("width_multiple", 1), max_channels)
    if n_channels > max_channels:
        raise ValueError(
            f"sparsity {sp:.3f} needs {n_channels} of {n} MLP channels but at most {max_channels} can be removed"
        )
    return n_units, n_channels


def round_to_width_multiple(width: int, n_channels: int, multiple: int, max_channels: int) -> int:
    """Channels to remove so the kept width ``width - n_channels`` is the multiple of ``multiple`` nearest to it
    (at least one multiple, at most the largest multiple <= ``width``); where removing that many would exceed
    ``max_channels``, the next larger kept width that is a multiple. ``multiple`` 1 changes nothing."""
    if multiple <= 1:
        return n_channels
    top = width // multiple * multiple
    if top == 0:
        raise ValueError(f"MLP width {width} is smaller than width_multiple {multiple}")
    kept = min(max(multiple, round((width - n_channels) / multiple) * multiple), top)
    while width - kept > max_channels and kept + multiple <= top:
        kept += multiple
    return width - kept


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one (the larger shares first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# --- structured selection -----------------------------------------------------------------------------------


def lowest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n lowest scores (stable, sorted ascending by index)."""
    if n <= 0:
        return torch.empty(0, dtype=torch.long)
    return torch.argsort(scores, stable=True)[:n].sort().values.cpu()


def lowest_per_group(scores: torch.Tensor, heads_per_group: int, n: int) -> torch.Tensor:
    """Query heads to remove: the n lowest-scoring heads inside every KV group (sorted)."""
    groups = scores.reshape(-1, heads_per_group)
    local = torch.argsort(groups, dim=1, stable=True)[:, :n].cpu()
    base = torch.arange(groups.shape[0]).unsqueeze(1) * heads_per_group
    return (local + base).reshape(-1).sort().values


def unit_scores(channel: torch.Tensor, r: LayerRoles, reduce: str = "sum") -> torch.Tensor:
    """Pool o_proj input-channel scores over each KV group's query-head channels."""
    per_unit = channel.reshape(r.num_kv_heads, -1)
    return per_unit.sum(1) if reduce == "sum" else per_unit.mean(1)


# --- unstructured and N:M masks -----------------------------------------------------------------------------


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"unstructured"`` -> None; ``"2:4"`` -> (2, 4): N zeros in every M consecutive inputs."""
    if pattern == "unstructured":
        return None
    n, _, m = pattern.partition(":")
    n, m = int(n), int(m)
    if not 0 < n < m:
        raise ValueError(f"N:M pattern needs 0 < N < M, got {pattern!r}")
    return n, m


def row_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune mask (True = zero) of the round(ratio * in) lowest scores of every output row."""
    k = int(round(ratio * scores.shape[1]))
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        idx = torch.argsort(scores, dim=1, stable=True)[:, :k]
        mask.scatter_(1, idx, True)
    return mask


def nm_mask(scores: torch.Tensor, n: int, m: int, select: str = "sort") -> torch.Tensor:
    """Prune mask with exactly ``n`` zeros (the lowest scores) in every group of ``m`` consecutive inputs.

    ``select="sort"`` breaks ties towards the lower column (stable sort); ``"topk"`` takes ``torch.topk``'s
    choice, as the Wanda / llm-compressor code does (it differs only on exactly equal scores)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"{cols} input columns are not a multiple of M={m}")
    grouped = scores.reshape(rows, cols // m, m)
    if select == "topk":
        idx = torch.topk(grouped, n, dim=2, largest=False)[1]
    else:
        idx = torch.argsort(grouped, dim=2, stable=True)[..., :n]
    mask = torch.zeros_like(grouped, dtype=torch.bool)
    mask.scatter_(2, idx, True)
    return mask.reshape(rows, cols)


def layer_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune mask of the round(ratio * numel) lowest scores of the whole matrix (magnitude pruning's layer scope)."""
    k = int(round(ratio * scores.numel()))
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        mask[torch.argsort(scores.flatten(), stable=True)[:k]] = True
    return mask.reshape(scores.shape)


def prune_mask(scores: torch.Tensor, pattern: str, ratio: float, scope: str = "row",
               nm_select: str = "sort") -> torch.Tensor:
    """The mask of ``pattern`` ("unstructured": ``ratio`` of every row, or of the matrix with ``scope="layer"``;
    "N:M": N of every M consecutive inputs, chosen by ``nm_select`` as in ``nm_mask``)."""
    nm = parse_pattern(pattern)
    if nm is not None:
        return nm_mask(scores, *nm, select=nm_select)
    return layer_mask(scores, ratio) if scope == "layer" else row_mask(scores, ratio)


def reallocation_permutation(scores: torch.Tensor, n: int, m: int, importance: str = "sum") -> torch.Tensor:
    """RIA's heuristic channel reallocation: a column order that puts one column of every importance band in
    each group of ``m``.

    Columns are ranked by importance (ascending) and cut into ``m`` equal bands; position p of every N:M group
    takes band p, alternate bands in reverse order (a snake), so no group holds only strong or only weak
    columns. ``importance``: ``"sum"`` (the column's total score, the reference default),
    ``"retained_degree_unstructured"`` / ``"retained_degree_per_outneuron"`` (the score a column keeps under an
    unstructured n/m mask of the matrix / of every row, ties by the number of its entries that mask prunes).
    Applied unconditionally, as the reference. Returns ``perm`` (permuted = scores[:, perm]).
    """
    cols = scores.shape[1]
    if cols % m:
        raise ValueError(f"{cols} input columns are not a multiple of M={m}")
    if importance == "sum":
        order = torch.argsort(scores.sum(0), stable=True)
    elif importance in ("retained_degree_unstructured", "retained_degree_per_outneuron"):
        mask = (layer_mask if importance.endswith("unstructured") else row_mask)(scores, n / m)
        pruned, kept = mask.sum(0), (scores * ~mask).sum(0)
        order = torch.argsort(pruned, stable=True)  # secondary key first, then a stable sort by the primary
        order = order[torch.argsort(kept[order], stable=True)]
    else:
        raise ValueError(f"unknown reallocation importance {importance!r}")
    band = cols // m
    perm = torch.empty(cols, dtype=torch.long)
    for p in range(m):
        part = order[p * band : (p + 1) * band].cpu()
        perm[p::m] = part if p % 2 == 0 else part.flip(0)
    return perm


def kept_score(scores: torch.Tensor, n: int, m: int, perm: torch.Tensor | None = None) -> float:
    """Score sum an N:M mask keeps, in the column order ``perm`` (None: as stored)."""
    s = scores if perm is None else scores[:, perm]
    return float((s * ~nm_mask(s, n, m)).sum())


def slot_gain(S: torch.Tensor, slots: torch.Tensor, pos: int, n: int) -> torch.Tensor:
    """[candidate, group] score an N:M mask keeps in group g when slot ``pos`` gets the column now at
    ``slots[candidate, pos]`` (``slots``: [group, position] column ids).

    With the group's other m-1 scores sorted per row (o_1 <= ... <= o_{m-1}, prefix sums P_k), the n smallest
    are o_1..o_n or o_1..o_{n-1} and the candidate c, so the kept sum is (sum o - P_{n-1}) + max(c - o_n, 0):
    no sort of the m scores per (candidate, group) pair."""
    groups, m = slots.shape
    others = [p for p in range(m) if p != pos]
    o = S[:, slots[:, others]].sort(dim=2).values  # [rows, group, m - 1]
    fixed = (o.sum(2) - o[..., : n - 1].sum(2)).sum(0)  # [group]
    thr = o[..., n - 1]  # [rows, group]
    cand = S[:, slots[:, pos]].T  # [candidate, rows]
    gain = torch.empty(groups, groups, dtype=S.dtype)
    step = max(1, 2**22 // max(1, groups * S.shape[0]))
    for c0 in range(0, groups, step):
        gain[c0 : c0 + step] = fixed + torch.relu(cand[c0 : c0 + step, :, None] - thr[None]).sum(1)
    return gain


def lsa_permutation(scores: torch.Tensor, n: int, m: int, rounds: int = 2,
                    start: torch.Tensor | None = None) -> torch.Tensor:
    """A permutation of the input columns that raises the score kept by an N:M mask (RIA's linear sum assignment).

    From ``start`` (a permutation, e.g. ``reallocation_permutation``; None: columns dealt to the in/m groups in
    order of their total score), each slot position is re-assigned by a linear sum assignment (scipy) that
    maximises the kept score, one position at a time, ``rounds`` times. The result is used only if it keeps more
    than the start (without ``start``: than the stored order), so it never lowers the kept score sum. Returns
    ``perm`` (permuted = scores[:, perm]).
    """
    from scipy.optimize import linear_sum_assignment

    cols = scores.shape[1]
    groups = cols // m
    if start is None:
        order = torch.argsort(scores.sum(0), descending=True, stable=True)
        slots = order.reshape(m, groups).T.clone()  # [group, position]: column ids, best columns spread over groups
        baseline = torch.arange(cols)
    else:
        slots = start.reshape(groups, m).clone()
        baseline = start
    S = scores.double()
    for _ in range(rounds):
        for pos in range(m):
            cand = slots[:, pos]
            rows, colsel = linear_sum_assignment(-slot_gain(S, slots, pos, n).numpy())
            new = slots[:, pos].clone()
            new[torch.as_tensor(colsel)] = cand[torch.as_tensor(rows)]
            slots[:, pos] = new
    perm = slots.reshape(-1)
    return perm if kept_score(scores, n, m, perm) > kept_score(scores, n, m, baseline) else baseline
