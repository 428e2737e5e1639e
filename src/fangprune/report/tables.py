"""Results tables in the paper's shapes, from one long metrics table (model, method, sparsity, metric, value).

- Table 1: WikiText-2 perplexity and the mean zero-shot accuracy of the seven common-sense tasks.
- Table 2 / 10: accuracy per common-sense task and their mean.
- Table 4: MMLU accuracy per category and overall.

The long rows become one pandas DataFrame; every table is a pivot of it, written as CSV (``to_csv``, plain
numbers), Markdown (``to_markdown``) and LaTeX (``Styler.to_latex``, booktabs). A pruned method with a
reference row (o-fang vs obc, ...) shows its paired difference in the paper's "(+1.29)" style, starred where the
95 % paired bootstrap interval excludes 0. Within every (model, sparsity) block the best method is bold and the
second underlined, as in the paper, but only where the paired interval against the next one excludes 0
(``resolved``); the dense row is never marked.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fangprune.evaluate.zeroshot.tasks import COMMONSENSE, DISPLAY
from fangprune.modeling.checkpoint import active_permutation_scope

COLUMNS = ["model", "method", "sparsity", "metric", "value", "n", "stderr", "ci_low", "ci_high", "reference"]
KEY = ["model", "method", "sparsity"]
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


def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    """The long table: one row per (model, method, sparsity, metric), ``n`` as a nullable integer."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["sparsity"] = frame["sparsity"].astype(float)
    frame["n"] = pd.to_numeric(frame["n"]).round().astype("Int64")
    return frame


def write_metrics_csv(rows: list[dict], fh) -> None:
    frame = metrics_frame(rows)
    order = frame.assign(_pruned=frame["method"] != "dense").sort_values(
        ["model", "_pruned", "method", "sparsity", "metric"], kind="stable")
    order[COLUMNS].to_csv(fh, index=False, lineterminator="\n")


def read_metrics_csv(fh) -> list[dict]:
    frame = pd.read_csv(fh, dtype={"model": str, "method": str, "metric": str, "reference": str})
    rows = []
    for rec in frame.to_dict("records"):
        rows.append({k: (int(v) if k == "n" else v) for k, v in rec.items() if not pd.isna(v)})
    return rows


def value_table(rows: list[dict]) -> pd.DataFrame:
    """Wide values: index (model, method, sparsity), one column per metric (NaN where absent)."""
    if not rows:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], [], []], names=KEY))
    frame = metrics_frame(rows)
    return frame.pivot_table(index=KEY, columns="metric", values="value", aggfunc="last")


def with_average(rows: list[dict]) -> list[dict]:
    """Add the mean of the common-sense task columns (the paper's 'Avg') for every key that has all of them."""
    out = [r for r in rows if r["metric"] != AVG]
    values = value_table(out)
    tasks = [t for t in COMMONSENSE if t in values.columns]
    if not tasks:
        return out
    complete = values[tasks].dropna()
    means = complete.sum(axis=1) / len(tasks)
    return out + [{"model": k[0], "method": k[1], "sparsity": k[2], "metric": AVG, "value": float(v)}
                  for k, v in means.items()]


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


def _ordered(values: pd.DataFrame, model: str, columns: list[Column], order: list[str] | None) -> pd.DataFrame:
    """Rows of one model that have any of the columns: dense first, then by sparsity, methods alphabetically or
    in ``order``."""
    metrics = [c.metric for c in columns]
    block = values.loc[[model]].reindex(columns=metrics)
    block = block[block.notna().any(axis=1)]
    rank = {m: i for i, m in enumerate(order or [])}
    keys = sorted(block.index, key=lambda k: (k[1] != "dense", k[2], rank.get(k[1], len(rank)), k[1]))
    return block.loc[keys]


