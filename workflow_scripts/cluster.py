"""Context Clustering: PCA + KMeans per layer on the dense model's MLP inputs."""

from fangprune import runtime
from fangprune.fang.clustering import fit_context_clusters
from fangprune.io import provenance, save_torch, timed_step

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
with timed_step("cluster"):
    engine, calib = runtime.dense_engine(smk.input.model, smk.input.windows, p.dtype, device, p.batch_size)
    clusters, stats = fit_context_clusters(engine, seed=p.seed, **p.clustering)
    save_torch(
        smk.output.clusters,
        {**clusters.state_dict(), **stats, "calibration": calib["source"], "params": dict(p.clustering),
         "provenance": provenance()},
    )
