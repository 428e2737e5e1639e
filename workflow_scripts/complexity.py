"""Functional complexity FC_l of every decoder block on the dense model (input of Eq. 8)."""

from fangprune import runtime
from fangprune.fang.allocation import functional_complexity
from fangprune.io import provenance, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("complexity"):
    engine, calib = runtime.dense_engine(smk.input.model, smk.input.windows, p.dtype, device, p.batch_size)
    fc = functional_complexity(engine)
    write_json(smk.output.fc, {"fc": fc.tolist(), "calibration": calib["source"], "provenance": provenance()})
