"""Every report of a run from its evaluation records: the long metrics rows, Tables 1/2/4, the ablation tables
and the unstructured table, each as CSV, Markdown and LaTeX, with the notes that say how they were made.

The ``tables`` rule's script reads the evaluation files and writes what this returns; nothing here touches disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fangprune.evaluate.zeroshot.results import evaluation_rows, speed_notes, zeroshot_notes
from fangprune.report.comparisons import (
    add_uncertainty,
    delta_rows,
    evaluation_samples,
    gold_loglik_rows,
    resolve_references,
)
from fangprune.report.recovery import recovery_references, recovery_table
from fangprune.report.stats import N_BOOT, resolver
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
)

UNSTRUCTURED_TITLE = "## Unstructured and N:M pruning (the ClearCut README's shape): WikiText-2 PPL\n\n"
ZERO_NOTE = ("- Actual sparsity of the projections (zeros / weights) per checkpoint is in metrics.csv "
             "(block_zero_frac) and in the CSV of this table.\n")


@dataclass
class Report:
    """What a run's evaluations give: the metrics rows, the per-example samples and the notes under tables."""

    rows: list[dict]
    samples: dict
    references: dict
    notes: list[str]
    n_boot: int = N_BOOT
    seed: int = 0
    _resolved: object = field(default=None, repr=False)

    @property
    def plain(self) -> list[dict]:
        return [r for r in self.rows if not r["metric"].startswith("delta_")]

    def resolved(self):
        if self._resolved is None:
            self._resolved = resolver(self.samples, self.n_boot, self.seed)
        return self._resolved


def recovery_notes(recovery: list[dict]) -> list[str]:
    """What every recovered checkpoint was trained on, once per distinct setting."""
    seen = {}
    for r in recovery:
        key = (r["model"], r["variant"])
        if key not in seen:
            loss = ", ".join(f"{k} {v:g}" for k, v in r["loss"].items() if v and k != "temperature")
            how = f"LoRA rank {r['lora']['rank']}" if r.get("lora") else "full fine-tuning"
            seen[key] = (f"Recovery +{r['variant']} ({r['model']}): {how}, loss {loss} (temperature "
                         f"{r['loss']['temperature']:g}), {r['tokens']:,} tokens ({r['steps']} steps of "
                         f"{r['batch_size']} x {r['seqlen']}, lr {r['lr']:g}) of {r['data']}.")
    return list(seen.values())


def build_report(ppl: list[dict], zeroshot: list[dict], speed: list[dict], calibration: list[tuple[str, str]],
                 references: dict | None, n_boot: int = N_BOOT, seed: int = 0,
                 recovery: list[dict] | None = None) -> Report:
    """Rows (with averages, gold log-likelihoods, n / stderr and paired deltas) and notes of one run.
    ``calibration``: (model, calibration source) pairs; ``recovery``: the recovery jobs' reports. A recovered
    checkpoint's reference row is its unrecovered input."""
    samples = evaluation_samples(ppl, zeroshot)
    methods = sorted({e["method"] for e in ppl})
    refs = {**recovery_references(methods), **resolve_references(methods, references)}
    rows = with_average(evaluation_rows(ppl, zeroshot, speed)) + gold_loglik_rows(samples)
    rows = add_uncertainty(rows, samples) + delta_rows(samples, refs, n_boot, seed)
    notes = perplexity_notes(ppl) + per_model_notes((m, f"Calibration: {src}.") for m, src in calibration)
    notes += recovery_notes(recovery or [])
    notes += zeroshot_notes(zeroshot) + speed_notes(speed) + uncertainty_notes(rows, refs, n_boot)
    return Report(rows, samples, refs, notes, n_boot, seed)


def ablation_rows(report: Report, spec: dict) -> list[dict]:
    """An ablation table's rows: its methods (and the dense model), deltas against the table's own reference."""
    keep = set(spec["methods"]) | {spec["reference"], "dense"}
    refs = {m: spec["reference"] for m in spec["methods"] if m != spec["reference"]}
    subset = {k: v for k, v in report.samples.items() if k[1] in keep}
    return [r for r in report.plain if r["method"] in keep] + delta_rows(subset, refs, report.n_boot, report.seed)


def render_table(report: Report, name: str, ext: str, ablations: dict, methods: dict) -> str:
    """One table file: ``name`` is table1 / table2 / table4, an ablation's name or table_unstructured;
    ``ext`` is .md, .csv or .tex."""
    if name == "table_recovery":
        return recovery_table(report.samples, report.references, report.notes, ext, report.n_boot, report.seed)
    if name == "table_unstructured":
        md, wide, tex = unstructured_table(report.rows, methods)
        notes = "".join(f"- {n}\n" for n in report.notes)
        return {".md": UNSTRUCTURED_TITLE + md + "\n" + notes + ZERO_NOTE, ".csv": wide, ".tex": tex}[ext]
    spec = ablations.get(name)
    rows, title, notes, order = report.rows, TITLES.get(name), report.notes, None
    if spec is not None:
        order = [spec["reference"]] + [m for m in spec["methods"] if m != spec["reference"]]
        rows, title = ablation_rows(report, spec), spec["title"]
        refs = {m: spec["reference"] for m in spec["methods"] if m != spec["reference"]}
        notes = [n for n in report.notes if not n.startswith("(+x.xx)")] + uncertainty_notes(
            rows, refs, report.n_boot)[:1]
    if ext == ".md":
        return to_markdown(rows, name, title, notes, report.resolved(), order)
    if ext == ".tex":
        return to_latex(rows, name, title, notes, report.resolved(), order)
    return to_csv(rows, name, order)
