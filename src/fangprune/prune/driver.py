"""The pruning driver shared by every method: it looks the method up in the registry and never branches on it.

Layer-wise methods (``Method.layer_pruner``): for each decoder layer l in order, the method's pruner observes
the layer's inputs on the calibration windows (which already passed through the pruned layers 0..l-1), prunes
the layer in place (physically smaller, or zeroed weights), and the windows advance through the pruned layer.
Whole-model methods (``Method.model_pruner``) get the same engine and decide globally.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from fangprune.core.engine import LayerwiseEngine, input_hooks
from fangprune.evaluate import diagnostics
from fangprune.io import collect_timings
from fangprune.methods.registry import get_method
from fangprune.modeling.models import block_params, count_params, decoder_layers, roles

log = logging.getLogger(__name__)


def head_notes(model: nn.Module, params: dict) -> list[str]:
    """What the head budget could not do on this model (documented fallbacks)."""
    from fangprune.core.surgery import head_unit_of

    if not params.get("prune_attention") or head_unit_of(params) != "kv_group":
        return []
    if all(roles(layer).num_kv_heads == 1 for layer in decoder_layers(model)):
        return ["one KV head per layer: head_unit kv_group can remove no head (a layer keeps at least one), so the "
                "MLP channels take each layer's whole budget; head_unit: query_head removes query heads instead"]
    return []


def summarise(model: nn.Module, layers: list[dict], dense_params: int, dense_block: int, notes=()) -> dict:
    """Model-level pruning report (moves the model back to the CPU)."""
    model.to("cpu")
    kept_block = block_params(model)
    return {
        "notes": list(notes),
        "layers": layers,
        "params_dense": dense_params,
        "params": count_params(model),
        "block_params_dense": dense_block,
        "block_params": kept_block,
        "block_params_kept_frac": kept_block / dense_block,
    }


def layer_entry(r, before: int) -> dict:
    """Sizes of a layer after pruning, for the report."""
    after = r.attention_params() + r.mlp_params()
    return {
        "num_heads": r.num_heads,
        "num_kv_heads": r.num_kv_heads,
        "intermediate_size": r.intermediate_size,
        "block_params": after,
        "achieved_sparsity": 1 - after / before,
    }


def _layer_moments(held: LayerwiseEngine, idx: int, layer: nn.Module):
    """Dense weights of layer ``idx`` and the held-out input moments of its measured projections."""
    moments = {name: diagnostics.InputMoments() for name in diagnostics.MODULES}
    with input_hooks(diagnostics.observed_modules(layer), lambda name, x: moments[name].add(x)):
        held.forward_layer(idx, keep_outputs=False)
    return diagnostics.snapshot(layer), moments


def _dense_holdout_moments(held: LayerwiseEngine) -> list:
    """(weights, moments) of every layer on the dense held-out stream (for whole-model methods)."""
    out = []
    for idx, layer in held.visit("held-out moments"):
        weights, moments = _layer_moments(held, idx, layer)
        # every layer's moments wait for the end of a whole-model method: on the host, not on the GPU
        out.append((weights, {name: m.to("cpu") for name, m in moments.items()}))
        held.advance(held.forward_layer(idx))
    return out


def prune_model(
    model: nn.Module,
    windows: torch.Tensor,
    params: dict,
    layer_sparsity,
    device: torch.device,
    batch_size: int = 1,
    clusters=None,
    groups=None,
    holdout: torch.Tensor | None = None,
) -> dict:
    """Prune ``model`` in place with the method ``params["algorithm"]``; return a per-layer report.

    With ``holdout`` windows (calibration text not used for any statistic), every layer's entry gets the
    relative reconstruction error of its o_proj / down_proj on them (``diagnostics``): layer-wise methods measure
    each layer on the held-out stream through the already pruned layers below (their own convention), whole-model
    methods on the dense stream (theirs).
    """
    method = get_method(params["algorithm"])
    if method.uses_groups and (clusters is None or groups is None):
        raise ValueError(f"{method.name} needs context clusters and neuron groups")
    dense_params, dense_block = count_params(model), block_params(model)
    notes = head_notes(model, params)
    for note in notes:
        log.warning(note)
    layers = decoder_layers(model)
    if len(layer_sparsity) != len(layers):
        raise ValueError(f"{len(layer_sparsity)} layer sparsities for {len(layers)} layers")
    engine = LayerwiseEngine(model, windows, device, batch_size=batch_size)
    held = LayerwiseEngine(model, holdout, device, batch_size=batch_size) if holdout is not None else None
    if method.model_pruner is not None:
        dense = _dense_holdout_moments(held) if held is not None else None
        report = method.model_pruner(model, engine, params, layer_sparsity, clusters=clusters, groups=groups)
        if dense is not None:
            for entry, layer, (weights, moments) in zip(report, layers, dense):
                entry["reconstruction_error"] = diagnostics.layer_errors(layer, weights, moments)
        return summarise(model, report, dense_params, dense_block, notes)
    report = []
    for idx, layer in engine.visit(f"prune {method.name}"):
        r = roles(layer)
        sp = float(layer_sparsity[idx])
        before = r.attention_params() + r.mlp_params()
        entry = {"layer": idx, "target_sparsity": sp}
        if held is not None:
            weights, moments = _layer_moments(held, idx, layer)
        if sp > 0:
            pruner = method.layer_pruner(params, idx, clusters=clusters, groups=groups)
            observed = pruner.observed(r)
            with collect_timings() as seconds:
                start = time.perf_counter()
                if observed:
                    with input_hooks(observed, pruner.observe):
                        engine.forward_layer(idx, keep_outputs=False)
                observed_at = time.perf_counter()
                entry.update(pruner.prune(r, sp))
                seconds.update(observe=observed_at - start, prune=time.perf_counter() - observed_at)
            # observe: the layer's forward with its input hooks (hessian: the X^T X part of it); prune: the
            # method's step (inverse, selection and compensation are parts of it where the method uses OBS)
            entry["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
            r = roles(layer)
        if held is not None:
            entry["reconstruction_error"] = diagnostics.layer_errors(layer, weights, moments)
            held.advance(held.forward_layer(idx))
        for key, value in layer_entry(r, before).items():
            entry.setdefault(key, value)  # a zeroing method reports its own achieved sparsity
        report.append(entry)
        # the pruner's statistics (n x n Hessians) and the held-out moments are done with: free them before the
        # next layer's fill, not when the names are rebound in the middle of it
        pruner = weights = moments = None
        engine.advance(engine.forward_layer(idx))
    return summarise(model, report, dense_params, dense_block, notes)
