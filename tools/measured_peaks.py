"""Measured peak RSS and time of every job of finished runs, and the inputs that predict them (fangprune.resources).

    python tools/measured_peaks.py [--append] OUT RUN_DIR:CONFIG[,CONFIG...] ...
    python tools/measured_peaks.py --markdown OUT      # measured vs predicted per model, calibration and rule
    python tools/measured_peaks.py --costs OUT         # per rule, model and calibration: jobs, wall, CPU, peak

writes OUT.csv (one row per job: measured peak, wall and CPU seconds) and OUT.json (per run: each model's shape,
the token counts, dtype and threads), so that tests/test_resources.py predicts every job again with the current
formulas instead of trusting a stored number. With ``--append`` the runs already in OUT are kept (their logs need
not exist any more) and the named ones added or replaced.

Each RUN_DIR holds the run's logs/ and benchmarks/; the configs are the files the run was started with, merged in
order as Snakemake merges --configfile. A job's peak is the largest ``max_rss_mib`` of the ``end <step>`` lines in
its log (getrusage of the job's process; Snakemake's benchmark max_rss samples and misses short peaks); its wall
seconds are its benchmark's ``s``, its CPU seconds the log's ``process_cpu_s`` (jobs of older code: the
benchmark's sampled ``cpu_time``, a lower bound), both read by fangprune.report.costs.read_benchmarks.
Predictions are those of a CPU job (these runs ran on CPUs) with the run's threads, before the request margin:
host RSS, and seconds (arithmetic at CPU_FLOPS plus reading the weights twice at READ_BPS).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from fangprune.config import _merge, validate_config
from fangprune.report.costs import read_benchmarks
from fangprune.resources import Tokens, predict, run_tokens


def run_inputs(config: dict) -> dict:
    """What predicts a run's jobs: each model's shape and dtype, the token counts, the threads."""
    return {"models": {m: {"shape": config["_shapes"][m], "dtype": e.get("dtype") or config["dtype"]}
                       for m, e in config["models"].items()},
            "tokens": dataclasses.asdict(run_tokens(config)), "threads": config["threads"],
            "calibration": f"{config['calibration']['nsamples']}x{config['calibration']['seqlen']}"}


def predicted(rule: str, model: str, inputs: dict, single_file: bool = False) -> dict:
    """The prediction of one job of a run from its stored inputs (``single_file``: resources.load_mib)."""
    m = inputs["models"][model]
    return predict(rule, m["shape"], Tokens(**inputs["tokens"]), m["dtype"], gpu=False, threads=inputs["threads"],
                   single_file=single_file)


def measured(run: Path, models: list[str]) -> list[dict]:
    """One row per job of ``models`` whose log has ``end`` lines (report rules and jobs of older code have none)."""
    jobs = read_benchmarks(run / "benchmarks", models, run / "logs")
    jobs = jobs[(jobs["model"] != "-") & jobs["log_peak_mib"].notna()].drop_duplicates(["rule", "job"])
    return [{"run": run.name, "rule": r.rule, "model": r.model, "job": r.job, "measured_mib": round(r.log_peak_mib),
             "wall_s": r.wall_s, "cpu_s": r.cpu_s, "single_file": False} for r in jobs.itertuples()]


def with_predictions(frame: pd.DataFrame, runs: dict) -> pd.DataFrame:
    """The rows with the current predictions (MiB, seconds) and the measured / predicted ratios."""
    pred = [predicted(r.rule, r.model, runs[r.run], bool(r.single_file)) for r in frame.itertuples()]
    frame = frame.assign(calibration=[runs[r]["calibration"] for r in frame["run"]],
                         predicted_mib=[p["host_mib"] for p in pred], predicted_s=[p["seconds"] for p in pred])
    return frame.assign(ratio=frame["measured_mib"] / frame["predicted_mib"],
                        time_ratio=frame["wall_s"] / frame["predicted_s"])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, calibration and rule: jobs, the largest measured peak and prediction and their largest ratio;
    the longest wall time, its prediction and the largest wall / predicted ratio (where benchmarks were read)."""
    out = frame.groupby(["model", "calibration", "rule"]).agg(
        jobs=("ratio", "size"), measured_mib=("measured_mib", "max"), predicted_mib=("predicted_mib", "max"),
        ratio=("ratio", "max"), wall_s=("wall_s", "max"), predicted_s=("predicted_s", "max"),
        time_ratio=("time_ratio", "max")).reset_index()
    for col in ("wall_s", "time_ratio"):  # runs whose benchmarks were not kept have no times
        out[col] = out[col].map(lambda x: "-" if pd.isna(x) else f"{x:.2f}")
    out["predicted_mib"] = out["predicted_mib"].round().astype(int)
    return out.rename(columns={
        "measured_mib": "largest measured MiB", "predicted_mib": "predicted MiB",
        "ratio": "largest measured / predicted", "wall_s": "longest wall s", "predicted_s": "predicted s",
        "time_ratio": "largest wall / predicted s"})


def _method(rule: str, model: str, job: str) -> str:
    """The method of a prune or perplexity job (``dense`` for the dense model), else empty."""
    parts = job.split("/")
    return parts[parts.index(model) + 1] if rule in ("prune", "evaluate_ppl") and model in parts else ""


def costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per rule, model, calibration and method (prune, evaluate_ppl) of the runs whose benchmarks were read: jobs,
    summed wall and CPU seconds, the largest peak."""
    timed = frame.dropna(subset=["wall_s"])
    timed = timed.assign(method=[_method(r.rule, r.model, r.job) for r in timed.itertuples()])
    out = timed.groupby(["rule", "model", "calibration", "method"]).agg(
        jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
        peak_mib=("measured_mib", "max")).reset_index()
    return out.sort_values(["rule", "model", "calibration"]).rename(
        columns={"wall_s": "wall s", "cpu_s": "CPU s", "peak_mib": "peak RSS MiB"})


def load(out: str) -> tuple[pd.DataFrame, dict]:
    return pd.read_csv(f"{out}.csv"), json.loads(Path(f"{out}.json").read_text())


def main(args: list[str]) -> None:
    if args[:1] in (["--markdown"], ["--costs"]):
        frame, runs = load(args[1])
        frame = with_predictions(frame, runs)
        table, fmt, labels = ((summary(frame), ".2f", 3) if args[0] == "--markdown" else (costs(frame), ".0f", 4))
        align = ["left"] * labels + ["right"] * (len(table.columns) - labels)
        print(table.to_markdown(index=False, floatfmt=fmt, colalign=align))
        return
    append = args[:1] == ["--append"]
    out, specs = (args[1], args[2:]) if append else (args[0], args[1:])
    frame, runs = load(out) if append else (pd.DataFrame(), {})
    for spec in specs:
        run, _, files = spec.partition(":")
        raw: dict = {}
        for f in files.split(","):
            raw = _merge(raw, yaml.safe_load(Path(f).read_text()) or {})
        config = validate_config(raw)
        runs[Path(run).name] = run_inputs(config)
        new = pd.DataFrame(measured(Path(run), list(config["models"])))
        frame = pd.concat([frame[frame["run"] != Path(run).name] if len(frame) else frame, new], ignore_index=True)
    frame.to_csv(f"{out}.csv", index=False, lineterminator="\n")
    Path(f"{out}.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
