"""Results tables in the paper's shapes, from one long metrics table (model, method, sparsity, metric, value).

- Table 1: WikiText-2 perplexity and the mean zero-shot accuracy of the seven common-sense tasks.
- Table 2 / 10: accuracy per common-sense task and their mean.
- Table 4: MMLU accuracy per category and overall.

Each is written as CSV (plain numbers), Markdown and LaTeX. A pruned method with a reference row (o-fang vs
obc, ...) shows its paired difference in the paper's "(+1.29)" style, starred where the 95 % paired bootstrap
interval excludes 0. Within every (model, sparsity) block the best method is bold and the second underlined,
as in the paper, but only where the paired interval against the next one excludes 0 (``resolved``); the dense
row is never marked.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass

from fangprune.evaluate.zeroshot.tasks import COMMONSENSE, DISPLAY
from fangprune.modeling.checkpoint import active_permutation_scope

COLUMNS = ["model", "method", "sparsity", "metric", "value", "n", "stderr", "ci_low", "ci_high", "reference"]
_NUMERIC = ("value", "n", "stderr", "ci_low", "ci_high")
AVG = "zeroshot_avg"
PPL_COLUMNS = [("wikitext2", "WikiText-2"), ("ptb", "PTB"), ("c4", "C4")]
MMLU_COLUMNS = [("mmlu/humanities", "Humanities"), ("mmlu/stem", "STEM"),
                ("mmlu/social_sciences", "Social Sci."), ("mmlu/other", "Other"), ("mmlu", "Avg")]


@dataclass(frozen=True)
class Column:
    metric: str
    header: str
    fmt: str = "{:.2f}"
    better: str | None = "high"  # high, low, or None (not ranked)
    scale: float = 1.0  # accuracies are stored as fractions and shown as percentages
    spread: bool = False  # show [ci_low, ci_high] (speed: min and max over repeats)


def write_metrics_csv(rows: list[dict], fh) -> None:
    writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["model"], r["method"] != "dense", r["method"], r["sparsity"], r["metric"])):
        writer.writerow({k: row.get(k, "") for k in COLUMNS})


def read_metrics_csv(fh) -> list[dict]:
    rows = []
    for row in csv.DictReader(fh):
        row["sparsity"] = float(row["sparsity"])
        for k in _NUMERIC:
            if row.get(k) not in (None, ""):
                row[k] = float(row[k])
            else:
                row.pop(k, None)
        if not row.get("reference"):
            row.pop("reference", None)
        rows.append(row)
    return rows


def _rows_by_key(rows: list[dict]) -> dict:
    by_key: dict = defaultdict(dict)
    for r in rows:
        by_key[(r["model"], r["method"], float(r["sparsity"]))][r["metric"]] = r
    return by_key


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
        cols = [Column(f"ppl_{d}", f"{h} PPL", better="low") for d, h in PPL_COLUMNS if f"ppl_{d}" in present]
        if AVG in present:
            cols.append(Column(AVG, f"Avg acc ({len(tasks)} tasks)", scale=100.0))
        cols += [Column("block_params_kept_frac", "Block params kept", "{:.1%}", None),
                 Column("params", "Params", "{:,.0f}", None)]
        if "block_zero_frac" in present:
            cols.append(Column("block_zero_frac", "Block zeros (actual sparsity)", "{:.1%}", None))
        if "disk_mb" in present:
            cols.append(Column("disk_mb", "Size (MB)", "{:.1f}", None))
        if "prefill_speedup" in present:  # no per-example data: shown, never ranked
            cols += [Column("prefill_speedup", "Prefill speedup", "{:.2f}x", None, spread=True),
                     Column("decode_speedup", "Decode speedup", "{:.2f}x", None, spread=True)]
        return cols
    if name == "table2":
        return [Column(t, DISPLAY[t], scale=100.0) for t in tasks] + [Column(AVG, "Avg", scale=100.0)]
    if name == "table4":
        return [Column(m, h, scale=100.0) for m, h in MMLU_COLUMNS if m in present]
    if name == "ablation":  # Tables 5-9: perplexities and, when evaluated, the mean accuracy
        cols = [Column(f"ppl_{d}", f"{h} PPL", better="low") for d, h in PPL_COLUMNS if f"ppl_{d}" in present]
        if AVG in present:
            cols.append(Column(AVG, f"Avg acc ({len(tasks)} tasks)", scale=100.0))
        if "block_zero_frac" in present:
            cols.append(Column("block_zero_frac", "Block zeros", "{:.1%}", None))
        return cols
    raise ValueError(f"unknown table {name!r}")


def _row_keys(by_key: dict, model: str, columns: list[Column], order: list[str] | None = None) -> list[tuple]:
    """Rows of one model: dense first, then by sparsity, methods alphabetically or in ``order``."""
    keys = [k for k in by_key if k[0] == model and any(c.metric in by_key[k] for c in columns)]
    rank = {m: i for i, m in enumerate(order or [])}
    return sorted(keys, key=lambda k: (k[1] != "dense", k[2], rank.get(k[1], len(rank)), k[1]))


def marks(by_key: dict, keys: list[tuple], columns: list[Column], resolved=None) -> dict:
    """(key, metric) -> 'best' | 'second' within each sparsity block of pruned methods.

    Best goes to the top value when ``resolved(top, runner_up, metric)`` (its paired interval against the
    runner-up excludes 0); second to the runner-up when it is also resolved against the third. Without a
    ``resolved`` function nothing is marked: a difference that no interval backs is not called better.
    """
    out = {}
    if resolved is None:
        return out
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
            ranked = sorted(vals, key=lambda vk: vk[0], reverse=col.better == "high")
            (v1, k1), (v2, k2) = ranked[0], ranked[1]
            if v1 != v2 and resolved(k1, k2, col.metric):
                out[(k1, col.metric)] = "best"
                if len(ranked) >= 3 and ranked[2][0] != v2 and resolved(k2, ranked[2][1], col.metric):
                    out[(k2, col.metric)] = "second"
    return out


def _fmt(col: Column, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return col.fmt.format(value * col.scale)


def _layout(rows: list[dict], name: str, resolved=None, order=None):
    by_key = _index(rows)
    columns = table_columns(name if name in TITLES else "ablation", rows)
    for model in sorted({k[0] for k in by_key}):
        keys = _row_keys(by_key, model, columns, order)
        if keys:
            yield model, columns, keys, by_key, marks(by_key, keys, columns, resolved)


def _delta_text(col: Column, row: dict | None) -> str:
    """The paper's "(+1.29)" after a value: the paired difference to the reference row, starred if resolved."""
    if row is None or col.better is None:
        return ""
    star = "*" if row.get("ci_low", 0) > 0 or row.get("ci_high", 0) < 0 else ""
    return f" ({row['value'] * col.scale:+.2f}){star}"


