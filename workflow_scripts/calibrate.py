"""Sample the calibration windows (token ids) once per model and calibration spec."""

from fangprune import runtime
from fangprune.data import calibration_windows
from fangprune.io import save_torch, timed_step
from fangprune.models import load_tokenizer

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("calibrate"):
    tok = load_tokenizer(smk.input.model)
    windows, source = calibration_windows(tok, p.dataset, p.nsamples, p.seqlen, p.seed, p.data_dir)
    save_torch(smk.output.windows, {"input_ids": windows, "source": source, "dataset": p.dataset, "seed": p.seed})
