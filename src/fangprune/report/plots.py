"""Figures: perplexity and mean zero-shot accuracy against sparsity, one line per method (dense at 0%); the
held-out reconstruction error per layer of every checkpoint (diagnostics)."""

from __future__ import annotations

from collections import defaultdict

from fangprune.report.tables import AVG, _index


def sparsity_curves(rows: list[dict], path) -> None:
    """One row of panels per model: WikiText-2 PPL (log scale) and, when evaluated, mean zero-shot accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = _index(rows)
    models = sorted({k[0] for k in by_key})
    panels = [("ppl_wikitext2", "WikiText-2 PPL", 1.0)]
    if any(AVG in v for v in by_key.values()):
        panels.append((AVG, "Mean zero-shot accuracy (%)", 100.0))
    fig, axes = plt.subplots(len(models), len(panels), figsize=(5 * len(panels), 3.6 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        dense = by_key.get((model, "dense", 0.0), {})
        series: dict = defaultdict(list)
        for (m, method, sp), vals in by_key.items():
            if m == model and method != "dense":
                series[method].append((sp, vals))
        for j, (metric, label, scale) in enumerate(panels):
            ax = axes[i][j]
            for method in sorted(series):
                pts = sorted((sp, v[metric]) for sp, v in series[method] if metric in v)
                if metric in dense:
                    pts = [(0.0, dense[metric])] + pts
                if pts:
                    ax.plot([100 * p for p, _ in pts], [scale * v for _, v in pts], marker="o", label=method)
            if metric in dense:
                ax.axhline(scale * dense[metric], color="grey", linestyle="--", linewidth=0.8, label="dense")
            if metric == "ppl_wikitext2":
                ax.set_yscale("log")
            _label(ax, "sparsity (%)", label, model)
    _save(fig, axes, path)


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _save(fig, axes, path) -> None:
    import matplotlib.pyplot as plt

    for row in axes:
        row[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def plot_errors(rows: list[dict], path) -> None:
    """Relative down_proj / o_proj error per layer, one line per method and sparsity, one panel row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for j, name in enumerate(("err_down_proj", "err_o_proj")):
            ax = axes[i][j]
            for method, sp in sorted({(r["method"], r["sparsity"]) for r in rows if r["model"] == model}):
                pts = sorted((r["layer"], r[name]) for r in rows
                             if (r["model"], r["method"], r["sparsity"]) == (model, method, sp) and name in r)
                if pts:
                    ax.plot([p for p, _ in pts], [v for _, v in pts], marker=".", label=f"{method} {sp:.0%}")
            _label(ax, "layer", f"relative error ({name[4:]}, held-out windows)", model)
    _save(fig, axes, path)
