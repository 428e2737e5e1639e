"""Per-layer importance of the dense model for the allocation ablation (Table 7): OWL outlier ratio or Taylor."""

from fangprune import runtime
from fangprune.fang.layer_importance import outlier_ratios, taylor_sensitivity
from fangprune.io import load_torch, provenance, timed_step, write_json
from fangprune.modeling.models import load_model

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("importance") as step:
    if p.measure.startswith("owl-m"):
        engine, calib = runtime.dense_engine(smk.input.model, smk.input.windows, p.dtype, device, p.batch_size)
        values = outlier_ratios(engine, float(p.measure[len("owl-m"):]))
    elif p.measure == "taylor":
        calib = load_torch(smk.input.windows)
        values = taylor_sensitivity(load_model(smk.input.model, dtype=p.dtype, device_map=p.device_map), calib["input_ids"], device)
    else:
        raise ValueError(f"unknown importance measure {p.measure!r}")
write_json(smk.output.importance, {"measure": p.measure, "importance": values, "calibration": calib["source"],
                                   "resources": step, "provenance": provenance()})
