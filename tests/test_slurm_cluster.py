"""The tiny-model workflow on a REAL single-node SLURM cluster, through ``--profile profiles/slurm``.

Starts munge, MariaDB, slurmdbd, slurmctld and slurmd (tests/slurm/start-slurm.sh, with two fake GPUs so that
`--gpus=1` jobs schedule), runs the workflow, reads SLURM's own accounting (sacct), and stops only the daemons it
started. Needs root and the Debian package mirror; runs when FANG_SLURM_TEST=1 (set by .ci/run).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DATA_DIR, REPO

pytestmark = pytest.mark.skipif(
    os.environ.get("FANG_SLURM_TEST") != "1" or os.geteuid() != 0,
    reason="real SLURM cluster test: set FANG_SLURM_TEST=1 and run as root",
)

SCRIPTS = REPO / "tests" / "slurm"
# zero-shot and speed jobs ask for the same resources as evaluate_ppl (tests/test_slurm_profile.py checks every
# rule's sbatch request in dry runs); this run leaves them out to stay within CI's time
# obc with uniform allocation: no clustering chain (cluster, complexity, scores), whose sbatch requests the dry
# runs check too; the real cluster sees a GPU job per kind (layer-wise prune, whole-model evaluation)
GPU_RULES = {"prune", "evaluate_ppl", "evaluate_dense"}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@pytest.fixture(scope="module")
def cluster():
    subprocess.run(["bash", str(SCRIPTS / "start-slurm.sh")], check=True, timeout=600)
    yield
    subprocess.run(["bash", str(SCRIPTS / "stop-slurm.sh")], check=False, timeout=120)


def snakemake(workdir: Path, *args) -> subprocess.CompletedProcess:
    # the plugin ignores SIGTERM while it waits on SLURM: `timeout -k` makes sure a hang cannot outlive the test
    cmd = ["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
           "--profile", str(REPO / "profiles" / "slurm"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--replace-workflow-config",
           # poll every second instead of the plugin's 40 s start and growing interval
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
           "--jobs", "4", *args]
    # the test cluster's GPUs are fake GRES: jobs that get one compute on the CPU (sbatch exports this variable)
    env = {**os.environ, "FANG_CPU_FALLBACK": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=960, env=env)


def submissions(log: str) -> list[tuple[str, str]]:
    """(SLURM job id, rule) of every sbatch submission in a Snakemake log."""
    return [(jid, re.search(r"/rule_(\w+)", path).group(1)) for jid, path in SUBMITTED.findall(log)]


def sacct(job_ids: list[str]) -> dict[str, dict]:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "--format", "JobID,State,AllocTRES,Timelimit"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line.split("|") for line in out.strip().splitlines()]
    return {r[0]: {"state": r[1], "tres": r[2], "timelimit": r[3]} for r in rows}


def test_workflow_runs_through_sbatch_reruns_nothing_and_retries_a_failed_job(cluster, tmp_path):
    cfg = yaml.safe_load((REPO / "tests" / "config.ci.yaml").read_text())
    cfg.update(
        data_dir=str(DATA_DIR),
        device="auto",  # no CUDA here: jobs ask SLURM for the (fake) GPU and compute on the CPU (FANG_CPU_FALLBACK)
        models={"tiny-llama": {"source": "random:llama"}},
        sparsities=[0.3],
        methods={"obc": {"allocation": "uniform"}},
        resources={"slurm_account": "root", "gpu_partition": "debug", "cpu_partition": "debug",
                   "gpu_mem_mb": 1500, "cpu_mem_mb": 1000, "gpu_runtime": 10, "cpu_runtime": 5},
    )
    cfg["zeroshot"].update(tasks=[])
    cfg["speed"]["enabled"] = False
    cfg["evaluation"]["datasets"] = ["wikitext2"]  # one job per rule
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))

    # 1. every non-local job goes through sbatch and SLURM records it as completed
    first = snakemake(tmp_path)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-6000:]
    jobs = submissions(log)
    rules = sorted(rule for _, rule in jobs)
    assert rules == sorted(GPU_RULES | {"prepare_model"}), rules
    records = sacct([jid for jid, _ in jobs])
    for jid, rule in jobs:
        assert records[jid]["state"] == "COMPLETED", (rule, records[jid])
        assert ("gres/gpu=1" in records[jid]["tres"]) == (rule in GPU_RULES), (rule, records[jid])
    for path in ("results/tables/table1.md", "results/tables/costs.md"):
        assert (tmp_path / path).is_file(), path
    costs = (tmp_path / "results/tables/costs.csv").read_text()
    assert "prune,tiny-llama,1," in costs and "total,all," in costs
    manifest = json.loads((tmp_path / "results/pruned/tiny-llama/obc/sp0.30/pruning.json").read_text())
    assert manifest["params"]["allocation"] == "uniform" and len(manifest["report"]["layers"]) == 3

    # 2. a second run submits nothing
    second = snakemake(tmp_path)
    log = second.stdout + second.stderr
    assert second.returncode == 0 and "Nothing to be done" in log and not submissions(log), log[-3000:]

    # 3. a job made to fail (its allocation file is corrupted) is reported failed and resubmitted once, with twice
    # the time limit; Snakemake exits non-zero and leaves no checkpoint that looks complete
    allocation = next((tmp_path / "results" / "allocation").rglob("sp0.30.json"))
    allocation.write_text("{not json")
    third = snakemake(tmp_path)
    log = third.stdout + third.stderr
    assert third.returncode != 0, log[-3000:]
    prunes = [jid for jid, rule in submissions(log) if rule == "prune"]
    assert len(prunes) == 2, log[-6000:]
    assert "SLURM status is: 'FAILED'" in log
    records = sacct(prunes)
    assert [records[j]["state"] for j in prunes] == ["FAILED", "FAILED"]
    assert [records[j]["timelimit"] for j in prunes] == ["00:10:00", "00:20:00"]
    assert not (tmp_path / "results/pruned/tiny-llama/obc/sp0.30").exists()
