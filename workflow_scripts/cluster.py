"""Context Clustering: PCA + KMeans per layer on the dense model's MLP inputs."""

from fangprune import runtime
from fangprune.clustering import fit_context_clusters
from fangprune.engine import LayerwiseEngine
from fangprune.io import load_torch, provenance, save_torch, timed_step
from fangprune.models import load_model

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("cluster"):
    calib = load_torch(smk.input.windows)
    model = load_model(smk.input.model, dtype=p.dtype)
    engine = LayerwiseEngine(model, calib["input_ids"], device, batch_size=p.batch_size)
    clusters, stats = fit_context_clusters(engine, seed=p.seed, **p.clustering)
    save_torch(
        smk.output.clusters,
        {**clusters.state_dict(), **stats, "calibration": calib["source"], "params": dict(p.clustering),
         "provenance": provenance()},
    )
