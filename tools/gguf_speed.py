"""llama.cpp speedups of exported GGUFs against the dense export of the same type, with the FLOP-ratio limit.

    python tools/gguf_speed.py --dense results/export/gguf/M/dense.f16.gguf results/export/gguf/M/o-fang/sp0.40.f16.gguf ...

The workflow's ``engine_speed`` rule measures the same per checkpoint; this runs it on any files. The limit is
``evaluate.engine_speed.flop_ratio_limit``.
"""

import argparse
import json
from pathlib import Path

from fangprune.evaluate.engine_speed import flop_ratio_limit, llamacpp_speed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pruned", nargs="+")
    ap.add_argument("--dense", required=True)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for g in args.pruned:
        res = llamacpp_speed(args.dense, g, args.prompt_len, args.gen_tokens, args.repeats, args.threads)
        rows.append({"gguf": g, "flop_ratio_limit": flop_ratio_limit(args.dense, g), **res,
                     "bytes": Path(g).stat().st_size, "dense_bytes": Path(args.dense).stat().st_size})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
