"""Neuron-to-Function Assignment + Shared Neuron Group Retention, per layer."""

from tqdm.auto import tqdm

from fangprune import runtime
from fangprune.grouping import build_groups, check_partition
from fangprune.io import load_torch, provenance, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("groups"):
    scores = load_torch(smk.input.scores)["scores"].numpy()
    layers = []
    for layer_scores in tqdm(scores, desc="groups", mininterval=5):
        g = build_groups(layer_scores, p.method)
        check_partition(g["shared"], g["groups"], layer_scores.shape[1])
        layers.append({"shared": g["shared"].tolist(), "groups": [x.tolist() for x in g["groups"]]})
    write_json(smk.output.groups, {"method": p.method, "layers": layers, "provenance": provenance()})
