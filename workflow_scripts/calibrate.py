"""Sample the calibration windows (token ids) once per model and calibration spec, or (``holdout`` > 0) the
held-out windows of the same text that overlap none of them (diagnostics, variant selection)."""

from fangprune import runtime
from fangprune.data import calibration_token_ids, holdout_windows, sample_windows
from fangprune.io import read_json, save_torch, timed_step
from fangprune.modeling.models import load_tokenizer, needs_bos

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
holdout = smk.params.get("holdout", 0)
with timed_step("calibrate"):
    tok = load_tokenizer(smk.input.model)
    model_type = read_json(f"{smk.input.model}/config.json")["model_type"]
    bos = tok.bos_token_id if needs_bos(model_type) else None  # Gemma: BOS starts every training sequence
    ids, source = calibration_token_ids(tok, p.dataset, p.data_dir)
    if holdout:
        windows = holdout_windows(ids, p.nsamples, p.seqlen, p.seed, holdout, bos)
        source = f"{source}; {holdout} held-out windows disjoint from the calibration windows"
    else:
        windows = sample_windows(ids, p.nsamples, p.seqlen, p.seed, bos)
    if bos is not None:
        source += "; every window starts with BOS"
    save_torch(smk.output.windows, {"input_ids": windows, "source": source, "dataset": p.dataset, "seed": p.seed,
                                    "bos": bos is not None})
