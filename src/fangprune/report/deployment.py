"""The deployment table: every exported GGUF with its size, export time, perplexity through llama.cpp next to
the PyTorch figure of the same windows, and its llama.cpp prompt / generation speedup over the dense GGUF of the
same tensor type (median [min, max] over alternating repeats) beside the FLOP-ratio limit.

One long DataFrame (one row per file) is the source; the Markdown table is a formatted view of it.
"""

from __future__ import annotations

import pandas as pd

KEY = ["model", "method", "sparsity", "gguf_type"]


def _key(d: dict) -> dict:
    return {"model": d["model"], "method": d["method"], "sparsity": float(d["sparsity"]),
            "gguf_type": d["gguf_type"]}


def deployment_frame(exports: list[dict], engine_ppl: list[dict], engine_speed: list[dict]) -> pd.DataFrame:
    """One row per exported file. ``exports``: the export reports with their key (model, method, sparsity,
    gguf_type) added; ``engine_ppl``, ``engine_speed``: the engine rules' metrics."""
    rows = pd.DataFrame([{**_key(e), "mb": e["bytes"] / 1e6, "export_s": e["seconds"],
                          "architecture": e["architecture"], "f16_fallbacks": len(e["f16_fallbacks"])}
                         for e in exports], columns=[*KEY, "mb", "export_s", "architecture", "f16_fallbacks"])
    if engine_ppl:
        ppl = pd.DataFrame([{**_key(m), "dataset": m["dataset"], "ppl": m["ppl"], "torch": m["torch_ppl"],
                             "rel": m["rel_diff"], "n": m["windows"]} for m in engine_ppl])
        wide = ppl.pivot(index=KEY, columns="dataset", values=["ppl", "torch", "rel", "n"])
        wide.columns = [f"{ds}_{v}" if v != "ppl" else f"{ds}_llamacpp" for v, ds in wide.columns]
        rows = rows.merge(wide.reset_index(), on=KEY, how="left")
    if engine_speed:
        speed = pd.DataFrame([{**_key(m), **{f"{part}_{stat}": m[f"{part}_speedup"][stat]
                                             for part in ("prompt", "gen") for stat in ("median", "min", "max")},
                               "repeats": m["repeats"], "threads": m["threads"],
                               "flop_ratio_limit": m["flop_ratio_limit"], "engine": m["engine"]}
                              for m in engine_speed])
        rows = rows.merge(speed, on=KEY, how="left")
    # dense first, then the methods in the order they came (the config's), each by sparsity
    order = {m: i for i, m in enumerate(dict.fromkeys(["dense", *rows["method"]]))}
    return (rows.assign(_order=rows["method"].map(order))
            .sort_values(["model", "gguf_type", "_order", "sparsity"], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def _spread(frame: pd.DataFrame, part: str) -> pd.Series:
    return frame.apply(
        lambda r: "" if pd.isna(r.get(f"{part}_median")) else
        f"{r[f'{part}_median']:.2f}x [{r[f'{part}_min']:.2f}, {r[f'{part}_max']:.2f}]", axis=1)


def deployment_markdown(frame: pd.DataFrame) -> str:
    """The table for readers: perplexities to 2 decimals, speedups as median [min, max], and notes under it."""
    view = pd.DataFrame({
        "model": frame["model"], "method": frame["method"],
        "sparsity": frame["sparsity"].map(lambda p: "-" if p == 0 else f"{p:.0%}"),
        "type": frame["gguf_type"], "arch": frame["architecture"], "MB": frame["mb"].round(1),
        "export s": frame["export_s"].round(1),
    })
    datasets = sorted(c[: -len("_llamacpp")] for c in frame.columns if c.endswith("_llamacpp"))
    for ds in datasets:
        view[f"{ds} llama.cpp"] = frame[f"{ds}_llamacpp"].map("{:.2f}".format)
        view[f"{ds} PyTorch"] = frame[f"{ds}_torch"].map("{:.2f}".format)
        view[f"{ds} diff"] = frame[f"{ds}_rel"].map("{:+.2%}".format)
    if "prompt_median" in frame:
        view["prompt speedup"] = _spread(frame, "prompt")
        view["generation speedup"] = _spread(frame, "gen")
        view["FLOP-ratio limit"] = frame["flop_ratio_limit"].map(lambda x: "" if pd.isna(x) else f"{x:.2f}x")
    notes = ["MB: file size (10^6 bytes); arch: llama when every layer has the same widths, deci otherwise."]
    if datasets:
        n = {int(frame[f"{ds}_n"].iloc[0]) for ds in datasets}
        notes.append(f"Perplexity through llama.cpp on the first n = {', '.join(map(str, sorted(n)))} of the "
                     "workflow's own evaluation windows, next to the PyTorch figure of the same checkpoint on the "
                     "same windows; diff = llama.cpp / PyTorch - 1.")
    if "prompt_median" in frame:
        speed = frame.dropna(subset=["prompt_median"])
        if len(speed):
            r = speed.iloc[0]
            notes.append(f"Speedup: dense / pruned seconds of each alternating pair of runs in {r['engine']}, "
                         f"threads: {int(r['threads'])}, median [min, max] over {int(r['repeats'])} repeats, "
                         "against the dense GGUF of the same type. FLOP-ratio limit: dense / pruned decoder-block "
                         "weights, the speedup a matmul-bound engine could reach.")
    return view.to_markdown(index=False) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
