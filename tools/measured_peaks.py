"""Measured peak RSS and time of every job of finished runs next to the predicted ones (fangprune.resources).

    python tools/measured_peaks.py RUN_DIR:CONFIG[,CONFIG...] ... > tests/data/measured_peaks.csv

Each RUN_DIR holds the run's logs/ and benchmarks/; the configs are the files the run was started with, merged in
order as Snakemake merges --configfile. A job's peak is the largest ``max_rss_mib`` of the ``end <step>`` lines in
its log (getrusage of the job's process; Snakemake's benchmark max_rss samples and misses short peaks); its wall
and CPU seconds are its benchmark's ``s`` and ``cpu_time``. The predictions are those of a CPU job (these runs ran
on CPUs) with the run's threads, before the request margin: host RSS, and seconds (arithmetic at CPU_FLOPS plus
reading the weights twice at READ_BPS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

from fangprune.config import _merge, validate_config
from fangprune.io import log_peak_mib
from fangprune.resources import predict, run_tokens


def peaks(run: Path, config: dict) -> list[dict]:
    rows = []
    for log in sorted((run / "logs").rglob("*.log")):
        peak = log_peak_mib(log)
        parts = [p.removesuffix(".log") for p in log.relative_to(run / "logs").parts]
        model = next((p for p in parts if p in config["models"]), None)
        if peak is None or model is None:
            continue  # report rules (no model) and jobs of older code without end lines
        rule = parts[0]
        p = predict(rule, config["_shapes"][model], run_tokens(config),
                    config["models"][model].get("dtype") or config["dtype"], gpu=False, threads=config["threads"])
        bench = run / "benchmarks" / log.relative_to(run / "logs").with_suffix(".tsv")
        wall, cpu = pd.read_csv(bench, sep="\t").iloc[0][["s", "cpu_time"]] if bench.exists() else (None, None)
        rows.append({"run": run.name, "rule": rule, "model": model, "job": "/".join(parts[1:]),
                     "measured_mib": round(peak), "predicted_mib": round(p["host_mib"]),
                     "wall_s": wall, "cpu_s": cpu, "predicted_s": round(p["seconds"], 1)})
    return rows


def main(specs: list[str]) -> None:
    """Rows of every run; with ``--append CSV`` the rows of runs not already in CSV are added to its rows."""
    base = None
    if specs[:1] == ["--append"]:
        base, specs = pd.read_csv(specs[1]), specs[2:]
    rows = []
    for spec in specs:
        run, _, files = spec.partition(":")
        raw: dict = {}
        for f in files.split(","):
            raw = _merge(raw, yaml.safe_load(Path(f).read_text()) or {})
        rows += peaks(Path(run), validate_config(raw))
    frame = pd.DataFrame(rows)
    frame["ratio"] = (frame["measured_mib"] / frame["predicted_mib"]).round(3)
    if base is not None:
        frame = pd.concat([base[~base["run"].isin(frame["run"])], frame], ignore_index=True)
    frame.to_csv(sys.stdout, index=False, lineterminator="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
