"""Export one checkpoint (or the dense model) as a GGUF file of one tensor type, for llama.cpp."""

from fangprune import runtime
from fangprune.export.gguf_export import export_gguf, tokenizer_gguf_for
from fangprune.io import provenance, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
runtime.from_snakemake(smk)
with timed_step("export_gguf"):
    report = export_gguf(smk.input.checkpoint, smk.output.gguf, smk.wildcards.gguf_type,
                         tokenizer_gguf=tokenizer_gguf_for(smk.params.source), name=smk.params.name)
write_json(smk.output.report, {**smk.params.key, **report, "provenance": provenance()})