#: How each output marks the best and second-best cell, and escapes cell text.
_MARKDOWN = {"best": "**{}**", "second": "<u>{}</u>"}
_LATEX = {"best": "\\textbf{{{}}}", "second": "\\underline{{{}}}"}


def _cells(key: tuple, columns: list[Column], full: dict, mk: dict, styles: dict, escape=lambda t: t) -> list[str]:
    """The formatted cells of one row (value, then its delta), wrapped per ``styles`` where ``marks`` ranked them."""
    cells = []
    for c in columns:
        row = full[key].get(c.metric)
        text = escape(_fmt(c, row["value"] if row else None))
        mark = mk.get((key, c.metric))
        text = styles[mark].format(text) if mark else text
        if c.spread and row and "ci_low" in row:
            text += escape(f" [{c.fmt.format(row['ci_low'])}, {c.fmt.format(row['ci_high'])}]")
        cells.append(text + escape(_delta_text(c, full[key].get(f"delta_{c.metric}"))))
    return cells


def to_markdown(
    rows: list[dict], name: str, title: str, notes: list[str] | None = None, resolved=None, order=None
) -> str:
    out = io.StringIO()
    out.write(f"## {title}\n\n")
    full = _rows_by_key(rows)
    for model, columns, keys, by_key, mk in _layout(rows, name, resolved, order):
        out.write(f"### {model}\n\n")
        out.write("| Method | Sparsity | " + " | ".join(c.header for c in columns) + " |\n")
        out.write("|---|---:|" + "---:|" * len(columns) + "\n")
        for k in keys:
            cells = _cells(k, columns, full, mk, _MARKDOWN)
            out.write(f"| {k[1]} | {k[2]:.0%} | " + " | ".join(cells) + " |\n")
        out.write("\n")
    for note in notes or []:
        out.write(f"- {note}\n")
    return out.getvalue()


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def to_latex(
    rows: list[dict], name: str, title: str, notes: list[str] | None = None, resolved=None, order=None
) -> str:
    """A booktabs table per model (\\textbf best, \\underline second)."""
    out = io.StringIO()
    full = _rows_by_key(rows)
    for model, columns, keys, by_key, mk in _layout(rows, name, resolved, order):
        out.write("\\begin{table}[t]\n\\centering\n")
        out.write(f"\\caption{{{_tex(title)} ({_tex(model)})}}\n")
        out.write("\\begin{tabular}{ll" + "r" * len(columns) + "}\n\\toprule\n")
        out.write("Method & Sparsity & " + " & ".join(_tex(c.header) for c in columns) + " \\\\\n\\midrule\n")
        previous = None
        for k in keys:
            if previous is not None and k[2] != previous:
                out.write("\\midrule\n")
            previous = k[2]
            cells = _cells(k, columns, full, mk, _LATEX, _tex)
            out.write(f"{_tex(k[1])} & {_tex(f'{k[2]:.0%}')} & " + " & ".join(cells) + " \\\\\n")
        out.write("\\bottomrule\n\\end{tabular}\n\\end{table}\n\n")
    for note in notes or []:
        out.write(f"% {note}\n")
    return out.getvalue()


