"""Compute costs of a workflow run, from Snakemake's ``benchmark:`` files.

Every rule writes ``benchmarks/<rule>/<model>/...tsv`` (``benchmarks/<rule>/...`` for rules without a model):
one row with wall seconds ``s``, ``cpu_time`` (seconds) and ``max_rss`` (MB). The costs table sums wall and CPU
time and takes the largest RSS, per rule and model, so a researcher sees what a sweep costs and what to request.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fangprune.io import log_figures

FIELDS = ["rule", "model", "jobs", "wall_s", "cpu_s", "max_rss_mb", "log_peak_mib", "max_job_wall_s"]
MODELLESS_RULES = ("tables", "costs")


def _model_of(rule: str, parts: tuple[str, ...], models: list[str]) -> str | None:
    if rule in MODELLESS_RULES:
        return "-"
    # the model is not always the first folder (evaluate_ppl/<dataset>/<model>/...)
    names = [*parts[1:-1], Path(parts[-1]).stem]
    return next((n for n in names if n in models), None)


def read_benchmarks(root: str | Path, models: list[str], logs: str | Path | None = None) -> pd.DataFrame:
    """One row per benchmark record under ``root`` (``repeat()`` benchmarks have several) whose model is one of
    ``models``, or whose rule has no model: rule, model, job (the path below the rule's folder, no suffix), wall_s,
    cpu_s (the job's own getrusage figure from its log where it wrote one, else the benchmark's ``cpu_time``, which
    Snakemake samples every 30 s and so misses up to 30 s x threads), max_rss_mb (NaN where Snakemake wrote
    "-" or "NA" for a job too short to sample) and log_peak_mib, the job's peak from its log under ``logs`` (the
    same relative path, ``.log``): Snakemake samples RSS and misses short peaks (424 MB sampled for a job whose
    log peak was 5031 MiB, docs/scale.md), so requests are sized by the log peak."""
    root = Path(root)
    frames = []
    for path in sorted(root.rglob("*.tsv")):
        parts = path.relative_to(root).parts
        model = _model_of(parts[0], parts, models)
        if model is None:
            continue  # another sweep's model in a shared results directory
        tsv = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        job = "/".join([*parts[1:-1], Path(parts[-1]).stem])
        cpu = tsv.get("cpu_time", pd.Series(0.0, index=tsv.index)).fillna(0.0)
        own = log_figures(Path(logs, *parts).with_suffix(".log")) if logs is not None else {}
        logged = own.get("process_cpu_s") if len(tsv) == 1 else None  # repeat(): one log for every record
        peak = own.get("max_rss_mib")
        frames.append(pd.DataFrame({"rule": parts[0], "model": model, "job": job, "wall_s": tsv["s"].fillna(0.0),
                                    "cpu_s": cpu if logged is None else logged,
                                    "max_rss_mb": pd.to_numeric(tsv.get("max_rss"), errors="coerce"),
                                    "log_peak_mib": float("nan") if peak is None else peak}))
    columns = ["rule", "model", "job", "wall_s", "cpu_s", "max_rss_mb", "log_peak_mib"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def cost_table(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, model): job count, summed wall and CPU seconds, largest RSS and longest job; then per-model and
    overall totals (rule ``total``; model-less rules such as ``tables`` count only in the overall one)."""
    if benchmarks.empty:
        return pd.DataFrame(columns=FIELDS)
    agg = dict(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
               max_rss_mb=("max_rss_mb", "max"), log_peak_mib=("log_peak_mib", "max"), max_job_wall_s=("wall_s", "max"))
    per_rule = benchmarks.groupby(["rule", "model"], as_index=False).agg(**agg)
    with_model = benchmarks[benchmarks["model"] != "-"]
    per_model = with_model.groupby("model", as_index=False).agg(**agg).assign(rule="total")
    overall = benchmarks.assign(model="all").groupby("model", as_index=False).agg(**agg).assign(rule="total")
    table = pd.concat([per_rule, per_model, overall], ignore_index=True)[FIELDS]
    table = table.round({"wall_s": 2, "cpu_s": 2, "max_rss_mb": 1, "log_peak_mib": 1, "max_job_wall_s": 2})
    order = [table["rule"] == "total", table["model"] == "all", table["rule"], table["model"]]
    keys = pd.DataFrame({f"k{i}": k for i, k in enumerate(order)})
    return table.loc[keys.sort_values(list(keys.columns)).index].reset_index(drop=True)


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False)


def to_markdown(table: pd.DataFrame) -> str:
    """Seconds to 0.1, RSS to whole MB, total rows bold."""
    view = pd.DataFrame({
        "Rule": table["rule"], "Model": table["model"], "Jobs": table["jobs"].astype(str),
        "Wall (s)": table["wall_s"].map("{:.1f}".format), "CPU (s)": table["cpu_s"].map("{:.1f}".format),
        "Max RSS (MB)": table["max_rss_mb"].map(lambda x: "" if pd.isna(x) else f"{x:.0f}"),
        "Peak RSS, log (MiB)": table["log_peak_mib"].map(lambda x: "" if pd.isna(x) else f"{x:.0f}"),
        "Longest job (s)": table["max_job_wall_s"].map("{:.1f}".format),
    })
    total = table["rule"] == "total"
    view.loc[total] = view.loc[total].map(lambda c: f"**{c}**" if c else c)
    return view.to_markdown(index=False, colalign=["left"] * 2 + ["right"] * 6) + "\n"
