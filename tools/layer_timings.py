"""Per pruned layer, the seconds of each step (pruning.json's ``report.layers[i].seconds``) of finished runs.

    python tools/layer_timings.py RUN_DIR ...

observe: the layer's forward with its input hooks, of which hessian is the X^T X accumulation; prune: the
method's step, of which inverse, selection and compensation for the OBS-based methods. One row per checkpoint
and layer, as a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

STEPS = ["observe", "hessian", "prune", "inverse", "selection", "compensation"]


def timings(run: Path) -> list[dict]:
    rows = []
    for path in sorted((run / "results" / "pruned").glob("*/*/*/pruning.json")):
        model, method, sparsity = path.parts[-4:-1]
        for layer in json.loads(path.read_text())["report"]["layers"]:
            rows.append({"run": run.name, "model": model, "method": method, "sparsity": sparsity,
                         "layer": layer["layer"], **{k: layer.get("seconds", {}).get(k) for k in STEPS}})
    return rows


if __name__ == "__main__":
    frame = pd.DataFrame([row for run in sys.argv[1:] for row in timings(Path(run))])
    print(frame.to_markdown(index=False, floatfmt=".1f"))
