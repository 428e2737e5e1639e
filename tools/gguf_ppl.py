"""WikiText-2 / PTB / C4 perplexity of exported GGUF files through llama.cpp, on the workflow's own windows, next
to the workflow's PyTorch figure and the paired difference.

    python tools/gguf_ppl.py --run-dir RUN --model smollm2-135m --dataset wikitext2 --seqlen 512 \
        --max-windows 32 results/export/gguf/smollm2-135m/dense.f16.gguf ...

Each GGUF's PyTorch counterpart is read from RUN/results/eval/ppl/<dataset>/<model>/<method>/sp<p>.json (or
dense.json), whose per-window NLLs pair with llama.cpp's.
"""

import argparse
import json
import math
import re
import time
from pathlib import Path

from fangprune.data import evaluation_text, protocol_windows
from fangprune.evaluate.engine_ppl import llamacpp_perplexity
from fangprune.evaluate.perplexity import evaluation_windows
from fangprune.modeling.models import load_tokenizer
from fangprune.report import stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ggufs", nargs="+")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--max-windows", type=int, default=32)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    run = Path(args.run_dir)
    tok = load_tokenizer(str(run / "results/models" / args.model))
    text = evaluation_text(args.dataset, args.data_dir)
    ids = tok(text.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    windows = evaluation_windows(ids, args.seqlen, protocol_windows(args.dataset, args.max_windows))
    n = windows.shape[0]
    rows = []
    for g in args.ggufs:
        m = re.search(r"/([^/]+)/(?:(sp[\d.]+)|dense)\.([a-z0-9_]+)\.gguf$", g)
        ref = (run / f"results/eval/ppl/{args.dataset}/{args.model}/dense.json" if m.group(2) is None else
               run / f"results/eval/ppl/{args.dataset}/{args.model}/{m.group(1)}/{m.group(2)}.json")
        torch_ppl = json.loads(ref.read_text())
        start = time.perf_counter()
        res = llamacpp_perplexity(g, windows, args.threads)
        paired = stats.paired_bootstrap(stats.sample("ppl", res["window_nll"]), stats.sample("ppl", torch_ppl["window_nll"][:n]))
        torch_n = math.exp(sum(torch_ppl["window_nll"][:n]) / n)  # the PyTorch figure on the same n windows
        rows.append({"gguf": g, "llama_cpp_ppl": res["ppl"], "torch_ppl": torch_n,
                     "torch_windows": torch_ppl["windows"], "windows": n,
                     "rel_diff": res["ppl"] / torch_n - 1, "ppl_diff": paired,
                     "seconds": time.perf_counter() - start, "bytes": Path(g).stat().st_size})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
