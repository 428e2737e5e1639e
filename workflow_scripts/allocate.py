"""Per-layer sparsity allocation (uniform, or functional complexity, Eq. 8)."""

import numpy as np

from fangprune import runtime
from fangprune.allocation import allocate
from fangprune.io import read_json, timed_step, write_json

smk = snakemake  # noqa: F821 - injected by Snakemake
p = smk.params
runtime.from_snakemake(smk)
with timed_step("allocate"):
    if "fc" in smk.input.keys():
        fc = np.asarray(read_json(smk.input.fc)["fc"])
    else:  # uniform allocation needs only the layer count
        fc = np.zeros(read_json(f"{smk.input.model}/fangprune_model.json")["num_layers"])
    # group capacity (shared group exempt) is checked per method when pruning and, before any job, by the config
    sp = allocate(p.method, p.sparsity, fc, k=None)
    write_json(smk.output.allocation, {"sparsity": p.sparsity, "allocation": p.method["allocation"],
                                       "layer_sparsity": sp.tolist(), "mean": float(sp.mean())})
