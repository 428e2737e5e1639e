"""Predicted per-job resources of full-size models (fangprune.resources), as the Markdown table of docs/scale.md.

    python tools/predict_resources.py > predicted.md

Shapes: the published LLaMA-2-7B, LLaMA-3.1-8B, Qwen2.5-7B and LLaMA-2-70B (their own vocabularies), bf16
weights on GPU jobs; calibration at the paper's 128 x 2048 tokens and the default 32 x 512; evaluation 32 windows
of 512 tokens; Taylor scores with the default recompute pass; held-out diagnostics on (the default). Host and GPU memory are the predictions before the
request margin; GPU-job minutes are estimates: the FLOP count at assumed GPU rates plus the host part (PCA and
KMeans of the clustering) on 8 CPU threads at the rates measured here; CPU hours are fp32 on 16 threads.
Then the disk of one saved checkpoint (the prepared dense model and each pruned one, which the workflow keeps):
every parameter at the dtype, the projections cut to 1 - p by a structured prune at sparsity p.
"""

from __future__ import annotations

import sys

import pandas as pd

from fangprune.modeling.shapes import SHAPES as PRESETS
from fangprune.resources import (
    GPU_FLOPS,
    Shape,
    Terms,
    Tokens,
    checkpoint_bytes,
    compute_seconds,
    gpu_mib,
    host_mib,
)

NAMES = {"llama2-7b": "LLaMA-2-7B", "llama3.1-8b": "LLaMA-3.1-8B", "qwen2.5-7b": "Qwen2.5-7B",
         "llama2-70b": "LLaMA-2-70B"}
#: the full models of the shape presets: full depth, their own vocabularies
SHAPES = {NAMES[preset]: Shape(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                               c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["vocab_size"],
                               c["tie_word_embeddings"])
          for preset, (_, c) in PRESETS.items()}
CALIBRATIONS = {"128x2048": (128, 2048), "32x512": (32, 512)}
RULES = ("prepare_model", "cluster", "complexity", "scores", "prune", "evaluate_ppl")


def frame() -> pd.DataFrame:
    rows = []
    for model, shape in SHAPES.items():
        for cal, (n, seqlen) in CALIBRATIONS.items():
            tokens = Tokens(calib=n * seqlen, calib_seqlen=seqlen, calib_batch=1, eval_seqlen=512, eval_batch=1,
                            eval_tokens=32 * 512, zeroshot_batch=8, zeroshot_tokens=0, holdout=True)
            gpu_terms, cpu_terms = Terms.of(shape, tokens, "bfloat16"), Terms.of(shape, tokens, "float32")
            for rule in RULES:
                on_gpu = rule != "prepare_model"
                rows.append({
                    "model": model, "calibration": cal, "rule": rule,
                    "host GiB (GPU job)": host_mib(rule, gpu_terms, gpu=on_gpu) / 1024,
                    "GPU GiB": gpu_mib(rule, gpu_terms) / 1024,
                    "GPU job min (estimate)": (compute_seconds(rule, shape, tokens, gpu=True, threads=8) / 60
                                               if on_gpu else None),
                    "host GiB (CPU job)": host_mib(rule, cpu_terms) / 1024,
                    "CPU h (16 threads)": compute_seconds(rule, shape, tokens, gpu=False, threads=16) / 3600,
                })
    return pd.DataFrame(rows)


def disk() -> pd.DataFrame:
    """GiB of one checkpoint per model and dtype: dense, and structured-pruned at 20 % and 50 %."""
    rows = [{"model": model, "dtype": dtype, **{f"{label} GiB": checkpoint_bytes(shape, dtype, 1 - p) / 2**30
                                               for label, p in (("dense", 0.0), ("20 %", 0.2), ("50 %", 0.5))}}
            for model, shape in SHAPES.items() for dtype in ("bfloat16", "float32")]
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = frame()
    print(f"GPU rate assumed: {GPU_FLOPS / 1e12:.0f} TFLOP/s\n")
    col = "GPU job min (estimate)"  # none for the CPU rule
    table[col] = table[col].map(lambda x: "-" if pd.isna(x) else f"{x:.1f}")
    print(table.to_markdown(index=False, floatfmt=".1f", colalign=["left"] * 3 + ["right"] * 5))
    print("\nDisk of one checkpoint (the workflow keeps the dense model and every pruned one):\n")
    print(disk().to_markdown(index=False, floatfmt=".1f", colalign=["left"] * 2 + ["right"] * 3))
    sys.stdout.write("\n")
