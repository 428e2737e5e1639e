"""The costs table: wall time, CPU time and peak RSS per rule and model, from every job's benchmark file."""

from fangprune.io import setup_logging, write_text
from fangprune.report.costs import cost_table, read_benchmarks, to_csv, to_markdown

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
table = cost_table(read_benchmarks(smk.params.benchmarks, smk.params.models, smk.params.logs))
write_text(smk.output.csv, to_csv(table))
write_text(smk.output.md, to_markdown(table))
total = table[(table["rule"] == "total") & (table["model"] == "all")]
print(f"costs of {int(total['jobs'].sum())} jobs")
