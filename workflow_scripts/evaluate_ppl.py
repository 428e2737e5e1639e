"""Perplexity of a dense or pruned checkpoint on one evaluation text (WikiText-2 test, PTB test, C4 validation)."""


from fangprune import runtime
from fangprune.data import evaluation_text, protocol_windows
from fangprune.evaluate.perplexity import perplexity
from fangprune.io import provenance, timed_step, write_json
from fangprune.modeling.checkpoint import SPARSITY_KEY, load_pruned
from fangprune.modeling.models import (
    DTYPES,
    block_params,
    block_zero_frac,
    count_params,
    load_tokenizer,
    needs_bos,
)

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("evaluate_ppl") as step:
    model = load_pruned(smk.input.checkpoint, dtype=DTYPES[p.dtype], device_map=p.device_map)
    tok = load_tokenizer(smk.input.checkpoint)
    text = evaluation_text(p.dataset, p.data_dir)
    ids = tok(text.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    windows = protocol_windows(p.dataset, p.max_windows)
    bos = tok.bos_token_id if needs_bos(model.config.model_type) else None
    result = perplexity(model, ids, p.seqlen, device, windows, p.batch_size, bos_id=bos)
write_json(smk.output.metrics, {
    "model": p.model, "method": p.method, "sparsity": p.sparsity, "dataset": p.dataset, "source": text.source,
    "seqlen": p.seqlen, **result, "params": count_params(model), "block_params": block_params(model),
    # zeroed (unstructured / N:M) checkpoints: the actual sparsity of their dense tensors
    "block_zero_frac": block_zero_frac(model) if getattr(model.config, SPARSITY_KEY, None) is not None else None,
    "resources": step, "provenance": provenance(),
})
