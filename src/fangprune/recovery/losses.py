"""The recovery objective: logit distillation from the dense teacher (Minitron / Model Optimizer: KL between the
teacher's and the student's next-token distributions at temperature 1, no cross-entropy term), optionally plus
next-token cross-entropy and a per-layer hidden-state term. Every term is computed in fp32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    kl: float = 1.0
    temperature: float = 1.0
    ce: float = 0.0
    hidden: float = 0.0

    @property
    def needs_hidden(self) -> bool:
        return self.hidden > 0


def kl_div(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over tokens of KL(p_teacher || p_student) at ``temperature``, times T^2 (gradient scale independent
    of T, Hinton et al.); 0 for identical logits."""
    t = temperature
    s = F.log_softmax(student_logits.float().flatten(0, -2) / t, dim=-1)
    p = F.log_softmax(teacher_logits.float().flatten(0, -2) / t, dim=-1)
    return F.kl_div(s, p, log_target=True, reduction="batchmean") * t * t


def next_token_ce(student_logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of the student on the window itself."""
    logits = student_logits[:, :-1].float()
    return F.cross_entropy(logits.flatten(0, 1), input_ids[:, 1:].flatten().to(logits.device))


def hidden_mse(student_hidden, teacher_hidden) -> torch.Tensor:
    """Mean over decoder layers of the MSE between their outputs, each divided by the teacher output's mean square
    (a scale-free term; the embeddings, index 0, are shared and left out)."""
    terms = []
    for s, t in zip(student_hidden[1:], teacher_hidden[1:]):
        t = t.float().to(s.device)
        terms.append(F.mse_loss(s.float(), t) / t.pow(2).mean().clamp_min(1e-12))
    return torch.stack(terms).mean()


def recovery_loss(student_out, teacher_out, input_ids: torch.Tensor, w: LossWeights) -> tuple[torch.Tensor, dict]:
    """The weighted objective and its parts (floats, for the log)."""
    total = torch.zeros((), device=student_out.logits.device)
    parts = {}
    if w.kl:
        kl = kl_div(student_out.logits, teacher_out.logits.to(student_out.logits.device), w.temperature)
        total, parts["kl"] = total + w.kl * kl, float(kl.detach())
    if w.ce:
        ce = next_token_ce(student_out.logits, input_ids)
        total, parts["ce"] = total + w.ce * ce, float(ce.detach())
    if w.hidden:
        h = hidden_mse(student_out.hidden_states, teacher_out.hidden_states)
        total, parts["hidden"] = total + w.hidden * h, float(h.detach())
    return total, parts