def to_csv(rows: list[dict], name: str, order=None) -> str:
    """Wide CSV: one row per (model, method, sparsity), one column per table column, unscaled values; with
    reference rows, also each column's delta and its interval (``delta_<metric>``, ``_ci_low``, ``_ci_high``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    full = _rows_by_key(rows)
    has_delta = any(r["metric"].startswith("delta_") for r in rows)
    header_written = False
    for model, columns, keys, by_key, _ in _layout(rows, name, None, order):
        ranked = [c for c in columns if c.better is not None] if has_delta else []
        if not header_written:
            extra = [f"delta_{c.metric}{s}" for c in ranked for s in ("", "_ci_low", "_ci_high")]
            writer.writerow(["model", "method", "sparsity", *[c.metric for c in columns], *extra])
            header_written = True
        for k in keys:
            deltas = []
            for c in ranked:
                d = full[k].get(f"delta_{c.metric}") or {}
                deltas += [d.get("value", ""), d.get("ci_low", ""), d.get("ci_high", "")]
            writer.writerow([model, k[1], k[2], *[by_key[k].get(c.metric, "") for c in columns], *deltas])
    return out.getvalue()


def per_model_notes(pairs) -> list[str]:
    """Notes from (model, text) pairs: a text true of every model once, plain; any other prefixed by its models."""
    models: dict[str, set[str]] = {}
    for model, text in pairs:
        models.setdefault(text, set()).add(model)
    every = set().union(*models.values())
    return sorted(t if ms == every else f"{', '.join(sorted(ms))}: {t}" for t, ms in models.items())


def perplexity_notes(ppl: list[dict]) -> list[str]:
    """Per evaluation text: source, windows and BOS, named by model where the models differ."""
    return per_model_notes(
        (e["model"], f"PPL: {e['source']}, {e['windows']} windows of {e['seqlen']} tokens"
         + (" (BOS + seqlen-1 text tokens, every text token scored)" if e.get("bos") else "") + ".")
        for e in ppl)


def uncertainty_notes(rows: list[dict], references: dict, n_boot: int) -> list[str]:
    """How the intervals and marks were made, and how many examples each comparison rests on."""
    notes = []
    if references:
        pairs = ", ".join(f"{m} vs {r}" for m, r in sorted(references.items()))
        notes.append(
            f"(+x.xx) = method - reference at the same sparsity ({pairs}; accuracy in points), from a 95 % paired "
            f"bootstrap over the same examples or perplexity windows ({n_boot} resamples; task averages resample "
            "each task separately); * = the interval excludes 0."
        )
    ns = sorted({int(r["n"]) for r in rows if r.get("n") and r["metric"].startswith("ppl_")})
    if ns:
        notes.append(f"Perplexity windows per number: {', '.join(map(str, ns))}.")
    notes.append(
        "Bold / underlined: best / second of a sparsity block, only where its paired 95 % interval against the "
        "next method excludes 0; unmarked blocks are not resolved at this sample size."
    )
    return notes


TITLES = {
    "table1": "Table 1: perplexity and mean zero-shot accuracy",
    "table2": "Table 2: zero-shot accuracy (%) per task",
    "table4": "Table 4: MMLU accuracy (%)",
}


def unstructured_label(params: dict) -> str:
    """Row label of an unstructured method in the ClearCut-style table: algorithm and options."""
    label = params["algorithm"]
    if params.get("reconstruction"):
        label += " + reconstruction"
    if params.get("reallocation"):
        label += " + reallocation"
    if params.get("lsa"):
        label += " + lsa"
    if active_permutation_scope(params) == "all":
        label += " (permuted, all projections)"
    if params.get("low_rank"):
        label += f" + low-rank {params['low_rank']['rank_ratio']:g}"
    return label


def unstructured_table(rows: list[dict], methods: dict, metric: str = "ppl_wikitext2") -> tuple[str, str, str]:
    """The ClearCut README's shape: one row per method (with its options), one column per model and pattern
    (unstructured at each sparsity, and each N:M), the perplexity in the cells; returns (markdown, csv, latex)."""
    by_key = _index(rows)
    cells: dict = defaultdict(dict)
    columns: set = set()
    for (model, method, sp), vals in by_key.items():
        params = methods.get(method)
        if params is None or "sparsity_type" not in params or metric not in vals:
            continue
        pattern = params["sparsity_type"]
        col = (model, pattern if pattern != "unstructured" else f"{sp:.0%}")
        columns.add(col)
        cells[unstructured_label(params)][col] = (vals[metric], vals.get("block_zero_frac"))
    cols = sorted(columns, key=lambda c: (c[0], ":" in c[1], c[1]))
    md = io.StringIO()
    md.write("| Method | " + " | ".join(f"{m} {p}" for m, p in cols) + " |\n")
    md.write("|---|" + "---:|" * len(cols) + "\n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", *[f"{m}/{p}" for m, p in cols], *[f"{m}/{p}/zero_frac" for m, p in cols]])
    tex = io.StringIO()
    tex.write("\\begin{tabular}{l" + "r" * len(cols) + "}\n\\toprule\n")
    tex.write("Method & " + " & ".join(_tex(f"{m} {p}") for m, p in cols) + " \\\\\n\\midrule\n")
    for label in sorted(cells):
        vals = [cells[label].get(c) for c in cols]
        text = ["-" if v is None else f"{v[0]:.2f}" for v in vals]
        md.write(f"| {label} | " + " | ".join(text) + " |\n")
        tex.write(f"{_tex(label)} & " + " & ".join(text) + " \\\\\n")
        writer.writerow([label, *["" if v is None else v[0] for v in vals],
                         *["" if v is None or v[1] is None else v[1] for v in vals]])
    tex.write("\\bottomrule\n\\end{tabular}\n")
    return md.getvalue(), out.getvalue(), tex.getvalue()
