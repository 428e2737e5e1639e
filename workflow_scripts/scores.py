"""Cluster-neuron Taylor score matrices (Eq. 5)."""

from fangprune import runtime
from fangprune.fang.clustering import ContextClusters
from fangprune.fang.scores import taylor_scores
from fangprune.io import load_torch, provenance, save_torch, timed_step
from fangprune.modeling.models import load_model

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("scores"):
    calib = load_torch(smk.input.windows)
    clusters = ContextClusters.from_state_dict(load_torch(smk.input.clusters))
    model = load_model(smk.input.model, dtype=p.dtype, device_map=p.device_map)
    scores, counts = taylor_scores(model, calib["input_ids"], clusters, device, loss=p.loss, recompute=p.recompute)
    save_torch(smk.output.scores, {"scores": scores, "counts": counts, "loss": p.loss, "provenance": provenance()})
