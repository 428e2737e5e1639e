"""Recovery after pruning: distillation of a pruned checkpoint from the dense model (Minitron-style logit KL at
temperature 1 by default; optional cross-entropy and per-layer hidden-state terms), full fine-tuning or LoRA
merged back in fp32. The recovered checkpoint keeps its input's per-layer widths and format, so every later
stage reads it unchanged.

Modules: ``text`` (training windows disjoint from every evaluation text), ``losses`` (the objective),
``distill`` (the training loop, resumable), ``lora`` (peft wrapping and the fp32 merge).
"""
