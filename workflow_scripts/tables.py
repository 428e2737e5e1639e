"""Collect every evaluation into results/tables/: metrics.csv, Tables 1/2/4 (CSV, Markdown, LaTeX) and the plot."""

from pathlib import Path

from fangprune.io import atomic_path, load_torch, read_json, setup_logging
from fangprune.plots import sparsity_curves
from fangprune.tables import TITLES, to_csv, to_latex, to_markdown, with_average, write_metrics_csv
from fangprune.zeroshot.results import evaluation_rows, speed_notes, zeroshot_notes

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
ppl = [read_json(f) for f in smk.input.ppl]
zeroshot = [read_json(f) for f in smk.input.zeroshot]
speed = [read_json(f) for f in smk.input.speed]
rows = with_average(evaluation_rows(ppl, zeroshot, speed))
with atomic_path(smk.output.metrics) as tmp, open(tmp, "w") as fh:
    write_metrics_csv(rows, fh)

notes = sorted({f"PPL: {e['dataset']}, {e['windows']} windows of {e['seqlen']} tokens." for e in ppl})
notes += [f"Calibration: {c}." for c in sorted({load_torch(f)["source"] for f in smk.input.windows})]
notes += zeroshot_notes(zeroshot)
notes += speed_notes(speed)
for path in smk.output.tables:
    name, ext = Path(path).stem, Path(path).suffix
    if ext == ".md":
        text = to_markdown(rows, name, TITLES[name], notes)
    elif ext == ".tex":
        text = to_latex(rows, name, TITLES[name], notes)
    else:
        text = to_csv(rows, name)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
with atomic_path(smk.output.plot) as tmp:
    sparsity_curves(rows, tmp)
print(f"wrote {len(rows)} metric rows from {len(ppl)} perplexity and {len(zeroshot)} zero-shot evaluations")
