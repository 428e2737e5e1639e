"""Per-layer sparsity allocation: uniform, or an importance per layer through Eq. 8 (FC, Taylor, OWL)."""

import numpy as np

from fangprune import runtime
from fangprune.fang.allocation import allocate
from fangprune.io import read_json, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("allocate"):
    if "importance" in smk.input.keys():
        scores = read_json(smk.input.importance)
        importance = np.asarray(scores["fc"] if "fc" in scores else scores["importance"])
    else:  # uniform allocation needs only the layer count
        importance = np.zeros(read_json(f"{smk.input.model}/fangprune_model.json")["num_layers"])
    # group capacity (shared group exempt) is checked per method when pruning and, before any job, by the config
    sp = allocate(p.method, p.sparsity, importance, k=None)
    write_json(smk.output.allocation, {"sparsity": p.sparsity, "allocation": p.method["allocation"],
                                       "layer_sparsity": sp.tolist(), "mean": float(sp.mean())})
