"""Cross-check the workflow's wanda and sparsegpt against llm-compressor's, on the same calibration windows.

llmcompressor 0.14 pins transformers 5.15-5.17 and compressed-tensors 0.19, so it lives in its own venv:

    python -m venv <venv>
    <venv>/bin/pip install torch==2.13.0 llmcompressor==0.14.0.1

Steps, reading and writing under one directory ``DIR`` (and ``OURS``):

1. Run the workflow with ``configs/unstructured.yaml``: it writes the dense model as a plain checkpoint
   (``results/models/<model>``), the calibration windows (``results/calibration/<model>/<calib>.pt``), and the
   project's own wanda / sparsegpt checkpoints, perplexities and prune benchmarks.
2. In the llm-compressor venv, prune that dense checkpoint on exactly those windows (one run per method and
   pattern; the pruned model is saved dense with its zeros, and the wall times go to ``timing.json``)::

       <venv>/bin/python tools/llmcompressor_crosscheck.py prune --dense results/models/smollm2-135m \\
           --windows results/calibration/smollm2-135m/wikitext2-n32-l512-s0.pt --method wanda --pattern 2:4 \\
           --out DIR/wanda-2of4

3. Optionally, time the workflow's own prune the same way (a library call without the workflow's held-out
   diagnostics), run side by side like the others::

       python tools/llmcompressor_crosscheck.py ours --dense results/models/smollm2-135m \
           --windows results/calibration/smollm2-135m/wikitext2-n32-l512-s0.pt --method wanda --pattern 2:4 \
           --out OURS/wanda-2of4

4. In the project's environment, score every llm-compressor checkpoint with the workflow's perplexity code
   (same texts, window length and window count as the workflow run) and compare with the workflow's numbers:
   per method and pattern, both perplexities, their relative difference with a paired bootstrap interval over
   the evaluation windows, and both prune wall times::

       python tools/llmcompressor_crosscheck.py score --results results --model smollm2-135m --sparsity 0.50 \\
           --runs DIR/* --ours-runs OURS/* --data-dir ../shared/data --out DIR/crosscheck.md

5. To compare the project's ``ours`` checkpoints instead of the workflow run (e.g. ``--numerics reference`` or
   another ``--batch-size``), add ``--ours-checkpoints``: they are scored with the same code and windows.
6. ``masks A B`` lists, per decoder linear in layer order, the positions where two checkpoints' zeros differ
   (the first differing linear shows where two prunes part).

Agreement targets (issue 16): within 1 % for Wanda and 3 % for SparseGPT.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

TOLERANCE = {"wanda": 0.01, "sparsegpt": 0.03}
#: workflow method name of each (method, pattern) pair run through llm-compressor
WORKFLOW_NAME = {("wanda", "unstructured"): "wanda", ("wanda", "2:4"): "wanda-2of4",
                 ("sparsegpt", "unstructured"): "sparsegpt", ("sparsegpt", "2:4"): "sparsegpt-2of4"}


def prune(args: argparse.Namespace) -> None:
    """llm-compressor one-shot on the workflow's windows; save dense with zeros; record wall times."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    windows = torch.load(args.windows, weights_only=False)["input_ids"]
    ds = Dataset.from_dict({"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()})
    model = AutoModelForCausalLM.from_pretrained(args.dense, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(args.dense)
    structure = "0:0" if args.pattern == "unstructured" else args.pattern
    modifier = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[args.method]
    # the LM head stays dense, as in the workflow; 0.14 matches it as "lm_head.", so a bare "lm_head" misses it
    recipe = [modifier(sparsity=args.sparsity, mask_structure=structure, ignore=["re:.*lm_head"])]
    t1 = time.perf_counter()
    oneshot(model=model, processor=tok, dataset=ds, recipe=recipe, num_calibration_samples=len(windows),
            max_seq_length=windows.shape[1], shuffle_calibration_samples=False, pipeline="sequential")
    t2 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, save_compressed=False)
    tok.save_pretrained(out)
    t3 = time.perf_counter()
    from importlib.metadata import version

    (out / "timing.json").write_text(json.dumps({
        "method": args.method, "pattern": args.pattern, "sparsity": args.sparsity, "windows": list(windows.shape),
        "threads": args.threads, "oneshot_s": t2 - t1, "total_s": t3 - t0,
        "versions": {p: version(p) for p in ("llmcompressor", "compressed-tensors", "transformers", "torch")},
        "python": platform.python_version(),
    }, indent=2) + "\n")
    print(json.dumps({"out": str(out), "oneshot_s": round(t2 - t1, 1), "total_s": round(t3 - t0, 1)}))


def ours(args: argparse.Namespace) -> None:
    """The workflow's own prune of one method, timed like ``prune`` (library call, no held-out diagnostics)."""
    t0 = time.perf_counter()
    import torch

    from fangprune.methods.registry import resolve_method
    from fangprune.modeling.checkpoint import save_pruned
    from fangprune.modeling.models import load_model, load_tokenizer
    from fangprune.prune.driver import prune_model

    torch.set_num_threads(args.threads)
    model = load_model(args.dense)
    windows = torch.load(args.windows, weights_only=False)["input_ids"]
    params = resolve_method(args.method, {"sparsity_type": args.pattern, "numerics": args.numerics})
    t1 = time.perf_counter()
    prune_model(model, windows, params, [args.sparsity] * model.config.num_hidden_layers, torch.device("cpu"),
                batch_size=args.batch_size)
    t2 = time.perf_counter()
    save_pruned(model, load_tokenizer(args.dense), args.out, {"params": params}, structured=False)
    t3 = time.perf_counter()
    timing = {"method": args.method, "pattern": args.pattern, "sparsity": args.sparsity, "threads": args.threads,
              "numerics": args.numerics, "batch_size": args.batch_size,
              "prune_s": t2 - t1, "total_s": t3 - t0}
    (Path(args.out) / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing))


def score(args: argparse.Namespace) -> None:
    """Workflow perplexity of each llm-compressor checkpoint next to the project's: the workflow run's numbers,
    or (``--ours-checkpoints``) the checkpoints the ``ours`` subcommand wrote, scored the same way."""
    import torch

    from fangprune.data import evaluation_text, protocol_windows
    from fangprune.evaluate.perplexity import perplexity
    from fangprune.io import read_json
    from fangprune.modeling.checkpoint import load_pruned
    from fangprune.modeling.models import block_zero_frac, load_tokenizer
    from fangprune.report.stats import paired_bootstrap, sample

    torch.set_num_threads(args.threads)
    res = Path(args.results)
    ours_t = {}
    for r in args.ours_runs:
        t = read_json(Path(r) / "timing.json")
        ours_t[(t["method"], t["pattern"])] = (Path(r), t)
    texts = {}

    @functools.lru_cache(maxsize=2)  # llm-compressor's and ours, alternately per dataset
    def checkpoint(run: Path):
        return load_pruned(run).eval(), load_tokenizer(str(run))

    def checkpoint_ppl(run: Path, dataset: str) -> dict:
        cache = run / f"ppl_{dataset}.json"  # computed once per checkpoint
        if cache.exists():
            return read_json(cache)
        if dataset not in texts:
            texts[dataset] = evaluation_text(dataset, args.data_dir)
        model, tok = checkpoint(run)
        ids = tok(texts[dataset].text, return_tensors="pt", add_special_tokens=False).input_ids[0]
        out = perplexity(model, ids, args.seqlen, torch.device("cpu"), protocol_windows(dataset, args.max_windows), 1)
        out["seqlen"] = args.seqlen
        cache.write_text(json.dumps(out) + "\n")
        return out

    rows = []
    for run in sorted(Path(r) for r in args.runs):
        timing = read_json(run / "timing.json")
        key = (timing["method"], timing["pattern"])
        name = WORKFLOW_NAME[key]
        ours_run, ours_timing = ours_t.get(key, (None, None))
        if args.ours_checkpoints and ours_run is None:
            raise SystemExit(f"{run}: no --ours-runs directory for {key}")
        row = {"method": timing["method"], "pattern": timing["pattern"], "workflow_method": name,
               "llmc_zero_frac": block_zero_frac(checkpoint(run)[0]),
               "llmc_oneshot_s": timing["oneshot_s"], "llmc_total_s": timing["total_s"],
               "ours_nodiag": ours_timing, "ours_source": "ours checkpoints" if args.ours_checkpoints else "workflow"}
        if not args.ours_checkpoints:
            bench = res.parent / "benchmarks" / "prune" / args.model / name / f"sp{args.sparsity}.tsv"
            ours_prune = read_json(res / "pruned" / args.model / name / f"sp{args.sparsity}" / "pruning.json")
            row["ours_prune_s"] = ours_prune["resources"]["wall_s"]
            row["ours_job_s"] = float(bench.read_text().splitlines()[1].split("\t")[0]) if bench.exists() else None
        for dataset in args.datasets:
            theirs = checkpoint_ppl(run, dataset)
            if args.ours_checkpoints:
                ours = checkpoint_ppl(ours_run, dataset)
            else:
                ours = read_json(res / "eval" / "ppl" / dataset / args.model / name / f"sp{args.sparsity}.json")
            if (ours["seqlen"], ours["windows"]) != (theirs["seqlen"], theirs["windows"]):
                raise SystemExit(f"{run}: {dataset} windows differ from the workflow's "
                                 f"({theirs['seqlen']} x {theirs['windows']} vs {ours['seqlen']} x {ours['windows']})")
            a, b = sample("ppl", ours["window_nll"]), sample("ppl", theirs["window_nll"])
            d = paired_bootstrap(a, b)
            row[dataset] = {"ours": ours["ppl"], "llmc": theirs["ppl"], "rel": ours["ppl"] / theirs["ppl"] - 1,
                            "rel_ci": [d["ci_low"] / theirs["ppl"], d["ci_high"] / theirs["ppl"]],
                            "windows": theirs["windows"],
                            "windows_equal": sum(x == y for x, y in zip(ours["window_nll"], theirs["window_nll"]))}
        rows.append(row)
        print(json.dumps(row))
    lines = ["| method | pattern | dataset | ours PPL | llm-compressor PPL | ours / theirs - 1 [95 % paired CI] | "
             "windows with equal NLL | within target | prune s: ours, workflow (step / job) | "
             "ours, no diagnostics (prune / total) | llm-compressor (oneshot / total) |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for row in rows:
        for dataset in args.datasets:
            c = row[dataset]
            ok = abs(c["rel"]) <= TOLERANCE[row["method"]]
            step = f"{row['ours_prune_s']:.0f}" if row.get("ours_prune_s") is not None else "-"
            job = f"{row['ours_job_s']:.0f}" if row.get("ours_job_s") is not None else "-"
            nd = row["ours_nodiag"]
            nodiag = f"{nd['prune_s']:.0f} / {nd['total_s']:.0f}" if nd else "-"
            method = row["method"] + (f" ({nd['numerics']})" if nd and "numerics" in nd else "")
            lines.append(
                f"| {method} | {row['pattern']} | {dataset} | {c['ours']:.2f} | {c['llmc']:.2f} | "
                f"{100 * c['rel']:+.2f} % [{100 * c['rel_ci'][0]:+.2f}, {100 * c['rel_ci'][1]:+.2f}] | "
                f"{c['windows_equal']} / {c['windows']} | "
                f"{'yes' if ok else 'NO'} (±{100 * TOLERANCE[row['method']]:.0f} %) | "
                f"{step} / {job} | {nodiag} | {row['llmc_oneshot_s']:.0f} / {row['llmc_total_s']:.0f} |")
    n = {d: rows[0][d]["windows"] for d in args.datasets} if rows else {}
    lines += ["", f"Perplexity windows per dataset: {n} (the workflow's evaluation windows, paired per window). "
              "Prune times (s, 1 thread, two jobs side by side on 2 cores): ours, workflow = the prune step (load, "
              "calibration, pruning, held-out diagnostics on 8 windows) / the whole job (with the save); ours, no "
              "diagnostics = prune_model() / load + prune + save ('ours' subcommand); llm-compressor = oneshot() / "
              "load + oneshot + save."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(rows, indent=2, default=float) + "\n")
    print("\n".join(lines))


def masks(args: argparse.Namespace) -> None:
    """Positions where the zeros of two pruned checkpoints differ, per decoder linear, in layer order."""
    from safetensors.torch import load_file

    def weights(d):
        out = {}
        for f in sorted(Path(d).glob("*.safetensors")):
            out.update({k: v for k, v in load_file(f).items() if ".layers." in k and k.endswith("proj.weight")})
        return out

    wa, wb = weights(args.a), weights(args.b)
    if wa.keys() != wb.keys():
        raise SystemExit(f"the checkpoints hold different linears: {sorted(wa.keys() ^ wb.keys())[:5]}")

    def layer_key(k):
        return int(k.split(".layers.")[1].split(".")[0]), k

    rows, total, diff = [], 0, 0
    for k in sorted(wa, key=layer_key):
        za, zb = wa[k] == 0, wb[k] == 0
        n = int((za != zb).sum())
        rows.append({"linear": k, "differ": n, "numel": za.numel(), "max_abs_diff": float((wa[k] - wb[k]).abs().max())})
        total, diff = total + za.numel(), diff + n
    first = next((r["linear"] for r in rows if r["differ"]), None)
    summary = {"differ": diff, "numel": total, "fraction": diff / total, "first_differing": first,
               "linears_differing": sum(r["differ"] > 0 for r in rows), "linears": len(rows)}
    print(json.dumps(summary))
    for r in rows[:14]:
        print(json.dumps(r))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "linears": rows}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    for a in ("--dense", "--windows", "--out"):
        common.add_argument(a, required=True)
    common.add_argument("--method", choices=["wanda", "sparsegpt"], required=True)
    common.add_argument("--pattern", choices=["unstructured", "2:4"], required=True)
    common.add_argument("--sparsity", type=float, default=0.5)
    common.add_argument("--threads", type=int, default=1)
    sub.add_parser("prune", parents=[common], help="llm-compressor one-shot (run in its own venv)")
    o = sub.add_parser("ours", parents=[common], help="the workflow's prune of one method, timed the same way")
    o.add_argument("--numerics", choices=["exact", "reference"], default="exact",
                   help="the unstructured methods' numerics option (reference = fp32 running mean + topk)")
    o.add_argument("--batch-size", type=int, default=1,
                   help="calibration windows per forward (changes only fp32 rounding: a noise-floor probe)")
    m = sub.add_parser("masks", help="where two checkpoints' zeros differ, per decoder linear (project env)")
    m.add_argument("a")
    m.add_argument("b")
    m.add_argument("--out", default=None, help="JSON with the per-linear counts")
    s = sub.add_parser("score", help="workflow perplexity of llm-compressor checkpoints (project env)")
    s.add_argument("--results", default="results")
    s.add_argument("--model", default="smollm2-135m")
    s.add_argument("--sparsity", default="0.50")
    s.add_argument("--runs", nargs="+", required=True)
    s.add_argument("--datasets", nargs="+", default=["wikitext2", "ptb"])
    s.add_argument("--data-dir", default=None)
    s.add_argument("--seqlen", type=int, default=512, help="the workflow's evaluation.seqlen")
    s.add_argument("--max-windows", type=int, default=32, help="the workflow's evaluation.max_windows")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--ours-runs", nargs="*", default=[], help="directories written by 'ours' (timings)")
    s.add_argument("--ours-checkpoints", action="store_true",
                   help="score the --ours-runs checkpoints instead of reading the workflow run's perplexities")
    s.add_argument("--out", required=True)
    args = ap.parse_args()
    {"prune": prune, "ours": ours, "masks": masks, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
