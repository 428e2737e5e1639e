"""Prompt-processing and generation speed of one exported GGUF against the dense GGUF of the same tensor type in
llama.cpp (alternating runs, same threads), next to the FLOP-ratio limit and the file sizes."""

from pathlib import Path

from fangprune import runtime
from fangprune.evaluate.engine_speed import flop_ratio_limit, llamacpp_speed
from fangprune.io import provenance, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("engine_speed") as step:
    result = llamacpp_speed(smk.input.dense, smk.input.gguf, p.prompt_len, p.gen_tokens, p.repeats, smk.threads,
                            p.seed)
write_json(smk.output.metrics, {
    "model": p.model, "method": p.method, "sparsity": p.sparsity, "gguf_type": p.gguf_type, **result,
    "flop_ratio_limit": flop_ratio_limit(smk.input.dense, smk.input.gguf),
    "bytes": Path(smk.input.gguf).stat().st_size, "dense_bytes": Path(smk.input.dense).stat().st_size,
    "resources": step, "provenance": provenance(),
})
