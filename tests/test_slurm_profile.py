"""Dry runs with the SLURM profile (no cluster needed): what every job would ask sbatch for, and the DAG of a sweep.

The sbatch lines come from snakemake-executor-plugin-slurm's own submit-string builder, fed with the resources
Snakemake resolved for each job in the dry run.
"""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import DATA_DIR, REPO

from fangprune import resources as predicted
from fangprune.config import ConfigError, validate_config
from fangprune.resources import Shape, Terms, host_mib, job_request, run_tokens

submit_string = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
slurm_utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils")

PROFILE = REPO / "profiles" / "slurm"
GPU_RULES = {
    "cluster", "complexity", "prune", "scores", "evaluate_ppl", "evaluate_dense", "evaluate_zeroshot",
    "evaluate_zeroshot_dense", "evaluate_speed", "importance", "recover",
}
WHOLE_MODEL_RULES = GPU_RULES - {"cluster", "complexity", "prune"}
LOCAL_RULES = {
    "all", "calibrate", "holdout", "groups", "allocate", "tables", "deployment_table", "diagnostics", "costs",
    "recovery_curves",
}


def config(tmp_path: Path, **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "tests" / "config.ci.yaml").read_text())
    cfg.update({"data_dir": str(DATA_DIR), "device": "auto", **overrides})
    cfg["zeroshot"]["tasks"] = ["boolq"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(workdir: Path, cfg: Path, *args) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--profile", str(PROFILE),
         "--configfile", str(cfg), "--replace-workflow-config", "--directory", str(workdir), *args],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def planned_jobs(out: str) -> list[SimpleNamespace]:
    """The jobs of a dry run, each with its rule name, wildcards, threads and resolved resources."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m:
            continue
        res = {}
        r = re.search(r"^\s+resources: (.*)$", block, re.M)
        for item in (r.group(1).split(", ") if r else []):
            key, _, value = item.partition("=")
            res[key] = _value(value)
        t = re.search(r"^\s+threads: (\d+)$", block, re.M)
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.append(
            SimpleNamespace(
                name=m.group(1),
                threads=int(t.group(1)) if t else 1,
                resources=SimpleNamespace(get=res.get, **res),
                wildcards=dict(kv.split("=", 1) for kv in w.group(1).split(", ")) if w else {},
            )
        )
    return jobs


def sbatch_line(job) -> str:
    params = {
        "run_uuid": "uuid", "slurm_logfile": "slurm.log", "comment_str": f"rule_{job.name}", "workdir": "/wd",
        "account": f"-A {job.resources.get('slurm_account')}" if job.resources.get("slurm_account") else "",
        "partition": f"-p {job.resources.get('slurm_partition')}" if job.resources.get("slurm_partition") else "",
    }
    return submit_string.get_submit_command(job, params) + slurm_utils.set_gres_string(job)


def local_rules(cfg: Path, workdir: Path) -> set[str]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[cfg], replace_workflow_config=True),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        return set(wf._workflow._localrules)


def test_gpu_rules_ask_sbatch_for_gpus_and_cpu_rules_for_none(tmp_path):
    resources = {"gpu_model": "a100", "gpu_partition": "gpu", "cpu_partition": "cpu", "slurm_account": "lab"}
    methods = {"obc": {}, "o-fang": {}, "obc-owl": {"algorithm": "obc", "allocation": "owl"}}
    recovery = {"methods": ["obc"], "tokens": 512, "seqlen": 64, "batch_size": 2, "heldout_windows": 2}
    cfg = config(tmp_path, resources=resources, methods=methods, recovery=recovery)
    jobs = planned_jobs(dry_run(tmp_path, cfg))
    assert local_rules(cfg, tmp_path) == LOCAL_RULES
    remote = [j for j in jobs if j.name not in LOCAL_RULES]
    assert {j.name for j in remote} == GPU_RULES | {"prepare_model", "recovery_data"}
    assert set(predicted.GPU_RULES) == GPU_RULES and set(predicted.WHOLE_MODEL) == WHOLE_MODEL_RULES
    validated = validate_config(yaml.safe_load(cfg.read_text()))
    for job in remote:
        line = sbatch_line(job)
        want = job_request(job.name, validated, job.wildcards["model"], job.threads)
        assert "-A lab" in line and f"--mem {want['mem_mb']}" in line and f"-t {want['runtime']}" in line, line
        if job.name in GPU_RULES:
            assert "--gpus=a100:1" in line and "-p gpu" in line, line
            assert job.resources.gpu_mem_mb == want["gpu_mem_mb"] > 0
        else:
            assert "--gpus" not in line and "--gres" not in line and "-p cpu" in line, line
            assert "--ntasks=1" in line


def test_sbatch_lines_carry_the_requests_predicted_from_the_shape(tmp_path):
    """Full-depth LLaMA-2-7B and -70B shapes (presets with 32 and 80 layers: validation reads their configs, the
    dry run builds nothing): every job asks sbatch for its predicted memory and time, the 70B more than the 7B by
    the ratio of the formula, and a model entry's mem_mb replaces the prediction for that model only."""
    models = {"l7b": {"source": "random:llama2-7b:32", "dtype": "bfloat16"},
              "l70b": {"source": "random:llama2-70b:80", "dtype": "bfloat16"},
              "l70b-fixed": {"source": "random:llama2-70b:80", "dtype": "bfloat16", "mem_mb": 700000}}
    cfg = config(tmp_path, models=models, methods={"obc": {}, "o-fang": {}}, sparsities=[0.3])
    validated = validate_config(yaml.safe_load(cfg.read_text()))
    mem = {}
    for job in planned_jobs(dry_run(tmp_path, cfg)):
        if job.name in LOCAL_RULES:
            continue
        want = job_request(job.name, validated, job.wildcards["model"], job.threads)
        line = sbatch_line(job)
        model = job.wildcards["model"]
        mem[job.name, model] = int(re.search(r"--mem (\d+)", line).group(1))
        if model == "l70b-fixed":
            assert mem[job.name, model] == 700000, line
        else:
            assert mem[job.name, model] == want["mem_mb"] and f"-t {want['runtime']}" in line, line
    for rule in ("prepare_model", "prune", "scores", "evaluate_ppl"):
        shapes = {m: Shape.from_source_shape(validated["_shapes"][m]) for m in ("l7b", "l70b")}
        tokens = run_tokens(validated)
        gpu = rule != "prepare_model"
        ratio = (host_mib(rule, Terms.of(shapes["l70b"], tokens, "bfloat16"), gpu=gpu)
                 / host_mib(rule, Terms.of(shapes["l7b"], tokens, "bfloat16"), gpu=gpu))
        assert ratio > 9  # the weights dominate: 69.3 / 6.88 billion parameters (49,152-row embeddings)
        assert mem[rule, "l70b"] / mem[rule, "l7b"] == pytest.approx(ratio, rel=0.02)


