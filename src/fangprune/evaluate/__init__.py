"""Evaluations of a checkpoint: perplexity, lm-eval zero-shot accuracy, speed, held-out reconstruction
diagnostics."""
