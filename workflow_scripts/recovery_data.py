"""Recovery training and held-out windows of one model's tokenizer, disjoint from every evaluation text."""

from fangprune.data import evaluation_text
from fangprune.io import provenance, save_torch, setup_logging, timed_step
from fangprune.modeling.models import load_tokenizer, needs_bos
from fangprune.recovery.text import recovery_windows, training_text
from transformers import AutoConfig

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
s = p.settings
setup_logging(smk.log[0])
with timed_step("recovery_data") as step:
    tok = load_tokenizer(smk.input.model)
    text = training_text(s["data"], p.data_dir)
    ids = tok(text.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    # WikiText-2 test is always checked, evaluated or not: it is the number every table leads with
    evaluation = {}
    for name in sorted({"wikitext2", *p.evaluation}):
        ev = evaluation_text(name, p.data_dir)
        evaluation[name] = tok(ev.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    bos = tok.bos_token_id if needs_bos(AutoConfig.from_pretrained(smk.input.model).model_type) else None
    w = recovery_windows(ids, s["seqlen"], s["heldout_windows"], p.seed, text.source, evaluation, bos)
save_torch(smk.output.windows, {
    "train": w.train, "heldout": w.heldout, "source": w.source, "dropped": w.dropped, "text_tokens": ids.numel(),
    "settings": s, "resources": step, "provenance": provenance(),
})
