"""Perplexity of one exported GGUF through llama.cpp on the workflow's own evaluation windows, paired window by
window with the PyTorch perplexity of the checkpoint it was exported from."""

import json
import math

from fangprune import runtime
from fangprune.data import evaluation_text, protocol_windows
from fangprune.evaluate.engine_ppl import llamacpp_perplexity
from fangprune.evaluate.perplexity import evaluation_windows
from fangprune.io import provenance, timed_step, write_json
from fangprune.modeling.models import load_tokenizer
from fangprune.report import stats

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
torch_ppl = json.loads(open(smk.input.torch_ppl).read())
with timed_step("engine_ppl") as step:
    tok = load_tokenizer(smk.input.tokenizer)
    text = evaluation_text(p.dataset, p.data_dir)
    ids = tok(text.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    bos = tok.bos_token_id if torch_ppl.get("bos") else None
    windows = evaluation_windows(ids, p.seqlen, protocol_windows(p.dataset, p.max_windows), bos)
    if windows.shape[0] != torch_ppl["windows"]:
        raise RuntimeError(f"{windows.shape[0]} windows here, {torch_ppl['windows']} in {smk.input.torch_ppl}")
    n = min(p.engine_windows or windows.shape[0], windows.shape[0])
    result = llamacpp_perplexity(smk.input.gguf, windows[:n], smk.threads)
ref_nll = torch_ppl["window_nll"][:n]
torch_n = math.exp(sum(ref_nll) / n)  # PyTorch's figure on the same n windows
engine, ref = stats.sample("ppl", result["window_nll"]), stats.sample("ppl", ref_nll)
write_json(smk.output.metrics, {
    "model": p.model, "method": p.method, "sparsity": p.sparsity, "dataset": p.dataset, "gguf_type": p.gguf_type,
    "seqlen": p.seqlen, **result, "torch_ppl": torch_n, "torch_ppl_all_windows": torch_ppl["ppl"],
    "torch_windows": torch_ppl["windows"], "rel_diff": result["ppl"] / torch_n - 1,
    "stderr": stats.stderr(engine), "ppl_diff": stats.paired_bootstrap(engine, ref, seed=p.seed),
    "resources": step, "provenance": provenance(),
})
