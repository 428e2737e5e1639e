"""The layer-wise calibration engine ("Layer-wise Pruning"), written once and shared by every step.

The inputs of decoder layer 0 are captured for all calibration windows; then layers are visited in order: the
step observes layer l through forward hooks, may modify it, and the engine advances the hidden states through
the (possibly pruned) layer, so layer l+1 sees the outputs of the already-pruned layers below (sequential).
Only the current layer lives on the compute device; hidden states are kept on ``offload`` between layers.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from fangprune.modeling.models import decoder_layers

log = logging.getLogger(__name__)

HOST = torch.device("cpu")  # where the model lives between visits (compared by device, index included)


class _StopForward(Exception):
    pass


def _to(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    return obj


class LayerwiseEngine:
    """Holds the calibration hidden states [n, T, d] and runs one decoder layer at a time."""

    def __init__(
        self,
        model: nn.Module,
        windows: torch.Tensor,
        device: torch.device,
        batch_size: int = 1,
        offload: torch.device | str = "cpu",
    ):
        self.model = model
        self.device = torch.device(device)
        self.offload = torch.device(offload)
        self.batch_size = batch_size
        self.layers = decoder_layers(model)
        self.hidden, self.layer_kwargs = self._capture(windows)

    @torch.no_grad()
    def _capture(self, windows: torch.Tensor):
        """Run the embeddings and keep layer 0's inputs, plus every layer's keyword arguments (RoPE tables and
        masks differ between layer types, e.g. Gemma 3's sliding-window and global layers).

        Each decoder layer's forward is replaced by a recorder that returns its input unchanged, so no layer
        weight is used (or moved to the device); the last one (layer 0 after the first batch) stops the pass.
        """
        inner = self.model.model
        moved = [m for m in (inner.embed_tokens, getattr(inner, "rotary_emb", None)) if m is not None]
        for m in moved:
            m.to(self.device)
        store: dict = {"kwargs": [None] * len(self.layers)}

        def recorder(i):
            def forward(*args, **kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]
                if i == 0:
                    store["hidden"] = hidden
                if store["kwargs"][i] is None:
                    store["kwargs"][i] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                if i == store["last"]:
                    raise _StopForward
                return hidden

            return forward

        for i, layer in enumerate(self.layers):
            layer.forward = recorder(i)
        chunks = []
        try:
            for start in range(0, windows.shape[0], self.batch_size):
                store["last"] = len(self.layers) - 1 if start == 0 else 0
                batch = windows[start : start + self.batch_size].to(self.device)
                try:
                    self.model(input_ids=batch, use_cache=False)
                except _StopForward:
                    pass
                chunks.append(store["hidden"].to(self.offload))
        finally:
            for layer in self.layers:
                del layer.forward  # back to the class's forward
            for m in moved:
                m.to(HOST) if self.device != HOST else None
        per_layer = []
        for kwargs in store["kwargs"]:
            kwargs = dict(kwargs)
            kwargs["use_cache"] = False
            kwargs["past_key_values"] = None
            # RoPE tables and masks are identical for every window of the same length; keep one batch-1 copy.
            per_layer.append({k: _slice_batch(v) for k, v in kwargs.items()})
        return torch.cat(chunks), per_layer

    @property
    def num_samples(self) -> int:
        return self.hidden.shape[0]

    def batches(self, hidden: torch.Tensor | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
        hidden = self.hidden if hidden is None else hidden
        for i in range(0, hidden.shape[0], self.batch_size):
            sl = slice(i, min(i + self.batch_size, hidden.shape[0]))
            yield sl, hidden[sl].to(self.device)

    @torch.no_grad()
    def forward_layer(self, idx: int, *, keep_outputs: bool = True) -> torch.Tensor | None:
        """Run layer ``idx`` (already on the device) over all windows; return its outputs on ``offload``."""
        layer = self.layers[idx]
        kwargs = _to(self.layer_kwargs[idx], self.device)
        outs = torch.empty_like(self.hidden) if keep_outputs else None
        for sl, h in self.batches():
            out = layer(h, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            if keep_outputs:
                outs[sl] = out.to(self.offload)
        return outs

    def visit(self, desc: str = "layers") -> Iterator[tuple[int, nn.Module]]:
        """Yield (index, layer) with the layer on the device; the caller advances with ``advance``."""
        for idx in tqdm(range(len(self.layers)), desc=desc, mininterval=5):
            layer = self.layers[idx]
            layer.to(self.device)
            yield idx, layer
            if self.device != HOST:
                layer.to(HOST)
                torch.cuda.empty_cache()

    def advance(self, outs: torch.Tensor) -> None:
        self.hidden = outs


def _slice_batch(v):
    if torch.is_tensor(v) and v.dim() >= 2 and v.shape[0] > 1:
        return v[:1]
    if isinstance(v, tuple):
        return tuple(_slice_batch(x) for x in v)
    return v


@contextlib.contextmanager
def input_hooks(modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Call ``fn(name, input)`` with the input tensor of each module on every forward."""
    handles = [m.register_forward_pre_hook(lambda mod, args, _n=n: fn(_n, args[0])) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
