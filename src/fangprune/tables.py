"""Results tables in the paper's shapes, from one long metrics table (model, method, sparsity, metric, value).

- Table 1: WikiText-2 perplexity and the mean zero-shot accuracy of the seven common-sense tasks.
- Table 2 / 10: accuracy per common-sense task and their mean.
- Table 4: MMLU accuracy per category and overall.

Each is written as CSV (plain numbers), Markdown and LaTeX; within every (model, sparsity) block the best
method is bold and the second best underlined, as in the paper (the dense row is never marked).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass

from .zeroshot.tasks import COMMONSENSE, DISPLAY

COLUMNS = ["model", "method", "sparsity", "metric", "value"]
AVG = "zeroshot_avg"
MMLU_COLUMNS = [("mmlu/humanities", "Humanities"), ("mmlu/stem", "STEM"),
                ("mmlu/social_sciences", "Social Sci."), ("mmlu/other", "Other"), ("mmlu", "Avg")]


@dataclass(frozen=True)
class Column:
    metric: str
    header: str
    fmt: str = "{:.2f}"
    better: str | None = "high"  # high, low, or None (not ranked)
    scale: float = 1.0  # accuracies are stored as fractions and shown as percentages


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


def _index(rows: list[dict]) -> dict:
    by_key: dict = defaultdict(dict)
    for r in rows:
        by_key[(r["model"], r["method"], float(r["sparsity"]))][r["metric"]] = float(r["value"])
    return by_key


def with_average(rows: list[dict]) -> list[dict]:
    """Add the mean of the common-sense task columns (the paper's 'Avg') for every key that has all of them."""
    by_key = _index(rows)
    tasks = [t for t in COMMONSENSE if any(t in v for v in by_key.values())]
    out = [r for r in rows if r["metric"] != AVG]
    if not tasks:
        return out
    for (model, method, sp), vals in by_key.items():
        if all(t in vals for t in tasks):
            out.append({"model": model, "method": method, "sparsity": sp, "metric": AVG,
                        "value": sum(vals[t] for t in tasks) / len(tasks)})
    return out


def table_columns(name: str, rows: list[dict]) -> list[Column]:
    present = {r["metric"] for r in rows}
    tasks = [t for t in COMMONSENSE if t in present]
    if name == "table1":
        cols = [Column("ppl_wikitext2", "WikiText-2 PPL", better="low")]
        if AVG in present:
            cols.append(Column(AVG, f"Avg acc ({len(tasks)} tasks)", scale=100.0))
        cols += [Column("block_params_kept_frac", "Block params kept", "{:.1%}", None),
                 Column("params", "Params", "{:,.0f}", None)]
        if "disk_mb" in present:
            cols.append(Column("disk_mb", "Size (MB)", "{:.1f}", None))
        if "prefill_speedup" in present:
            cols += [Column("prefill_speedup", "Prefill speedup", "{:.2f}x"),
                     Column("decode_speedup", "Decode speedup", "{:.2f}x")]
        return cols
    if name == "table2":
        return [Column(t, DISPLAY[t], scale=100.0) for t in tasks] + [Column(AVG, "Avg", scale=100.0)]
    if name == "table4":
        return [Column(m, h, scale=100.0) for m, h in MMLU_COLUMNS if m in present]
    raise ValueError(f"unknown table {name!r}")


def _row_keys(by_key: dict, model: str, columns: list[Column]) -> list[tuple]:
    keys = [k for k in by_key if k[0] == model and any(c.metric in by_key[k] for c in columns)]
    return sorted(keys, key=lambda k: (k[1] != "dense", k[2], k[1]))


def marks(by_key: dict, keys: list[tuple], columns: list[Column]) -> dict:
    """(key, metric) -> 'best' | 'second' within each sparsity block of pruned methods.

    Best is marked when a block has at least two methods, second when it has at least three; ties share a mark.
    """
    out = {}
    blocks: dict = defaultdict(list)
    for k in keys:
        if k[1] != "dense":
            blocks[k[2]].append(k)
    for block in blocks.values():
        for col in columns:
            if col.better is None:
                continue
            vals = [(by_key[k][col.metric], k) for k in block if col.metric in by_key[k]]
            vals = [(v, k) for v, k in vals if not math.isnan(v)]
            if len(vals) < 2:
                continue
            distinct = sorted({v for v, _ in vals}, reverse=col.better == "high")
            for v, k in vals:
                if v == distinct[0]:
                    out[(k, col.metric)] = "best"
                elif len(vals) >= 3 and len(distinct) > 1 and v == distinct[1]:
                    out[(k, col.metric)] = "second"
    return out


def _fmt(col: Column, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return col.fmt.format(value * col.scale)


def _layout(rows: list[dict], name: str):
    by_key = _index(rows)
    columns = table_columns(name, rows)
    for model in sorted({k[0] for k in by_key}):
        keys = _row_keys(by_key, model, columns)
        if keys:
            yield model, columns, keys, by_key, marks(by_key, keys, columns)


#: How each output marks the best and second-best cell, and escapes cell text.
_MARKDOWN = {"best": "**{}**", "second": "<u>{}</u>"}
_LATEX = {"best": "\\textbf{{{}}}", "second": "\\underline{{{}}}"}


def _cells(key: tuple, columns: list[Column], by_key: dict, mk: dict, styles: dict, escape=lambda t: t) -> list[str]:
    """The formatted cells of one row, wrapped per ``styles`` where ``marks`` ranked them."""
    cells = []
    for c in columns:
        text = escape(_fmt(c, by_key[key].get(c.metric)))
        mark = mk.get((key, c.metric))
        cells.append(styles[mark].format(text) if mark else text)
    return cells


def to_markdown(rows: list[dict], name: str, title: str, notes: list[str] | None = None) -> str:
    out = io.StringIO()
    out.write(f"## {title}\n\n")
    for model, columns, keys, by_key, mk in _layout(rows, name):
        out.write(f"### {model}\n\n")
        out.write("| Method | Sparsity | " + " | ".join(c.header for c in columns) + " |\n")
        out.write("|---|---:|" + "---:|" * len(columns) + "\n")
        for k in keys:
            cells = _cells(k, columns, by_key, mk, _MARKDOWN)
            out.write(f"| {k[1]} | {k[2]:.0%} | " + " | ".join(cells) + " |\n")
        out.write("\n")
    for note in notes or []:
        out.write(f"- {note}\n")
    return out.getvalue()


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def to_latex(rows: list[dict], name: str, title: str, notes: list[str] | None = None) -> str:
    """A booktabs table per model (\\textbf best, \\underline second)."""
    out = io.StringIO()
    for model, columns, keys, by_key, mk in _layout(rows, name):
        out.write("\\begin{table}[t]\n\\centering\n")
        out.write(f"\\caption{{{_tex(title)} ({_tex(model)})}}\n")
        out.write("\\begin{tabular}{ll" + "r" * len(columns) + "}\n\\toprule\n")
        out.write("Method & Sparsity & " + " & ".join(_tex(c.header) for c in columns) + " \\\\\n\\midrule\n")
        previous = None
        for k in keys:
            if previous is not None and k[2] != previous:
                out.write("\\midrule\n")
            previous = k[2]
            cells = _cells(k, columns, by_key, mk, _LATEX, _tex)
            out.write(f"{_tex(k[1])} & {_tex(f'{k[2]:.0%}')} & " + " & ".join(cells) + " \\\\\n")
        out.write("\\bottomrule\n\\end{tabular}\n\\end{table}\n\n")
    for note in notes or []:
        out.write(f"% {note}\n")
    return out.getvalue()


def to_csv(rows: list[dict], name: str) -> str:
    """Wide CSV: one row per (model, method, sparsity), one column per table column, unscaled values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header_written = False
    for model, columns, keys, by_key, _ in _layout(rows, name):
        if not header_written:
            writer.writerow(["model", "method", "sparsity", *[c.metric for c in columns]])
            header_written = True
        for k in keys:
            writer.writerow([model, k[1], k[2], *[by_key[k].get(c.metric, "") for c in columns]])
    return out.getvalue()


TITLES = {
    "table1": "Table 1: WikiText-2 perplexity and mean zero-shot accuracy",
    "table2": "Table 2: zero-shot accuracy (%) per task",
    "table4": "Table 4: MMLU accuracy (%)",
}
