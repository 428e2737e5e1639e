"""Results tables: one long metrics table and the paper's Table 1 shape (rows: method x sparsity)."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict

COLUMNS = ["model", "method", "sparsity", "metric", "value"]

TABLE1_METRICS = [
    ("ppl_wikitext2", "WikiText-2 PPL", "{:.2f}"),
    ("block_params_kept_frac", "Block params kept", "{:.1%}"),
    ("params", "Params", "{:,.0f}"),
]


def write_metrics_csv(rows: list[dict], fh) -> None:
    writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["model"], r["method"] != "dense", r["method"], r["sparsity"], r["metric"])):
        writer.writerow({k: row[k] for k in COLUMNS})


def read_metrics_csv(fh) -> list[dict]:
    rows = []
    for row in csv.DictReader(fh):
        row["sparsity"] = float(row["sparsity"])
        row["value"] = float(row["value"])
        rows.append(row)
    return rows


def _fmt(fmt: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def table1_markdown(rows: list[dict], notes: list[str] | None = None) -> str:
    """Per model: a Markdown table, dense row first, then method x sparsity."""
    by_key: dict = defaultdict(dict)
    for r in rows:
        by_key[(r["model"], r["method"], r["sparsity"])][r["metric"]] = r["value"]
    out = io.StringIO()
    for model in sorted({k[0] for k in by_key}):
        keys = sorted(
            (k for k in by_key if k[0] == model), key=lambda k: (k[1] != "dense", k[2], k[1])
        )
        out.write(f"### {model}\n\n")
        out.write("| Method | Sparsity | " + " | ".join(h for _, h, _ in TABLE1_METRICS) + " |\n")
        out.write("|---|---:|" + "---:|" * len(TABLE1_METRICS) + "\n")
        for k in keys:
            vals = by_key[k]
            cells = [_fmt(f, vals.get(m)) for m, _, f in TABLE1_METRICS]
            out.write(f"| {k[1]} | {k[2]:.0%} | " + " | ".join(cells) + " |\n")
        out.write("\n")
    for note in notes or []:
        out.write(f"- {note}\n")
    return out.getvalue()
