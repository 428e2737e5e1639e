"""Figures: perplexity and mean zero-shot accuracy against sparsity, one line per method (dense at 0%); the
held-out reconstruction error per layer of every checkpoint (diagnostics). Both plot columns of a DataFrame."""

from __future__ import annotations

import pandas as pd

from fangprune.report.tables import AVG, value_table


def sparsity_curves(rows: list[dict], path) -> None:
    """One row of panels per model: WikiText-2 PPL (log scale) and, when evaluated, mean zero-shot accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = value_table(rows).reset_index()
    models = sorted(values["model"].unique())
    panels = [("ppl_wikitext2", "WikiText-2 PPL", 1.0)]
    if AVG in values and values[AVG].notna().any():
        panels.append((AVG, "Mean zero-shot accuracy (%)", 100.0))
    fig, axes = plt.subplots(len(models), len(panels), figsize=(5 * len(panels), 3.6 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        of_model = values[values["model"] == model]
        dense = of_model[of_model["method"] == "dense"]
        for j, (metric, label, scale) in enumerate(panels):
            ax = axes[i][j]
            if metric not in of_model:
                continue
            base = dense[metric].dropna()
            for method, curve in of_model[of_model["method"] != "dense"].groupby("method"):
                pts = pd.concat([dense.assign(sparsity=0.0), curve])[["sparsity", metric]].dropna()
                pts = pts.sort_values("sparsity")
                if len(pts):
                    ax.plot(100 * pts["sparsity"], scale * pts[metric], marker="o", label=method)
            if len(base):
                ax.axhline(scale * base.iloc[0], color="grey", linestyle="--", linewidth=0.8, label="dense")
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


def plot_errors(frame: pd.DataFrame, path) -> None:
    """Relative down_proj / o_proj error per layer, one line per method and sparsity, one panel row per model
    (``frame``: report/diagnostics.py's per-layer rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(frame["model"].unique())
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for j, name in enumerate(("err_down_proj", "err_o_proj")):
            ax = axes[i][j]
            of_model = frame[frame["model"] == model].dropna(subset=[name])
            for (method, sp), curve in of_model.groupby(["method", "sparsity"]):
                curve = curve.sort_values("layer")
                ax.plot(curve["layer"], curve[name], marker=".", label=f"{method} {sp:.0%}")
            _label(ax, "layer", f"relative error ({name[4:]}, held-out windows)", model)
    _save(fig, axes, path)
