"""What recovery did: each recovered checkpoint against its unrecovered input and the dense model (paired
differences with 95 % intervals, the share of the gap to dense closed), whether the configured method
comparisons persist after recovery, and the learning curves."""

from __future__ import annotations

import pandas as pd

from fangprune.report import stats
from fangprune.report.comparisons import AVG

#: Recovered method names join the pruned method and the variant with this (config.RECOVERED_SEP).
SEP = "+"
METRICS = ("ppl_wikitext2", "ppl_ptb", "ppl_c4", AVG)
LABELS = {"ppl_wikitext2": "WikiText-2 PPL", "ppl_ptb": "PTB PPL", "ppl_c4": "C4 PPL", AVG: "Avg acc"}


def split_name(method: str) -> tuple[str, str] | None:
    """('o-fang', 'kd') for 'o-fang+kd'; None for a method that is not a recovered one."""
    if SEP not in method:
        return None
    base, variant = method.rsplit(SEP, 1)
    return base, variant


def recovery_references(methods: list[str]) -> dict:
    """Each recovered method's default reference: its unrecovered checkpoint (when evaluated)."""
    out = {}
    for m in methods:
        parts = split_name(m)
        if parts and parts[0] in methods:
            out[m] = parts[0]
    return out


def _delta(samples: dict, a: tuple, b: tuple, n_boot: int, seed: int) -> dict | None:
    sa, sb = samples.get(a), samples.get(b)
    if sa is None or sb is None or not stats.paired(sa, sb):
        return None
    return stats.paired_bootstrap(sa, sb, n_boot, seed)


def _interval(d: dict | None, scale: float = 1.0) -> str:
    if d is None:
        return ""
    star = "*" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""
    return f"{scale * d['delta']:+.2f} [{scale * d['ci_low']:.2f}, {scale * d['ci_high']:.2f}]{star}"


def recovery_frame(samples: dict, n_boot: int = stats.N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per recovered checkpoint and metric: dense, before, after, after - before and after - dense with
    their paired intervals, and the share of the gap to dense that recovery closed."""
    rows = []
    for (model, method, sp, metric), s in sorted(samples.items(), key=lambda kv: str(kv[0])):
        parts = split_name(method)
        if parts is None or metric not in METRICS:
            continue
        before = samples.get((model, parts[0], sp, metric))
        dense = samples.get((model, "dense", 0.0, metric))
        scale = 100.0 if metric == AVG else 1.0
        d_before = _delta(samples, (model, method, sp, metric), (model, parts[0], sp, metric), n_boot, seed)
        d_dense = _delta(samples, (model, method, sp, metric), (model, "dense", 0.0, metric), n_boot, seed)
        closed = None
        if before is not None and dense is not None and before.point() != dense.point():
            closed = (before.point() - s.point()) / (before.point() - dense.point())
        rows.append({"model": model, "method": parts[0], "variant": parts[1], "sparsity": sp, "metric": metric,
                     "dense": scale * dense.point() if dense else None,
                     "before": scale * before.point() if before else None, "after": scale * s.point(),
                     "n": s.n, "after_minus_before": _interval(d_before, scale),
                     "after_minus_dense": _interval(d_dense, scale),
                     "gap_closed": None if closed is None else round(100 * closed, 1)})
    return pd.DataFrame(rows)


def comparison_frame(samples: dict, references: dict, n_boot: int = stats.N_BOOT, seed: int = 0) -> pd.DataFrame:
    """For each configured comparison (method -> reference) whose two methods were both recovered with the same
    variant: the paired difference before and after recovery, and what became of it."""
    rows = []
    for (model, method, sp, metric), _ in sorted(samples.items(), key=lambda kv: str(kv[0])):
        parts = split_name(method)
        if parts is None or metric not in METRICS or parts[0] not in references:
            continue
        ref = references[parts[0]]
        before = _delta(samples, (model, parts[0], sp, metric), (model, ref, sp, metric), n_boot, seed)
        after = _delta(samples, (model, method, sp, metric), (model, f"{ref}{SEP}{parts[1]}", sp, metric), n_boot,
                       seed)
        if before is None or after is None:
            continue
        scale = 100.0 if metric == AVG else 1.0
        rows.append({"model": model, "comparison": f"{parts[0]} - {ref}", "variant": parts[1], "sparsity": sp,
                     "metric": metric, "before": _interval(before, scale), "after": _interval(after, scale),
                     "verdict": verdict(before, after)})
    return pd.DataFrame(rows)


def _resolved(d: dict) -> bool:
    return d["ci_low"] > 0 or d["ci_high"] < 0


def verdict(before: dict, after: dict) -> str:
    """persists / shrinks / grows / reverses / vanishes / appears / unresolved, judged by the intervals: a change
    of size is named only when the two intervals do not overlap."""
    rb, ra = _resolved(before), _resolved(after)
    if not rb and not ra:
        return "unresolved before and after"
    if rb and not ra:
        return "no longer resolved after recovery"
    if ra and not rb:
        return "resolved only after recovery"
    if (before["delta"] > 0) != (after["delta"] > 0):
        return "reverses"
    apart = after["ci_high"] < before["ci_low"] or after["ci_low"] > before["ci_high"]
    if not apart:
        return "persists"
    return "shrinks" if abs(after["delta"]) < abs(before["delta"]) else "grows"


def _render(frame: pd.DataFrame, ext: str) -> str:
    if frame.empty:
        return ""
    if ext == ".md":
        return frame.to_markdown(index=False)
    if ext == ".tex":
        return frame.to_latex(index=False)
    return frame.to_csv(index=False)


def recovery_table(samples: dict, references: dict, notes: list[str], ext: str, n_boot: int = stats.N_BOOT,
                   seed: int = 0) -> str:
    """The recovery report (``table_recovery``) as Markdown, LaTeX or CSV (the CSV: the per-checkpoint rows)."""
    main = recovery_frame(samples, n_boot, seed)
    comp = comparison_frame(samples, references, n_boot, seed)
    if not main.empty:
        main["metric"] = main["metric"].map(LABELS)
    if not comp.empty:
        comp["metric"] = comp["metric"].map(LABELS)
    if ext == ".csv":
        return _render(main, ext)
    if ext == ".tex":
        return _render(main, ext) + "\n" + _render(comp, ext)
    text = "## Recovery: each recovered checkpoint against its input and the dense model\n\n" + _render(main, ext)
    text += ("\n\nafter - before / after - dense: paired difference with its 95 % bootstrap interval (* when it "
             "excludes 0); gap closed: (before - after) / (before - dense), in %.\n")
    if not comp.empty:
        text += "\n## Method comparisons before and after recovery\n\n" + _render(comp, ext) + "\n"
    return text + "\n" + "".join(f"- {n}\n" for n in notes)


def curves_plot(curves: pd.DataFrame, path) -> None:
    """Held-out perplexity against training tokens, one line per recovered checkpoint, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fangprune.io import atomic_path

    models = sorted(curves["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        of = curves[curves["model"] == model]
        for (method, sp), c in of.groupby(["method", "sparsity"]):
            ax.plot(c["tokens"], c["heldout_ppl"], marker="o", label=f"{method} {100 * sp:.0f}%")
        ax.set_xlabel("training tokens")
        ax.set_ylabel("held-out PPL (recovery text)")
        ax.set_yscale("log")
        ax.set_title(model)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
