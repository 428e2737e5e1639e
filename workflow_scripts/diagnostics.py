"""Per-layer diagnostics of every checkpoint of the run: diagnostics.csv (per layer), diagnostics.md (summary), plot."""

import csv
from pathlib import Path

from fangprune.evaluate.diagnostics import (
    DIAG_COLUMNS,
    diagnostic_rows,
    summary_markdown,
)
from fangprune.io import atomic_path, load_torch, read_json, setup_logging
from fangprune.report.plots import plot_errors

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
manifests = [read_json(Path(ckpt) / "pruning.json") for ckpt in smk.input.checkpoints]
rows = diagnostic_rows(manifests)
with atomic_path(smk.output.csv) as tmp, open(tmp, "w") as fh:
    writer = csv.DictWriter(fh, fieldnames=DIAG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
holdout = "; ".join(sorted({load_torch(f)["source"] for f in smk.input.holdout}))
with atomic_path(smk.output.md) as tmp:
    tmp.write_text(summary_markdown(rows, holdout or None))
with atomic_path(smk.output.plot) as tmp:
    plot_errors(rows, tmp)
print(f"wrote {len(rows)} layer rows from {len(manifests)} checkpoints")
