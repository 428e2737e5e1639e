"""The deployment table of every exported GGUF (report.deployment)."""

from fangprune import runtime
from fangprune.io import write_text, read_json
from fangprune.report.deployment import deployment_frame, deployment_markdown

smk = snakemake  # noqa: F821 - injected by Snakemake
runtime.from_snakemake(smk)
frame = deployment_frame([read_json(f) for f in smk.input.exports], [read_json(f) for f in smk.input.engine_ppl],
                         [read_json(f) for f in smk.input.engine_speed])
write_text(smk.output.csv, frame.to_csv(index=False))
write_text(smk.output.md, deployment_markdown(frame))
