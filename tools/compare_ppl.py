"""Paired perplexity differences between checkpoints of a workflow run, from their per-window NLLs.

    python tools/compare_ppl.py --run-dir RUN --model MODEL --sparsity 0.40 A:B [A:B ...] [--datasets wikitext2 ptb]

``A:B`` names two methods of the run (``dense`` for the dense model; recovered checkpoints as ``method+variant``);
each line is A's perplexity, B's, A - B with its 95 % paired bootstrap interval over the shared windows (the
tables' statistic, ``fangprune.report.stats.paired_bootstrap``).
For comparisons the tables do not show: checkpoints of different runs' configs in one directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fangprune.report.stats import paired_bootstrap, sample


def ppl_file(run: Path, dataset: str, model: str, method: str, sparsity: str) -> Path:
    base = run / "results" / "eval" / "ppl" / dataset / model
    return base / "dense.json" if method == "dense" else base / method / f"sp{sparsity}.json"


def compare(run: Path, model: str, sparsity: str, pairs: list[tuple[str, str]], datasets: list[str]) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        for a, b in pairs:
            ea, eb = (json.loads(ppl_file(run, dataset, model, m, sparsity).read_text()) for m in (a, b))
            d = paired_bootstrap(sample("ppl", ea["window_nll"]), sample("ppl", eb["window_nll"]))
            rows.append({"dataset": dataset, "A": a, "B": b, "PPL A": round(ea["ppl"], 2), "PPL B": round(eb["ppl"], 2),
                         "A - B": round(d["delta"], 2), "95 % interval": f"[{d['ci_low']:.2f}, {d['ci_high']:.2f}]",
                         "n": d["n"], "resolved": d["resolved"]})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--sparsity", required=True, help="as in the paths, e.g. 0.40")
    p.add_argument("--datasets", nargs="+", default=["wikitext2", "ptb", "c4"])
    p.add_argument("pairs", nargs="+", help="A:B")
    args = p.parse_args(argv)
    pairs = [tuple(x.split(":", 1)) for x in args.pairs]
    print(compare(args.run_dir, args.model, args.sparsity, pairs, args.datasets).to_markdown(index=False))


if __name__ == "__main__":
    main()
