"""LoRA recovery for large models (peft): adapters on the named projections, merged back into the weights in
fp32 (``merge_and_unload``) before saving, so the recovered checkpoint has no adapter files and the format of its
input. The tied embedding / LM head is never a target."""

from __future__ import annotations

from torch import nn

#: The projections a target may name (modeling.models.LayerRoles).
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraTargetError(ValueError):
    """A LoRA target names no module of the model."""


def check_targets(targets: list[str], model: nn.Module | None = None) -> None:
    """Every target is a projection name (and, given ``model``, matches one of its Linear modules)."""
    bad = [t for t in targets if t not in PROJECTIONS]
    if bad:
        raise LoraTargetError(f"LoRA target(s) {', '.join(map(repr, bad))} match no projection; "
                              f"choose from {', '.join(PROJECTIONS)}")
    if model is not None:
        present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        missing = [t for t in targets if t not in present]
        if missing:
            raise LoraTargetError(f"LoRA target(s) {', '.join(map(repr, missing))} match no module of the model")


def add_adapters(model: nn.Module, rank: int, alpha: float, targets: list[str], dropout: float = 0.0):
    """The model with LoRA adapters (only they train); the base weights stay as they are."""
    from peft import LoraConfig, get_peft_model

    check_targets(targets, model)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=dropout, bias="none",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def merge(peft_model) -> nn.Module:
    """Fold (alpha / r) B A into each wrapped weight in fp32 and return the plain model (no adapter left)."""
    base = peft_model.float()
    return base.merge_and_unload()
