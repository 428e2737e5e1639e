"""One recovery job: check the teacher against the student, train (full or LoRA), merge, summarise."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from fangprune.io import atomic_path
from fangprune.recovery import lora
from fangprune.recovery.distill import TrainSpec, distill
from fangprune.recovery.losses import LossWeights

log = logging.getLogger(__name__)


class TokenizerMismatch(ValueError):
    """Teacher and student read text differently, so their next-token distributions are not comparable."""


def check_tokenizers(student_tok, teacher_tok) -> None:
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise TokenizerMismatch("the teacher's tokenizer differs from the student's (vocabulary); distillation "
                                "needs one tokenizer")
    for attr in ("bos_token_id", "eos_token_id"):
        if getattr(student_tok, attr) != getattr(teacher_tok, attr):
            raise TokenizerMismatch(f"teacher and student tokenizers differ in {attr}")


def train_spec(settings: dict, seed: int) -> TrainSpec:
    """The TrainSpec of a recovery variant's settings (config section ``recovery``)."""
    keys = ("tokens", "batch_size", "seqlen", "lr", "min_lr_ratio", "warmup_frac", "weight_decay", "grad_clip",
            "save_every", "eval_every", "amp", "gradient_checkpointing")
    return TrainSpec(**{k: settings[k] for k in keys}, seed=seed, loss=LossWeights(**settings["loss"]))


@dataclass
class Recovered:
    model: nn.Module
    curve: list[dict]
    summary: dict


def recover(student: nn.Module, teacher: nn.Module, student_tok, teacher_tok, data: dict, settings: dict,
            seed: int, device: torch.device, state_path=None, on_step=None) -> Recovered:
    """Distil ``student`` from ``teacher`` on ``data`` (recovery_data's windows) with ``settings``; the
    returned model is plain (LoRA merged in fp32)."""
    check_tokenizers(student_tok, teacher_tok)
    spec = train_spec(settings, seed)
    cfg = settings.get("lora")
    model = lora.add_adapters(student, cfg["rank"], cfg["alpha"], cfg["targets"], cfg["dropout"]) if cfg else student
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ran: list[int] = []  # the steps this process ran (a resumed job skips the saved ones)

    def step_done(step: int) -> None:
        ran.append(step)
        if on_step is not None:
            on_step(step)

    start = time.perf_counter()
    curve = distill(model, teacher, data["train"], data["heldout"], spec, device, state_path, step_done)
    wall = time.perf_counter() - start
    if cfg:
        model = lora.merge(model)
    summary = {
        "data": data["source"], "dropped_windows": data["dropped"], "tokens": spec.steps * spec.batch_size * spec.seqlen,
        "steps": spec.steps, "trainable_params": trainable, "lora": cfg, "loss": settings["loss"], "lr": spec.lr,
        "batch_size": spec.batch_size, "seqlen": spec.seqlen, "heldout_ppl_before": curve[0]["heldout_ppl"],
        "heldout_ppl_after": curve[-1]["heldout_ppl"], "train_wall_s": round(wall, 1),
        "steps_last_run": len(ran),
        "tokens_per_s_last_run": round(len(ran) * spec.batch_size * spec.seqlen / wall, 1) if wall and ran else None,
    }
    log.info("recovered: %s", summary)
    return Recovered(model, curve, summary)


def write_curve(path, curve: list[dict]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(curve).to_csv(tmp, index=False)
