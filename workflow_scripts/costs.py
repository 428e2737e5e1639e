"""The costs table: wall time, CPU time and peak RSS per rule and model, from every job's benchmark file."""

from fangprune.io import atomic_path, setup_logging
from fangprune.report.costs import cost_rows, read_benchmarks, to_csv, to_markdown

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
rows = cost_rows(read_benchmarks(smk.params.benchmarks, smk.params.models))
for path, text in ((smk.output.csv, to_csv(rows)), (smk.output.md, to_markdown(rows))):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
print(f"costs of {sum(r['jobs'] for r in rows if r['rule'] == 'total' and r['model'] == 'all')} jobs")
