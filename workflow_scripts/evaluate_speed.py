"""Parameters, weight bytes and prefill/decode tokens/s of a pruned checkpoint vs its dense model (one process)."""

from fangprune import runtime
from fangprune.checkpoint import SPARSITY_KEY, load_pruned
from fangprune.io import provenance, timed_step, write_json
from fangprune.models import DTYPES
from fangprune.speed import compare_speed, disk_bytes, speedups

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("speed") as step:
    models = {"dense": load_pruned(smk.input.dense, dtype=DTYPES[p.dtype], device_map=p.device_map),
              "pruned": load_pruned(smk.input.checkpoint, dtype=DTYPES[p.dtype], device_map=p.device_map)}
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
    "zeroed": getattr(models["pruned"].config, SPARSITY_KEY, None) is not None,
    **ratios, **speed, "resources": step, "provenance": provenance(),
})
