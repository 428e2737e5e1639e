"""Benchmark of the dampened fp64 inverse of the OBS methods: torch's cholesky + cholesky_inverse against
fangprune's blocked in-place path (core.obs.invert_spd_in_place), wall time and added peak RSS.

    python tools/bench_inverse.py [N ...] [--threads T]

Each case runs in its own process (a process's peak RSS only grows). The matrix is built in place
(0.5 J + n I) so that the only n x n float64 matrices counted are the inversion's own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import pandas as pd


def _case(mode: str, n: int, threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from fangprune.core.obs import invert_spd_in_place

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        A = torch.full((n, n), 0.5, dtype=torch.float64)
        A.diagonal().add_(float(n))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        if mode == "torch":
            A = torch.cholesky_inverse(torch.linalg.cholesky(A))
        else:
            assert invert_spd_in_place(A)
        seconds = time.perf_counter() - t
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    print(f"{seconds:.2f} {added:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="*", type=int, default=[4096, 8192])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        _case(args.case[0], int(args.case[1]), args.threads)
        return
    rows = []
    for n in args.n:
        for mode in ("torch", "in-place"):
            out = subprocess.run([sys.executable, __file__, "--case", mode, str(n), "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout.split()
            rows.append({"n": n, "path": mode, "matrix MiB": n * n * 8 / 2**20, "seconds": float(out[0]),
                         "added peak RSS MiB": float(out[1])})
    print(f"threads: {args.threads}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
