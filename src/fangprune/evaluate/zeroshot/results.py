"""Evaluation JSONs -> rows of the long metrics table, and the notes that say how the numbers were obtained."""

from __future__ import annotations

from fangprune.evaluate.zeroshot.local_data import APPROXIMATE
from fangprune.evaluate.zeroshot.tasks import DISPLAY


def evaluation_rows(ppl: list[dict], zeroshot: list[dict], speed: list[dict] = ()) -> list[dict]:
    """Rows (model, method, sparsity, metric, value) from perplexity and zero-shot result files.

    Zero-shot metrics: ``<task>`` is the paper's column (acc_norm where present, else acc), ``<task>/acc`` and
    ``<task>/acc_norm`` the raw metrics, ``<task>/n`` the examples scored; MMLU adds ``mmlu/<category>``.
    """
    rows = []
    dense_block = {e["model"]: e["block_params"] for e in ppl if e["method"] == "dense"}
    for e in ppl:
        key = {"model": e["model"], "method": e["method"], "sparsity": float(e["sparsity"])}
        rows.append({**key, "metric": f"ppl_{e.get('dataset', 'wikitext2')}", "value": e["ppl"]})
        rows.append({**key, "metric": "params", "value": e["params"]})
        if e["model"] in dense_block:
            rows.append({**key, "metric": "block_params_kept_frac", "value": e["block_params"] / dense_block[e["model"]]})
        if e.get("block_zero_frac") is not None:  # unstructured / N:M: zeros in dense tensors
            rows.append({**key, "metric": "block_zero_frac", "value": e["block_zero_frac"]})
    for e in zeroshot:
        key = {"model": e["model"], "method": e["method"], "sparsity": float(e["sparsity"])}
        task = e["task"]
        rows.append({**key, "metric": task, "value": e["value"]})
        rows.append({**key, "metric": f"{task}/n", "value": e["n"]})
        for name in ("acc", "acc_norm"):
            if e["metrics"].get(name) is not None:
                rows.append({**key, "metric": f"{task}/{name}", "value": e["metrics"][name]})
        for category, c in (e.get("categories") or {}).items():
            rows.append({**key, "metric": f"{task}/{category}", "value": c["acc"]})
    for e in speed:
        key = {"model": e["model"], "method": e["method"], "sparsity": float(e["sparsity"])}
        for metric in ("disk_ratio", "prefill_speedup", "decode_speedup"):
            row = {**key, "metric": metric, "value": e[metric]}
            spread = e.get(f"{metric}_spread")
            if spread:  # min / max over the alternating repeats
                row.update(n=spread["n"], ci_low=spread["min"], ci_high=spread["max"])
            rows.append(row)
        rows.append({**key, "metric": "disk_mb", "value": e["pruned"]["disk_bytes"] / 1e6})
        dense = {"model": e["model"], "method": "dense", "sparsity": 0.0}
        rows.append({**dense, "metric": "disk_mb", "value": e["dense"]["disk_bytes"] / 1e6})
    return _dedupe(rows)


def _dedupe(rows: list[dict]) -> list[dict]:
    # the dense model's size arrives once per speed file; keep one row per key
    seen, out = set(), []
    for r in rows:
        k = (r["model"], r["method"], r["sparsity"], r["metric"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def speed_notes(speed: list[dict]) -> list[str]:
    if not speed:
        return []
    e = speed[0]
    zeroed = [
        "Unstructured / N:M checkpoints store their zeros in dense tensors: no speedup is expected from them on a "
        "CPU (2:4 semi-structured kernels need a GPU), and none is claimed."
    ] if any(s.get("zeroed") for s in speed) else []
    return zeroed + [
        f"Speed: pruned vs dense tokens/s in one process ({e['device']}, {e['threads']} threads, {e['dtype']}); "
        f"prefill of {e['batch_size']} x {e['prompt_len']} tokens, {e['decode_tokens']} cached decode steps; "
        f"median [min, max] over {e.get('prefill_speedup_spread', {}).get('n', e.get('repeats', '?'))} alternating "
        "dense/pruned repeats. Size = safetensors bytes on disk."
    ]


def zeroshot_notes(zeroshot: list[dict]) -> list[str]:
    """How the zero-shot columns were computed: metric per task, examples scored, shots, data caveats."""
    if not zeroshot:
        return []
    by_task: dict[str, list[dict]] = {}
    for e in zeroshot:
        by_task.setdefault(e["task"], []).append(e)
    versions = sorted({e["lm_eval_version"] for e in zeroshot})
    metric = {t: es[0]["paper_metric"] for t, es in by_task.items()}
    norm = [DISPLAY[t] for t in by_task if metric[t] == "acc_norm"]
    plain = [DISPLAY[t] for t in by_task if metric[t] == "acc"]
    notes = [
        f"Zero-shot: lm-evaluation-harness {', '.join(versions)}, builtin prompts; the column is acc_norm where the "
        f"task reports it, else acc (acc_norm: {', '.join(norm) or '-'}; acc: {', '.join(plain) or '-'})."
    ]
    sizes = []
    for t, es in by_task.items():
        n, total, shots = {e["n"] for e in es}, es[0]["n_total"], {e["num_fewshot"] for e in es}
        limit = es[0]["limit"]
        scope = " per subject" if t == "mmlu" else ""
        part = f"{DISPLAY[t]} {'/'.join(map(str, sorted(n)))} of {total}"
        if limit is not None:
            part += f" (first {limit}{scope})"
        if shots != {0}:
            part += f", {'/'.join(map(str, sorted(shots)))}-shot"
        sizes.append(part)
    limited = any(e["limit"] is not None for e in zeroshot)
    notes.append(("Examples scored (a LIMITED subset, not the full test sets): " if limited else "Examples scored: ")
                 + "; ".join(sizes) + ".")
    sources = sorted({s for e in zeroshot for s in e["source"]})
    notes.append(f"Zero-shot data: {', '.join(sources)}.")
    for t, es in by_task.items():
        if not all(e["exact_data"] for e in es) and t in APPROXIMATE:
            notes.append(f"APPROXIMATE: {APPROXIMATE[t]}.")
    if "mmlu" in by_task:
        notes.append("MMLU: accuracy weighted by subject size, overall and per category (lm-eval's mmlu group).")
    return notes
