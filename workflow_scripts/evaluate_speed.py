"""Parameters, weight bytes and prefill/decode tokens/s of a pruned checkpoint vs its dense model (one process)."""

import logging

from fangprune import runtime
from fangprune.evaluate.semi_sparse import accelerate_2of4
from fangprune.evaluate.speed import compare_speed, disk_bytes, speedups
from fangprune.io import provenance, timed_step, write_json
from fangprune.modeling.checkpoint import SPARSITY_KEY, load_pruned
from fangprune.modeling.models import DTYPES, place

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("speed") as step:
    models = {"dense": load_pruned(smk.input.dense, dtype=DTYPES[p.dtype], device_map=p.device_map),
              "pruned": load_pruned(smk.input.checkpoint, dtype=DTYPES[p.dtype], device_map=p.device_map)}
    semi_sparse = None
    if p.semi_sparse_acc:  # torch's 2:4 kernels for a 2:4 checkpoint, on CUDA only; otherwise say why not
        record = getattr(models["pruned"].config, SPARSITY_KEY, None) or {}
        if record.get("pattern") != "2:4":
            semi_sparse = {"applied": False, "reason": f"pattern {record.get('pattern', 'structured')!r} is not 2:4"}
        elif device.type != "cuda":
            semi_sparse = {"applied": False, "reason": f"torch's 2:4 kernels are CUDA-only; device is {device}"}
        else:
            place(models["pruned"], device)
            semi_sparse = {"applied": True, **accelerate_2of4(models["pruned"])}
        logging.getLogger("fangprune.evaluate.speed").info("semi_sparse_acc: %s", semi_sparse)
    speed = compare_speed(models, device, prompt_len=p.prompt_len, decode_tokens=p.decode_tokens,
                          batch_size=p.batch_size, repeats=p.repeats, seed=p.seed)
speed["dense"]["disk_bytes"] = disk_bytes(smk.input.dense)
speed["pruned"]["disk_bytes"] = disk_bytes(smk.input.checkpoint)
spread = {f"{kind}_speedup_spread": speedups(speed["dense"][f"{kind}_s"], speed["pruned"][f"{kind}_s"])
          for kind in ("prefill", "decode")}
ratios = {
    "params_ratio": speed["pruned"]["params"] / speed["dense"]["params"],
    "disk_ratio": speed["pruned"]["disk_bytes"] / speed["dense"]["disk_bytes"],
    "prefill_speedup": spread["prefill_speedup_spread"]["median"],
    "decode_speedup": spread["decode_speedup_spread"]["median"],
    **spread,
}
write_json(smk.output.metrics, {
    "model": p.model, "method": p.method, "sparsity": p.sparsity, "device": str(device), "threads": smk.threads,
    "dtype": p.dtype, "prompt_len": p.prompt_len, "decode_tokens": p.decode_tokens, "batch_size": p.batch_size,
    "zeroed": getattr(models["pruned"].config, SPARSITY_KEY, None) is not None, "semi_sparse": semi_sparse,
    **ratios, **speed, "resources": step, "provenance": provenance(),
})
