"""Collect every evaluation into results/tables/: metrics.csv, Tables 1/2/4, ablation and unstructured tables
(CSV, Markdown, LaTeX) and the plot (report.assemble builds them)."""

from pathlib import Path

from fangprune.io import atomic_path, load_torch, read_json, setup_logging, write_text
from fangprune.report.assemble import build_report, render_table
from fangprune.report.plots import sparsity_curves
from fangprune.report.tables import write_metrics_csv

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
setup_logging(smk.log[0])
ppl = [read_json(f) for f in smk.input.ppl]
zeroshot = [read_json(f) for f in smk.input.zeroshot]
# windows: results/calibration/<model>/<spec>.pt
calibration = [(Path(f).parent.name, load_torch(f)["source"]) for f in smk.input.windows]
report = build_report(ppl, zeroshot, [read_json(f) for f in smk.input.speed], calibration, p.references,
                      p.bootstrap, p.seed, [read_json(f) for f in smk.input.recovery])
with atomic_path(smk.output.metrics) as tmp, open(tmp, "w") as fh:
    write_metrics_csv(report.rows, fh)
for path in smk.output.tables:
    write_text(path, render_table(report, Path(path).stem, Path(path).suffix, p.ablations, p.methods))
with atomic_path(smk.output.plot) as tmp:
    sparsity_curves(report.rows, tmp)
print(f"wrote {len(report.rows)} metric rows from {len(ppl)} perplexity and {len(zeroshot)} zero-shot evaluations")
