"""Prune the model layer by layer (sequentially) with one method at one sparsity; save the checkpoint."""

from fangprune import runtime
from fangprune.fang.clustering import ContextClusters
from fangprune.io import load_torch, provenance, read_json, timed_step
from fangprune.methods.registry import get_method, load_plugins
from fangprune.modeling.checkpoint import save_pruned
from fangprune.modeling.models import load_model, load_tokenizer
from fangprune.prune.driver import prune_model

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
device = runtime.from_snakemake(smk)
load_plugins(smk.config.get("plugins", []))  # config, not params: listing plugins reruns nothing
with timed_step("prune") as step:
    calib = load_torch(smk.input.windows)
    alloc = read_json(smk.input.allocation)
    clusters = groups = None
    if "clusters" in smk.input.keys():
        clusters = ContextClusters.from_state_dict(load_torch(smk.input.clusters))
        groups = read_json(smk.input.groups)
    holdout = load_torch(smk.input.holdout)["input_ids"] if "holdout" in smk.input.keys() else None
    model = load_model(smk.input.model, dtype=p.dtype)
    report = prune_model(
        model, calib["input_ids"], p.method, alloc["layer_sparsity"], device,
        batch_size=p.batch_size, clusters=clusters, groups=groups, holdout=holdout,
    )
manifest = {
    "model": p.model, "method": p.method_name, "params": p.method, "sparsity": p.sparsity,
    "calibration": calib["source"], "report": report, "resources": step, "provenance": provenance(),
}
save_pruned(model, load_tokenizer(smk.input.model), smk.output.checkpoint, manifest,
            structured=get_method(p.method["algorithm"]).structured)
