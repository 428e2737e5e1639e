"""Functional complexity FC_l of every decoder block on the dense model (input of Eq. 8)."""

from fangprune import runtime
from fangprune.allocation import functional_complexity
from fangprune.engine import LayerwiseEngine
from fangprune.io import load_torch, provenance, timed_step, write_json
from fangprune.models import load_model

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("complexity"):
    calib = load_torch(smk.input.windows)
    model = load_model(smk.input.model, dtype=p.dtype)
    engine = LayerwiseEngine(model, calib["input_ids"], device, batch_size=p.batch_size)
    fc = functional_complexity(engine)
    write_json(smk.output.fc, {"fc": fc.tolist(), "calibration": calib["source"], "provenance": provenance()})
