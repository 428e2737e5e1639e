"""Layer-wise sequential pruning driver shared by every method.

For each decoder layer l (in order): the method observes the layer's inputs on the calibration windows (which
already passed through the pruned layers 0..l-1), decides which heads/channels go and how the rest is
compensated, the layer is physically shrunk, and the windows advance through the pruned layer.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from .engine import LayerwiseEngine, input_hooks
from .models import LayerRoles, block_params, count_params, decoder_layers, roles
from .surgery import DEFAULT_HEAD_UNIT, head_unit_of, query_units

log = logging.getLogger(__name__)


def make_pruner(method: dict, layer_idx: int, clusters=None, groups=None):
    algo = method["algorithm"]
    if algo in ("wanda-sp", "mag-sp"):
        from .methods.baselines import MagnitudeSPPruner, WandaSPPruner

        return (WandaSPPruner if algo == "wanda-sp" else MagnitudeSPPruner)(method, layer_idx)
    if algo == "obc":
        from .methods.obc import OBCPruner

        return OBCPruner(method, layer_idx)
    if algo == "o-fang":
        from .methods.fang import OFangPruner

        if clusters is None or groups is None:
            raise ValueError("o-fang needs context clusters and neuron groups")
        return OFangPruner(method, layer_idx, clusters=clusters, groups=groups["layers"][layer_idx])
    raise KeyError(f"unknown algorithm {algo!r}")


def summarise(model: nn.Module, layers: list[dict], dense_params: int, dense_block: int) -> dict:
    """Model-level pruning report (moves the model back to the CPU)."""
    model.to("cpu")
    kept_block = block_params(model)
    return {
        "layers": layers,
        "params_dense": dense_params,
        "params": count_params(model),
        "block_params_dense": dense_block,
        "block_params": kept_block,
        "block_params_kept_frac": kept_block / dense_block,
    }


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


def layer_budget(r: LayerRoles, sp: float, method: dict, max_channels: int) -> tuple[int, int]:
    """(KV groups, MLP channels) to remove from one layer at sparsity ``sp``.

    ``module_balance="layer_params"``: floor(sp * #KV groups) groups go (never all), and MLP channels take the
    rest of the layer's parameter budget sp * (attention + MLP params). ``"per_module"`` (reference): the same
    ratio for heads (floor) and channels (floor).
    """
    head_unit = head_unit_of(method)
    n_units = unit_budget(r, sp, head_unit) if method["prune_attention"] else 0
    n = r.intermediate_size
    if method["module_balance"] == "per_module":
        n_channels = math.floor(sp * n + 1e-9)
    else:
        n_channels = channel_budget(r, sp, n_units, head_unit)
    if n_channels > max_channels:
        raise ValueError(
            f"sparsity {sp:.3f} needs {n_channels} of {n} MLP channels but at most {max_channels} can be removed"
        )
    return n_units, n_channels


def prune_model(
    model: nn.Module,
    windows: torch.Tensor,
    method: dict,
    layer_sparsity,
    device: torch.device,
    batch_size: int = 1,
    clusters=None,
    groups=None,
) -> dict:
    """Prune ``model`` in place; return a per-layer report (kept units, sizes, parameter counts)."""
    dense_params, dense_block = count_params(model), block_params(model)
    layers = decoder_layers(model)
    if len(layer_sparsity) != len(layers):
        raise ValueError(f"{len(layer_sparsity)} layer sparsities for {len(layers)} layers")
    engine = LayerwiseEngine(model, windows, device, batch_size=batch_size)
    if method["algorithm"] in ("flap", "f-fang"):
        from .methods.flap import fluctuation_prune

        p = float(sum(layer_sparsity) / len(layer_sparsity))
        return fluctuation_prune(model, engine, method, p, layer_sparsity, clusters, groups)
    report = []
    for idx, layer in engine.visit(f"prune {method['algorithm']}"):
        r = roles(layer)
        sp = float(layer_sparsity[idx])
        before = r.attention_params() + r.mlp_params()
        entry = {"layer": idx, "target_sparsity": sp}
        if sp > 0:
            pruner = make_pruner(method, idx, clusters, groups)
            n_units, n_channels = layer_budget(r, sp, method, pruner.max_channels(r.intermediate_size))
            observed = pruner.observed(r)
            if observed:
                with input_hooks(observed, pruner.observe):
                    engine.forward_layer(idx, keep_outputs=False)
            entry.update(pruner.prune(r, n_units, n_channels))
            r = roles(layer)
        after = r.attention_params() + r.mlp_params()
        entry.update(
            num_heads=r.num_heads,
            num_kv_heads=r.num_kv_heads,
            intermediate_size=r.intermediate_size,
            block_params=after,
            achieved_sparsity=1 - after / before,
        )
        report.append(entry)
        engine.advance(engine.forward_layer(idx))
    return summarise(model, report, dense_params, dense_block)
