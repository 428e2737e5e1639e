"""The recovery training loop: AdamW, linear warmup then cosine decay, gradient clipping, a token budget.

Resumable: every ``save_every`` steps the student, the optimizer, the schedule and the learning curve so far go
to one state file (written atomically); a run started again with the same inputs continues from it and ends
with the same weights as an uninterrupted run (the batch order is a function of the seed, not of the process).
On CUDA the forward passes run under bf16 autocast while the weights, the optimizer state and the loss stay fp32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from fangprune.io import load_torch, save_torch
from fangprune.modeling.lm_loss import token_nll
from fangprune.modeling.models import decoder_layers, roles
from fangprune.recovery.losses import LossWeights, recovery_loss

log = logging.getLogger(__name__)


class BudgetError(ValueError):
    """The token budget does not give one optimizer step."""


@dataclass(frozen=True)
class TrainSpec:
    tokens: int
    batch_size: int
    seqlen: int
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 50
    eval_every: int = 0  # 0: about 8 points on the learning curve
    eval_batch_size: int = 4
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    gradient_checkpointing: bool = False
    loss: LossWeights = field(default_factory=LossWeights)

    @property
    def steps(self) -> int:
        return steps_for(self.tokens, self.batch_size, self.seqlen)

    @property
    def warmup(self) -> int:
        return int(round(self.warmup_frac * self.steps))

    @property
    def every(self) -> int:
        return self.eval_every or max(1, self.steps // 8)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def steps_for(tokens: int, batch_size: int, seqlen: int) -> int:
    """Optimizer steps of a budget (whole batches of ``batch_size`` x ``seqlen`` tokens)."""
    per = batch_size * seqlen
    if tokens < per:
        raise BudgetError(f"a budget of {tokens} tokens is less than one batch ({batch_size} x {seqlen} = {per})")
    return tokens // per


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): linear warmup over ``warmup`` steps, then
    cosine decay to ``min_ratio`` at the last step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_order(n_windows: int, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """Window indices [steps, batch_size]: seeded permutations of the windows, one epoch after another."""
    g = torch.Generator().manual_seed(seed)
    need, parts = steps * batch_size, []
    while sum(p.numel() for p in parts) < need:
        parts.append(torch.randperm(n_windows, generator=g))
    return torch.cat(parts)[:need].view(steps, batch_size)


def projection_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Zero patterns of a zeroed (unstructured / N:M) checkpoint's projections, which recovery must keep."""
    masks = {}
    for i, layer in enumerate(decoder_layers(model)):
        for name, lin in roles(layer).projections().items():
            if not isinstance(getattr(lin, "weight", None), torch.Tensor):
                continue
            zero = lin.weight == 0
            if zero.any():
                masks[f"{i}.{name}"] = (lin.weight, ~zero)
    return masks


@torch.no_grad()
def heldout_nll(model: nn.Module, windows: torch.Tensor, device: torch.device, batch_size: int, amp: bool) -> float:
    """Mean next-token NLL of ``model`` over the held-out windows (the LM head in chunks, as the evaluations; a
    LoRA student is scored through its base model, whose layers carry the adapters)."""
    was = model.training
    model.eval()
    scored = model.get_base_model() if hasattr(model, "get_base_model") else model
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch_size):
        ids = windows[i : i + batch_size].to(device)
        with _autocast(device, amp):
            nll = token_nll(scored, ids)
        total += float(nll.double().sum())
        count += nll.numel()
    model.train(was)
    return total / count


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train: torch.Tensor,
    heldout: torch.Tensor,
    spec: TrainSpec,
    device: torch.device,
    state_path: str | Path | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[dict]:
    """Train ``student`` (in place, fp32 weights) towards ``teacher`` on ``train`` windows [N, seqlen]; return
    the learning curve: held-out perplexity against tokens seen, at step 0, every ``spec.every`` steps and at
    the end. ``state_path``: where the resumable state lives (removed after the last step). ``on_step(step)`` is
    called after each optimizer step and state save."""
    steps, per = spec.steps, spec.batch_size * spec.seqlen
    if train.shape[1] != spec.seqlen:
        raise ValueError(f"training windows have {train.shape[1]} tokens, the spec {spec.seqlen}")
    student.to(device).train()
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if spec.gradient_checkpointing:
        student.gradient_checkpointing_enable()
        student.config.use_cache = False
    masks = projection_masks(student)
    params = _trainable(student)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, spec.warmup, spec.min_lr_ratio))
    order = batch_order(train.shape[0], steps, spec.batch_size, spec.seed)
    start, curve, seen_loss = 0, [], []
    state_path = Path(state_path) if state_path else None
    if state_path is not None and state_path.exists():
        state = load_torch(state_path)
        if state["fingerprint"] == spec.fingerprint() and state["n_train"] == train.shape[0]:
            student.load_state_dict(state["student"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, curve, seen_loss = state["step"], state["curve"], state["seen_loss"]
            torch.set_rng_state(state["rng"])
            log.info("resumed from %s at step %d of %d", state_path, start, steps)
        else:
            log.warning("ignoring %s: it belongs to other settings or data", state_path)
    t0 = time.perf_counter()

    def point(step: int) -> None:
        nll = heldout_nll(student, heldout, device, spec.eval_batch_size, spec.amp)
        row = {"step": step, "tokens": step * per, "heldout_nll": nll, "heldout_ppl": math.exp(nll),
               "train_loss": sum(seen_loss) / len(seen_loss) if seen_loss else None,
               "lr": opt.param_groups[0]["lr"]}
        seen_loss.clear()
        curve.append(row)
        log.info("step %d tokens %d held-out ppl %.3f train loss %s", step, row["tokens"], row["heldout_ppl"],
                 row["train_loss"])

    if start == 0:
        point(0)
    bar = tqdm(range(start, steps), desc="recover", initial=start, total=steps, mininterval=5)
    for step in bar:
        ids = train[order[step]].to(device)
        with torch.no_grad(), _autocast(device, spec.amp):
            t_out = teacher(ids, output_hidden_states=spec.loss.needs_hidden)
        with _autocast(device, spec.amp):
            s_out = student(ids, output_hidden_states=spec.loss.needs_hidden)
        loss, parts = recovery_loss(s_out, t_out, ids, spec.loss)
        del t_out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for weight, keep in masks.values():
            weight.grad.mul_(keep)
        if spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            for weight, keep in masks.values():
                weight.mul_(keep)
        seen_loss.append(float(loss.detach()))
        done = step + 1
        rate = (done - start) * per / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{seen_loss[-1]:.4f}", tok_s=f"{rate:.0f}", **{k: f"{v:.4f}" for k, v in parts.items()})
        if done % spec.every == 0 or done == steps:
            point(done)
        if state_path is not None and (done % spec.save_every == 0) and done < steps:
            save_torch(state_path, {"fingerprint": spec.fingerprint(), "n_train": train.shape[0], "step": done,
                                    "student": student.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "curve": curve, "seen_loss": seen_loss,
                                    "rng": torch.get_rng_state()})
        if on_step is not None:
            on_step(done)
    if spec.gradient_checkpointing:
        student.gradient_checkpointing_disable()
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return curve