def marks(values: pd.DataFrame, columns: list[Column], resolved=None) -> dict:
    """(key, metric) -> 'best' | 'second' within each sparsity block of pruned methods (``values``: one model's
    wide rows).

    Best goes to the top value when ``resolved(top, runner_up, metric)`` (its paired interval against the
    runner-up excludes 0); second to the runner-up when it is also resolved against the third. Without a
    ``resolved`` function nothing is marked: a difference that no interval backs is not called better.
    """
    out = {}
    if resolved is None:
        return out
    pruned = values[values.index.get_level_values("method") != "dense"]
    for _, block in pruned.groupby(level="sparsity", sort=False):
        for col in columns:
            if col.better is None or col.metric not in block:
                continue
            ranked = block[col.metric].dropna().sort_values(ascending=col.better != "high", kind="stable")
            if len(ranked) < 2:
                continue
            (k1, v1), (k2, v2) = list(ranked.items())[:2]
            if v1 != v2 and resolved(k1, k2, col.metric):
                out[(k1, col.metric)] = "best"
                if len(ranked) >= 3 and ranked.iloc[2] != v2 and resolved(k2, ranked.index[2], col.metric):
                    out[(k2, col.metric)] = "second"
    return out


def _fmt(col: Column, value) -> str:
    return "-" if value is None or pd.isna(value) else col.fmt.format(value * col.scale)


def _deltas(rows: list[dict]) -> dict:
    """(key, metric) -> the delta row of that cell."""
    return {(r["model"], r["method"], float(r["sparsity"]), r["metric"][len("delta_"):]): r
            for r in rows if r["metric"].startswith("delta_")}


def _spreads(rows: list[dict]) -> dict:
    return {(r["model"], r["method"], float(r["sparsity"]), r["metric"]): (r["ci_low"], r["ci_high"])
            for r in rows if "ci_low" in r and not r["metric"].startswith("delta_")
            and not pd.isna(r.get("ci_low"))}


def _delta_text(col: Column, row: dict | None) -> str:
    """The paper's "(+1.29)" after a value: the paired difference to the reference row, starred if resolved."""
    if row is None or col.better is None:
        return ""
    star = "*" if row.get("ci_low", 0) > 0 or row.get("ci_high", 0) < 0 else ""
    return f" ({row['value'] * col.scale:+.2f}){star}"


def _blocks(rows: list[dict], name: str, resolved=None, order=None):
    """Per model: (model, columns, cells, mark) where ``cells`` is a DataFrame of display text (Method, Sparsity,
    one column per table column) and ``mark`` the same shape holding 'best' / 'second' / ''."""
    values = value_table(rows)
    columns = table_columns(name if name in TITLES else "ablation", rows)
    deltas, spreads = _deltas(rows), _spreads(rows)
    for model in sorted(values.index.get_level_values("model").unique()):
        block = _ordered(values, model, columns, order)
        if block.empty:
            continue
        mk = marks(block, columns, resolved)
        text, style = {"Method": [k[1] for k in block.index], "Sparsity": [f"{k[2]:.0%}" for k in block.index]}, {}
        for c in columns:
            cells = []
            for k, v in block[c.metric].items():
                cell = _fmt(c, v)
                if c.spread and (*k, c.metric) in spreads:
                    lo, hi = spreads[(*k, c.metric)]
                    cell += f" [{c.fmt.format(lo)}, {c.fmt.format(hi)}]"
                cells.append(cell + _delta_text(c, deltas.get((*k, c.metric))))
            text[c.header] = cells
            style[c.header] = [mk.get((k, c.metric), "") for k in block.index]
        cells = pd.DataFrame(text)
        mark = pd.DataFrame({"Method": "", "Sparsity": "", **style}, index=cells.index)
        yield model, columns, block, cells, mark


def _marked_markdown(cells: pd.DataFrame, mark: pd.DataFrame) -> pd.DataFrame:
    """Bold (best) / underline (second) around the value, before its spread and delta."""
    wrap = {"best": "**{}**", "second": "<u>{}</u>"}

    def one(text: str, m: str) -> str:
        if not m:
            return text
        value, sep, rest = text.partition(" ")
        return wrap[m].format(value) + sep + rest

    return pd.DataFrame({c: [one(t, m) for t, m in zip(cells[c], mark[c])] for c in cells.columns})


def to_markdown(
    rows: list[dict], name: str, title: str, notes: list[str] | None = None, resolved=None, order=None
) -> str:
    parts = [f"## {title}\n\n"]
    for model, columns, _, cells, mark in _blocks(rows, name, resolved, order):
        table = _marked_markdown(cells, mark).to_markdown(
            index=False, tablefmt="pipe", disable_numparse=True, colalign=["left"] + ["right"] * (len(columns) + 1))
        parts.append(f"### {model}\n\n{table}\n\n")
    parts += [f"- {note}\n" for note in notes or []]
    return "".join(parts)


