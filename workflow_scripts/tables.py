"""Collect every evaluation into results/tables/: metrics.csv, Tables 1/2/4 (CSV, Markdown, LaTeX) and the plot."""

from pathlib import Path

from fangprune.evaluate.zeroshot.results import (
    evaluation_rows,
    speed_notes,
    zeroshot_notes,
)
from fangprune.io import atomic_path, load_torch, read_json, setup_logging
from fangprune.report.comparisons import (
    add_uncertainty,
    delta_rows,
    evaluation_samples,
    gold_loglik_rows,
    resolve_references,
)
from fangprune.report.plots import sparsity_curves
from fangprune.report.stats import resolver
from fangprune.report.tables import (
    TITLES,
    per_model_notes,
    perplexity_notes,
    to_csv,
    to_latex,
    to_markdown,
    uncertainty_notes,
    unstructured_table,
    with_average,
    write_metrics_csv,
)

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
setup_logging(smk.log[0])
ppl = [read_json(f) for f in smk.input.ppl]
zeroshot = [read_json(f) for f in smk.input.zeroshot]
speed = [read_json(f) for f in smk.input.speed]
samples = evaluation_samples(ppl, zeroshot)
references = resolve_references(sorted({e["method"] for e in ppl}), p.references)
rows = with_average(evaluation_rows(ppl, zeroshot, speed)) + gold_loglik_rows(samples)
rows = add_uncertainty(rows, samples) + delta_rows(samples, references, p.bootstrap, p.seed)
with atomic_path(smk.output.metrics) as tmp, open(tmp, "w") as fh:
    write_metrics_csv(rows, fh)
resolved = resolver(samples, p.bootstrap, p.seed)

notes = perplexity_notes(ppl) + per_model_notes(  # windows: results/calibration/<model>/<spec>.pt
    (Path(f).parent.name, f"Calibration: {load_torch(f)['source']}.") for f in smk.input.windows
)
notes += zeroshot_notes(zeroshot)
notes += speed_notes(speed)
notes += uncertainty_notes(rows, references, p.bootstrap)
plain = [r for r in rows if not r["metric"].startswith("delta_")]


def ablation_rows(spec: dict) -> list[dict]:
    """An ablation table's rows: its methods (and the dense model), deltas against the table's own reference."""
    keep = set(spec["methods"]) | {spec["reference"], "dense"}
    refs = {m: spec["reference"] for m in spec["methods"] if m != spec["reference"]}
    subset = {k: v for k, v in samples.items() if k[1] in keep}
    return [r for r in plain if r["method"] in keep] + delta_rows(subset, refs, p.bootstrap, p.seed)


for path in smk.output.tables:
    name, ext = Path(path).stem, Path(path).suffix
    if name == "table_unstructured":
        md, wide, tex = unstructured_table(rows, p.methods)
        title = "## Unstructured and N:M pruning (the ClearCut README's shape): WikiText-2 PPL\n\n"
        zero_note = ("- Actual sparsity of the projections (zeros / weights) per checkpoint is in metrics.csv "
                     "(block_zero_frac) and in the CSV of this table.\n")
        text = {".md": title + md + "\n" + "".join(f"- {n}\n" for n in notes) + zero_note, ".csv": wide,
                ".tex": tex}[ext]
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        continue
    spec = p.ablations.get(name)
    table_rows, title, table_notes, order = rows, TITLES.get(name), notes, None
    if spec is not None:
        order = [spec["reference"]] + [m for m in spec["methods"] if m != spec["reference"]]
        table_rows, title = ablation_rows(spec), spec["title"]
        table_notes = [n for n in notes if not n.startswith("(+x.xx)")] + uncertainty_notes(
            table_rows, {m: spec["reference"] for m in spec["methods"] if m != spec["reference"]}, p.bootstrap
        )[:1]
    if ext == ".md":
        text = to_markdown(table_rows, name, title, table_notes, resolved, order)
    elif ext == ".tex":
        text = to_latex(table_rows, name, title, table_notes, resolved, order)
    else:
        text = to_csv(table_rows, name, order)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
with atomic_path(smk.output.plot) as tmp:
    sparsity_curves(rows, tmp)
print(f"wrote {len(rows)} metric rows from {len(ppl)} perplexity and {len(zeroshot)} zero-shot evaluations")
