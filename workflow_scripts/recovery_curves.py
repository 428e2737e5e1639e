"""Every recovery run's learning curve (held-out perplexity against tokens seen) in one CSV and one plot."""

from pathlib import Path

import pandas as pd
from fangprune.io import atomic_path, setup_logging
from fangprune.report.recovery import curves_plot

smk = snakemake  # noqa: F821 - injected by Snakemake
setup_logging(smk.log[0])
frames = []
for path in smk.input.curves:  # results/recovery/curves/<model>/<method>/sp<sparsity>.csv
    p = Path(path)
    frames.append(pd.read_csv(p).assign(model=p.parent.parent.name, method=p.parent.name,
                                        sparsity=float(p.stem[2:])))
curves = pd.concat(frames, ignore_index=True)
with atomic_path(smk.output.csv) as tmp:
    curves.to_csv(tmp, index=False)
curves_plot(curves, smk.output.plot)
