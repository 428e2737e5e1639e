"""Per-layer diagnostics of every checkpoint of the run: diagnostics.csv (per layer), diagnostics.md (summary), plot."""

from pathlib import Path

from fangprune.io import atomic_path, load_torch, read_json, setup_logging, timed_step
from fangprune.report.diagnostics import diagnostics_frame, summary_markdown
from fangprune.report.plots import plot_errors

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
with timed_step("diagnostics"):
    manifests = [read_json(Path(ckpt) / "pruning.json") for ckpt in smk.input.checkpoints]
    frame = diagnostics_frame(manifests)
with atomic_path(smk.output.csv) as tmp:
    frame.to_csv(tmp, index=False, lineterminator="\n")
holdout = "; ".join(sorted({load_torch(f)["source"] for f in smk.input.holdout}))
with atomic_path(smk.output.md) as tmp:
    tmp.write_text(summary_markdown(frame, holdout or None))
with atomic_path(smk.output.plot) as tmp:
    plot_errors(frame, tmp)
print(f"wrote {len(frame)} layer rows from {len(manifests)} checkpoints")