def test_gpu_jobs_ask_for_the_node_features_whose_gpus_hold_them(tmp_path):
    """resources.gpu_constraints: each GPU job's predicted GPU memory (per GPU) picks the features it may run on,
    passed as sbatch -C; a job that no listed GPU holds stops validation."""
    features = {"gpu24g": 24000, "gpu40g": 40000, "gpu80g": 80000}
    models = {"l7b": {"source": "random:llama2-7b:32", "dtype": "bfloat16"}}
    cfg = config(tmp_path, models=models, methods={"obc": {}, "o-fang": {}}, sparsities=[0.3],
                 resources={"gpu_constraints": features})
    validated = validate_config(yaml.safe_load(cfg.read_text()))
    seen = {}
    for job in planned_jobs(dry_run(tmp_path, cfg)):
        line = sbatch_line(job)
        if job.name not in GPU_RULES:
            assert " -C " not in line, line
            continue
        need = job_request(job.name, validated, "l7b", job.threads)["gpu_mem_mb"]
        want = [f for f, mb in features.items() if mb >= need]
        assert want and f"-C '{'|'.join(want)}'" in line, (need, line)
        seen[job.name] = want
    assert seen["prune"] == list(features) and "gpu24g" not in seen["scores"]  # one layer vs the whole backward
    big = config(tmp_path / "big", models={"l70b": {"source": "random:llama2-70b:80", "dtype": "bfloat16"}},
                 resources={"gpu_constraints": {"gpu80g": 80000}})
    with pytest.raises(ConfigError, match=r"models.l70b: one .* job needs about \d+ MB of GPU memory over 1 GPU.*"
                                          r"resources.gpu_constraints \(gpu80g: 80000 MB\)"):
        validate_config(yaml.safe_load(big.read_text()))


def test_multi_gpu_model_asks_for_its_gpus_in_whole_model_jobs_only(tmp_path):
    models = {
        "tiny-llama": {"source": "random:llama", "gpus": 4, "device_map": "auto", "mem_mb": 500000, "runtime": 600}
    }
    jobs = planned_jobs(dry_run(tmp_path, config(tmp_path, models=models)))
    for job in jobs:
        if job.name in GPU_RULES:
            line = sbatch_line(job)
            want = 4 if job.name in WHOLE_MODEL_RULES else 1
            assert f"--gpus={want}" in line and "--mem 500000" in line and "-t 600" in line, line


def test_cpu_device_asks_for_no_gpu(tmp_path):
    cfg = config(tmp_path, device="cpu")
    for job in planned_jobs(dry_run(tmp_path, cfg)):
        if job.name not in LOCAL_RULES:
            assert "--gpus" not in sbatch_line(job)


def test_sweep_of_3_models_4_sparsities_4_methods_clusters_each_model_once(tmp_path):
    models = {
        "tiny-llama": {"source": "random:llama", "tau": 3.0},
        "tiny-mha": {"source": "random:llama-mha", "dtype": "float32", "batch_size": 2},
        "tiny-qwen2": {"source": "random:qwen2"},
    }
    methods = {"obc": {}, "o-fang": {}, "flap": {}, "wanda-sp": {}}
    cfg = config(tmp_path, models=models, methods=methods, sparsities=[0.1, 0.2, 0.3, 0.4])
    out = dry_run(tmp_path, cfg)
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M)}
    assert counts["cluster"] == counts["scores"] == counts["groups"] == 3
    assert counts["prepare_model"] == counts["calibrate"] == counts["complexity"] == 3
    # two perplexity texts in the CI config (wikitext2, ptb)
    assert counts["prune"] == 3 * 4 * 4 and counts["evaluate_ppl"] == 2 * 48 and counts["evaluate_dense"] == 2 * 3
    assert counts["evaluate_zeroshot"] == 48 and counts["evaluate_zeroshot_dense"] == 3
    pruned = {(j.wildcards["model"], j.wildcards["method"], j.wildcards["sparsity"]) for j in planned_jobs(out)
              if j.name == "prune"}
    assert len(pruned) == 48
