"""Zero-shot accuracy of a dense or pruned checkpoint on one lm-eval task (Tables 2, 4, 10)."""

from fangprune import runtime
from fangprune.evaluate.zeroshot import run_task
from fangprune.io import provenance, timed_step, write_json
from fangprune.modeling.checkpoint import load_pruned
from fangprune.modeling.models import DTYPES, load_tokenizer

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step(f"zeroshot {p.task}") as step:
    model = load_pruned(smk.input.checkpoint, dtype=DTYPES[p.dtype], device_map=p.device_map)
    tok = load_tokenizer(smk.input.checkpoint)
    result = run_task(
        model, tok, p.task, data_dir=p.data_dir, limit=p.limit, num_fewshot=p.num_fewshot,
        batch_size=p.batch_size, device=device, seed=p.seed,
    )
write_json(smk.output.metrics, {
    "model": p.model, "method": p.method, "sparsity": p.sparsity, **result,
    "resources": step, "provenance": provenance(),
})
