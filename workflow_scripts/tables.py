"""Collect every evaluation into results/tables/metrics.csv and the Table 1 shaped Markdown."""

from fangprune.io import atomic_path, load_torch, read_json, setup_logging
from fangprune.tables import table1_markdown, write_metrics_csv

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
rows, sources, dense_block = [], set(), {}
evals = [read_json(f) for f in smk.input.metrics]
for e in evals:
    if e["method"] == "dense":
        dense_block[e["model"]] = e["block_params"]
for e in evals:
    key = {"model": e["model"], "method": e["method"], "sparsity": e["sparsity"]}
    rows.append({**key, "metric": "ppl_wikitext2", "value": e["ppl"]})
    rows.append({**key, "metric": "params", "value": e["params"]})
    rows.append({**key, "metric": "block_params_kept_frac", "value": e["block_params"] / dense_block[e["model"]]})
    sources.add(f"PPL: {e['dataset']}, {e['windows']} windows of {e['seqlen']} tokens")
with atomic_path(smk.output.csv) as tmp, open(tmp, "w") as fh:
    write_metrics_csv(rows, fh)
calibration = {load_torch(f)["source"] for f in smk.input.windows}
notes = sorted(sources) + [f"Calibration: {c}" for c in sorted(calibration)]
with atomic_path(smk.output.md) as tmp:
    tmp.write_text(table1_markdown(rows, notes))
print(f"wrote {len(rows)} metric rows from {len(evals)} evaluations")
