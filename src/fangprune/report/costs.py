"""Compute costs of a workflow run, from Snakemake's ``benchmark:`` files.

Every rule writes ``benchmarks/<rule>/<model>/...tsv`` (``benchmarks/<rule>/...`` for rules without a model):
one row with wall seconds ``s``, ``cpu_time`` (seconds) and ``max_rss`` (MB). The costs table sums wall and CPU
time and takes the largest RSS, per rule and model, so a researcher sees what a sweep costs and what to request.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

FIELDS = ["rule", "model", "jobs", "wall_s", "cpu_s", "max_rss_mb", "max_job_wall_s"]


@dataclass
class Benchmark:
    rule: str
    model: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):  # "-" or "NA" for jobs too short to sample
        return None


MODELLESS_RULES = ("tables", "costs")


def read_benchmarks(root: str | Path, models: list[str]) -> list[Benchmark]:
    """One ``Benchmark`` per TSV under ``root`` whose model is one of ``models``, or whose rule has no model."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("*.tsv")):
        parts = path.relative_to(root).parts
        rule = parts[0]
        if rule in MODELLESS_RULES:
            model = "-"
        else:
            # the model is not always the first folder (evaluate_ppl/<dataset>/<model>/...)
            names = [*parts[1:-1], Path(parts[-1]).stem]
            model = next((n for n in names if n in models), None)
            if model is None:
                continue  # another sweep's model in a shared results directory
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:  # repeat() benchmarks have several rows
            out.append(
                Benchmark(rule, model, _number(row.get("s")) or 0.0, _number(row.get("cpu_time")) or 0.0,
                          _number(row.get("max_rss")))
            )
    return out


def cost_rows(benchmarks: list[Benchmark]) -> list[dict]:
    """Per (rule, model): job count, summed wall and CPU seconds, largest RSS and longest job; then per-model and
    overall totals (rule ``total``; model-less rules such as ``tables`` count only in the overall one)."""
    groups: dict[tuple[str, str], list[Benchmark]] = {}
    for b in benchmarks:
        groups.setdefault((b.rule, b.model), []).append(b)
    for model in sorted({b.model for b in benchmarks} - {"-"}):
        groups[("total", model)] = [b for b in benchmarks if b.model == model]
    if benchmarks:
        groups[("total", "all")] = list(benchmarks)
    rows = []
    for (rule, model), items in groups.items():
        rss = [b.max_rss_mb for b in items if b.max_rss_mb is not None]
        rows.append(
            {
                "rule": rule,
                "model": model,
                "jobs": len(items),
                "wall_s": round(sum(b.wall_s for b in items), 2),
                "cpu_s": round(sum(b.cpu_s for b in items), 2),
                "max_rss_mb": round(max(rss), 1) if rss else None,
                "max_job_wall_s": round(max(b.wall_s for b in items), 2),
            }
        )
    return sorted(rows, key=lambda r: (r["rule"] == "total", r["model"] == "all", r["rule"], r["model"]))


def to_csv(rows: list[dict]) -> str:
    lines = [",".join(FIELDS)]
    for r in rows:
        lines.append(",".join("" if r[f] is None else str(r[f]) for f in FIELDS))
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict]) -> str:
    head = ["Rule", "Model", "Jobs", "Wall (s)", "CPU (s)", "Max RSS (MB)", "Longest job (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5) + "|"]
    for r in rows:
        rss = "" if r["max_rss_mb"] is None else f"{r['max_rss_mb']:.0f}"
        cells = [r["rule"], r["model"], str(r["jobs"]), f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", rss,
                 f"{r['max_job_wall_s']:.1f}"]
        if r["rule"] == "total":
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
