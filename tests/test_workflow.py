"""The Snakemake workflow itself: dry-run job counts, config errors before any job, a full run on a tiny model."""

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATA_DIR, REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


CI_CONFIG = REPO / "tests" / "config.ci.yaml"


def write_config(path: Path, **overrides) -> Path:
    """The CI config (tiny random LLaMA) with top-level keys replaced by ``overrides``."""
    cfg = yaml.safe_load(CI_CONFIG.read_text())
    cfg["data_dir"] = str(DATA_DIR)
    cfg.update(overrides)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def run(workdir: Path, *args, check=True):
    proc = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def job_counts(workdir: Path) -> dict[str, int]:
    out = run(workdir, "-n", "--cores", "1").stdout
    counts = {}
    table = out.split("Job stats:", 1)[1] if "Job stats:" in out else ""
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_adding_sparsity_or_method_adds_no_shared_jobs(tmp_path):
    base = job_counts(write_config(tmp_path / "a"))
    more_sp = job_counts(write_config(tmp_path / "b", sparsities=[0.2, 0.3, 0.4]))
    more_m = job_counts(
        write_config(tmp_path / "c", methods={"obc": {}, "o-fang": {}, "o-fang-t3": {"algorithm": "o-fang", "tau": 3.0}})
    )
    for shared in ("cluster", "scores", "groups", "complexity", "calibrate", "prepare_model"):
        assert base[shared] == more_sp[shared] == more_m[shared] == 1
    assert more_sp["prune"] == base["prune"] + 2 and more_m["prune"] == base["prune"] + 2
    assert base["prune"] == 4 and base["evaluate_ppl"] == 4 and base["evaluate_dense"] == 1
    # the dense model is evaluated once per task, whatever the methods and sparsities
    assert base["evaluate_zeroshot_dense"] == more_sp["evaluate_zeroshot_dense"] == more_m["evaluate_zeroshot_dense"] == 3
    assert base["evaluate_zeroshot"] == 12 and more_sp["evaluate_zeroshot"] == 18


@pytest.mark.parametrize(
    "override, key",
    [
        ({"sparsities": [1.5]}, "sparsities.0"),
        ({"methods": {"nope": {}}}, "methods.nope.algorithm"),
        ({"clustering": {"k": 1}}, "clustering.k"),
        ({"models": {"tiny-llama": {"source": "/no/such/model.gguf"}}}, "models.tiny-llama.source"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, override, key):
    wd = write_config(tmp_path, **override)
    proc = run(wd, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert f"config key '{key}" in proc.stdout + proc.stderr
    assert not (wd / "results").exists()


@pytest.mark.slow
def test_full_workflow_on_tiny_llama(tmp_path):
    wd = write_config(tmp_path)
    run(wd, "--cores", "2")
    rows = list(csv.DictReader(open(wd / "results/tables/metrics.csv")))
    got = {(r["method"], float(r["sparsity"]), r["metric"]): float(r["value"]) for r in rows}
    for method, sp in [("dense", 0.0), ("obc", 0.2), ("obc", 0.4), ("o-fang", 0.2), ("o-fang", 0.4)]:
        assert math.isfinite(got[(method, sp, "ppl_wikitext2")])
        assert abs(got[(method, sp, "block_params_kept_frac")] - (1 - sp)) < 0.02
        for task in ("boolq", "arc_easy", "mmlu", "mmlu/stem"):
            assert 0.0 <= got[(method, sp, task)] <= 1.0
        assert got[(method, sp, "boolq/n")] == 3 and got[(method, sp, "mmlu/n")] == 57
    table = (wd / "results/tables/table1.md").read_text()
    assert "| dense | 0% |" in table and "| o-fang | 40% |" in table and "Avg acc (2 tasks)" in table
    assert "first 3" in table and "LIMITED" in table
    assert "| Method | Sparsity | BoolQ | ARC-e | Avg |" in (wd / "results/tables/table2.md").read_text()
    assert "Humanities" in (wd / "results/tables/table4.md").read_text()
    assert "\\toprule" in (wd / "results/tables/table2.tex").read_text()
    assert (wd / "results/tables/sparsity_curves.png").read_bytes()[:4] == b"\x89PNG"
    for rule in ("cluster", "scores", "prune", "evaluate_ppl", "evaluate_zeroshot"):
        assert list((wd / "benchmarks" / rule).rglob("*.tsv")), rule
    assert len(list((wd / "benchmarks/evaluate_zeroshot/tiny-llama/dense").glob("*.tsv"))) == 3
    # the costs table covers every job that ran before it, per rule and model
    costs = {(r["rule"], r["model"]): r for r in csv.DictReader(open(wd / "results/tables/costs.csv"))}
    assert costs[("prune", "tiny-llama")]["jobs"] == "4" and costs[("evaluate_zeroshot", "tiny-llama")]["jobs"] == "15"
    assert costs[("cluster", "tiny-llama")]["jobs"] == "1" and float(costs[("prune", "tiny-llama")]["max_rss_mb"]) > 0
    assert int(costs[("total", "all")]["jobs"]) == sum(int(r["jobs"]) for k, r in costs.items() if k[0] != "total")
    # the HTML report embeds the tables and the plot
    run(wd, "--report", str(wd / "report.html"))
    html = (wd / "report.html").read_text()
    assert "table2.md" in html and "sparsity_curves.png" in html
    # a second invocation has nothing to do
    assert "Nothing to be done" in run(wd, "-n", "--cores", "1").stdout + run(wd, "-n", "--cores", "1").stderr
    # another sweep in the same results directory reuses the clustering, scores and groups
    write_config(wd, sparsities=[0.3], methods={"o-fang-t3": {"algorithm": "o-fang", "tau": 3.0}})
    counts = job_counts(wd)
    assert counts["prune"] == 1 and not {"cluster", "scores", "groups", "complexity", "calibrate"} & set(counts)


@pytest.mark.slow
def test_qwen2_and_mha_llama_through_the_workflow(tmp_path):
    cfg = yaml.safe_load((REPO / "tests" / "config.families.yaml").read_text())
    cfg["data_dir"] = str(DATA_DIR)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run(tmp_path, "--cores", "2")
    rows = list(csv.DictReader(open(tmp_path / "results/tables/metrics.csv")))
    got = {(r["model"], r["method"], r["metric"]): float(r["value"]) for r in rows}
    for model in ("tiny-qwen2", "tiny-mha"):
        for method in ("obc", "o-fang"):
            assert math.isfinite(got[(model, method, "ppl_wikitext2")])
            assert abs(got[(model, method, "block_params_kept_frac")] - 0.7) < 0.03
            assert got[(model, method, "prefill_speedup")] > 0
            ckpt = json.loads((tmp_path / f"results/pruned/{model}/{method}/sp0.30/config.json").read_text())
            assert "auto_map" in ckpt and len(ckpt["fangprune_layers"]) == 3
    heads = {(s["num_attention_heads"], s["num_key_value_heads"]) for s in ckpt["fangprune_layers"]}
    assert all(q == kv for q, kv in heads)  # multi-head attention stays multi-head


def test_snakefmt_clean():
    if shutil.which("snakefmt") is None:
        pytest.skip("snakefmt not installed")
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "rules").glob("*.smk")))]
    proc = subprocess.run(["snakefmt", "--check", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_lint_clean(tmp_path):
    wd = write_config(tmp_path)
    proc = run(wd, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
