"""Per-example data behind every table cell, standard errors, and paired differences against reference rows.

From the evaluation files: perplexity windows (``window_nll``) and zero-shot examples (``per_example``) become
:class:`stats.Sample` objects keyed like the metrics rows, ``(model, method, sparsity, metric)``. Every metrics
row with such data gains ``n`` and ``stderr``; every method with a reference row (``tables.references``) gains
``delta_<metric>`` rows: the difference method - reference with its 95 % paired bootstrap interval.
"""

from __future__ import annotations

from fangprune.evaluate.zeroshot.tasks import COMMONSENSE
from fangprune.report import stats

AVG = "zeroshot_avg"

#: Reference rows of the paper's comparisons, used when the config gives none (only those present apply).
DEFAULT_REFERENCES = {"o-fang": "obc", "f-fang": "flap", "obc-fc": "obc"}


def _key(e: dict) -> tuple:
    return (e["model"], e["method"], float(e["sparsity"]))


def _gold_values(per: dict) -> tuple[list, list | None]:
    """Log-likelihood of the gold answer per example, and per token where the token counts were stored."""
    gold_ll = [ll[g] for ll, g in zip(per["loglik"], per["gold"])]
    tokens = per.get("gold_tokens")
    per_token = [v / max(t, 1) for v, t in zip(gold_ll, tokens)] if tokens else None
    return gold_ll, per_token


def _task_samples(task: str, units: list[tuple[str, dict, str]]) -> dict:
    """Samples of one task from its (subject, per_example, paper metric) units (MMLU: one per subject)."""
    ids, paper, gold_ll, per_token = [], [], [], []
    for subject, per, metric in units:
        ids += [(subject, d) for d in per["doc_id"]]
        paper += per[metric] if per.get(metric) is not None else per["acc"]
        g, t = _gold_values(per)
        gold_ll += g
        per_token = None if t is None or per_token is None else per_token + t
    out = {
        task: stats.sample("mean", paper, ids),
        f"{task}/gold_loglik": stats.sample("mean", gold_ll, ids),
    }
    if per_token is not None:
        out[f"{task}/gold_loglik_per_token"] = stats.sample("mean", per_token, ids)
    return out


def evaluation_samples(ppl: list[dict], zeroshot: list[dict]) -> dict:
    """(model, method, sparsity, metric) -> Sample for every metric with per-example data."""
    out = {}
    for e in ppl:
        if e.get("window_nll"):
            out[(*_key(e), f"ppl_{e.get('dataset', 'wikitext2')}")] = stats.sample("ppl", e["window_nll"])
    for e in zeroshot:
        task = e["task"]
        if task == "mmlu":
            units = [(name, s["per_example"], "acc") for name, s in sorted((e.get("subjects") or {}).items())]
        else:
            units = [(task, e["per_example"], e["paper_metric"])] if e.get("per_example") else []
        if units:
            for metric, s in _task_samples(task, units).items():
                out[(*_key(e), metric)] = s
    by_key: dict = {}
    for (model, method, sp, metric), s in out.items():
        if metric in COMMONSENSE:
            by_key.setdefault((model, method, sp), {})[metric] = s
    present = [t for t in COMMONSENSE if any(t in v for v in by_key.values())]
    for key, parts in by_key.items():
        if present and all(t in parts for t in present):
            out[(*key, AVG)] = stats.task_mean([parts[t] for t in present])
    return out


def gold_loglik_rows(samples: dict) -> list[dict]:
    """Rows of the continuous downstream measures (mean gold log-likelihood, overall and per token)."""
    return [
        {"model": k[0], "method": k[1], "sparsity": k[2], "metric": k[3], "value": s.point()}
        for k, s in samples.items()
        if "/gold_loglik" in k[3]
    ]


def add_uncertainty(rows: list[dict], samples: dict) -> list[dict]:
    """``n`` and ``stderr`` on every row whose number has per-example data."""
    for r in rows:
        s = samples.get((r["model"], r["method"], float(r["sparsity"]), r["metric"]))
        if s is not None:
            r["n"], r["stderr"] = s.n, stats.stderr(s)
    return rows


def resolve_references(methods: list[str], configured: dict | None) -> dict:
    """method -> reference method, among the methods present (config ``tables.references`` or the defaults)."""
    refs = DEFAULT_REFERENCES if configured is None else configured
    return {m: r for m, r in refs.items() if m in methods and r in methods and m != r}


def delta_rows(samples: dict, references: dict, n_boot: int = stats.N_BOOT, seed: int = 0) -> list[dict]:
    """``delta_<metric>`` rows: method - reference at the same model and sparsity, paired over the same examples."""
    rows = []
    for (model, method, sp, metric), s in sorted(samples.items(), key=lambda kv: str(kv[0])):
        ref = references.get(method)
        if ref is None:
            continue
        other = samples.get((model, ref, sp, metric))
        if other is None or not stats.paired(s, other):
            continue
        d = stats.paired_bootstrap(s, other, n_boot, seed)
        rows.append({"model": model, "method": method, "sparsity": sp, "metric": f"delta_{metric}",
                     "value": d["delta"], "n": d["n"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                     "reference": ref})
    return rows
