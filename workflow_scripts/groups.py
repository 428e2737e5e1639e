"""Neuron-to-Function Assignment + Shared Neuron Group Retention, per layer."""

import numpy as np
from tqdm.auto import tqdm

from fangprune import runtime
from fangprune.fang.grouping import build_groups, check_partition
from fangprune.io import load_torch, provenance, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("groups"):
    scores = load_torch(smk.input.scores)["scores"].numpy()
    layers = []
    for idx, layer_scores in enumerate(tqdm(scores, desc="groups", mininterval=5)):
        rng = np.random.default_rng([p.seed, idx])  # random grouping: one stream per layer, seeded
        g = build_groups(layer_scores, p.method, shared=p.shared, rng=rng)
        check_partition(g["shared"], g["groups"], layer_scores.shape[1])
        layers.append({"shared": g["shared"].tolist(), "groups": [x.tolist() for x in g["groups"]]})
    write_json(smk.output.groups, {"method": p.method, "shared_group": p.shared, "seed": p.seed,
                                   "layers": layers, "provenance": provenance()})