_LATEX_MARKS = {"best": "textbf: --rwrap;", "second": "underline: --rwrap;", "": ""}


def to_latex(
    rows: list[dict], name: str, title: str, notes: list[str] | None = None, resolved=None, order=None
) -> str:
    """A booktabs table per model through ``Styler.to_latex`` (\\textbf best, \\underline second)."""
    parts = []
    for model, columns, _, cells, mark in _blocks(rows, name, resolved, order):
        styler = (cells.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
                  .apply(lambda _: mark.map(_LATEX_MARKS.get), axis=None))
        parts.append(styler.to_latex(
            hrules=True, caption=_tex(f"{title} ({model})"), position="t", position_float="centering",
            column_format="ll" + "r" * len(columns), environment="table") + "\n")
    parts += [f"% {note}\n" for note in notes or []]
    return "".join(parts)


def _tex(text: str) -> str:
    """Escape a caption (Styler escapes the cells and headers)."""
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def to_csv(rows: list[dict], name: str, order=None) -> str:
    """Wide CSV: one row per (model, method, sparsity), one column per table column, unscaled values; with
    reference rows, also each column's delta and its interval (``delta_<metric>``, ``_ci_low``, ``_ci_high``)."""
    deltas = _deltas(rows)
    has_delta = bool(deltas)
    frames, header = [], None
    for model, columns, block, _, _ in _blocks(rows, name, None, order):
        wide = block.reset_index()
        ranked = [c for c in columns if c.better is not None] if has_delta else []
        for c in ranked:
            for suffix, field in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
                wide[f"delta_{c.metric}{suffix}"] = [deltas.get((*k, c.metric), {}).get(field)
                                                     for k in block.index]
        header = header or [*KEY, *[c.metric for c in columns],
                            *[f"delta_{c.metric}{s}" for c in ranked for s in ("", "_ci_low", "_ci_high")]]
        frames.append(wide)
    if not frames:
        return ""
    return pd.concat(frames, ignore_index=True).reindex(columns=header).to_csv(index=False, lineterminator="\n")


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
    values = value_table(rows).reset_index()
    if metric not in values:
        values[metric] = float("nan")
    if "block_zero_frac" not in values:
        values["block_zero_frac"] = float("nan")
    params = values["method"].map(methods)
    keep = params.map(lambda p: isinstance(p, dict) and "sparsity_type" in p) & values[metric].notna()
    values, params = values[keep], params[keep]
    pattern = [p["sparsity_type"] if p["sparsity_type"] != "unstructured" else f"{sp:.0%}"
               for p, sp in zip(params, values["sparsity"])]
    long = pd.DataFrame({"label": params.map(unstructured_label), "model": values["model"], "pattern": pattern,
                         "ppl": values[metric], "zero_frac": values["block_zero_frac"]})
    cols = sorted({(m, p) for m, p in zip(long["model"], long["pattern"])}, key=lambda c: (c[0], ":" in c[1], c[1]))
    wide = long.pivot_table(index="label", columns=["model", "pattern"], values=["ppl", "zero_frac"],
                            aggfunc="last", dropna=False)
    ppl = wide["ppl"].reindex(columns=pd.MultiIndex.from_tuples(cols)) if cols else pd.DataFrame()
    zero = wide["zero_frac"].reindex(columns=pd.MultiIndex.from_tuples(cols)) if cols else pd.DataFrame()
    text = ppl.map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    text.columns = [f"{m} {p}" for m, p in cols]
    shown = text.rename_axis("Method").reset_index()
    md = shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                           colalign=["left"] + ["right"] * len(cols)) + "\n"
    tex = (shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
           .to_latex(hrules=True, column_format="l" + "r" * len(cols)))
    csv_frame = pd.concat([ppl.set_axis([f"{m}/{p}" for m, p in cols], axis=1),
                           zero.set_axis([f"{m}/{p}/zero_frac" for m, p in cols], axis=1)], axis=1)
    csv = csv_frame.rename_axis("method").reset_index().to_csv(index=False, lineterminator="\n")
    return md, csv, tex
