"""The diagnostics report: one row per pruned layer from the checkpoints' pruning.json (held-out reconstruction
errors of evaluate/diagnostics.py, achieved sparsity, functional-group statistics), and its per-checkpoint
summary (mean / max over layers), both from one DataFrame."""

from __future__ import annotations

import pandas as pd

COLUMNS = ["model", "method", "sparsity", "layer", "target_sparsity", "achieved_sparsity", "err_o_proj",
           "err_down_proj", "group_kept", "in_group_ratio", "ess_mean", "ess_min", "cluster_tokens", "shared_size"]


def _layer_row(man: dict, e: dict) -> dict:
    row = {"model": man["model"], "method": man["method"], "sparsity": man["sparsity"], "layer": e["layer"],
           "target_sparsity": e["target_sparsity"], "achieved_sparsity": e["achieved_sparsity"]}
    row.update({f"err_{name}": err for name, err in (e.get("reconstruction_error") or {}).items()})
    groups = e.get("groups")
    if groups:
        ess = [g["effective_sample_fraction"] for g in groups]
        row.update(group_kept="/".join(str(g["kept"]) for g in groups),
                   in_group_ratio=sum(g["in_group_ratio"] for g in groups) / len(groups),
                   ess_mean=sum(ess) / len(ess), ess_min=min(ess),
                   cluster_tokens="/".join(str(g["context_tokens"]) for g in groups),
                   shared_size=e.get("shared_size", 0))
    return row


def diagnostics_frame(manifests: list[dict]) -> pd.DataFrame:
    """One row per (model, method, sparsity, layer), in ``COLUMNS`` order (absent statistics are empty)."""
    rows = [_layer_row(man, e) for man in manifests for e in man["report"]["layers"]]
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def summary_markdown(frame: pd.DataFrame, holdout: str | None = None) -> str:
    """Per model, one row per (sparsity, method): mean and max relative error over layers, mean ESS."""
    out = ["## Diagnostics: relative reconstruction error on held-out calibration windows", ""]
    stats = frame.groupby(["model", "sparsity", "method"]).agg(
        o_mean=("err_o_proj", "mean"), o_max=("err_o_proj", "max"),
        down_mean=("err_down_proj", "mean"), down_max=("err_down_proj", "max"), ess=("ess_mean", "mean"))
    err = lambda v: "-" if pd.isna(v) else f"{v:.4f}"  # noqa: E731
    for model, block in stats.groupby(level="model"):
        view = pd.DataFrame({
            "Method": block.index.get_level_values("method"),
            "Sparsity": [f"{sp:.0%}" for sp in block.index.get_level_values("sparsity")],
            "o_proj mean": block["o_mean"].map(err).values, "o_proj max": block["o_max"].map(err).values,
            "down_proj mean": block["down_mean"].map(err).values,
            "down_proj max": block["down_max"].map(err).values,
            "ESS (mean over groups, layers)": block["ess"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}").values,
        })
        out += [f"### {model}", "", view.to_markdown(index=False, disable_numparse=True,
                                                      colalign=["left"] + ["right"] * 6), ""]
    out.append("- err = ||(W - W_hat) X + (b - b_hat)||^2 / ||W X||^2 over held-out windows of the calibration text "
               "(not used for any Hessian or statistic); layer-wise methods see the held-out stream through their "
               "own pruned layers, FLAP/F-FANG the dense stream." + (f" Held-out windows: {holdout}." if holdout else ""))
    out.append("- ESS = effective sample fraction of the token weights, (sum alpha)^2 / (T sum alpha^2), per "
               "functional group and window (1 = uniform weights).")
    return "\n".join(out) + "\n"
