"""Device handling a CPU can check: tensors on another device (``meta`` stands in for a second GPU) meet where
a GPU run would mix devices, and a job given GPUs that cannot use CUDA refuses to run on the CPU."""

import pytest
import torch
from conftest import random_windows, tiny_model
from torch import nn

from fangprune.methods.flap import Moments, channel_metric
from fangprune.modeling.lm_loss import _chunk_nll
from fangprune.modeling.models import GPU_ALLOCATION_VARS, pick_device


@pytest.fixture
def no_gpu_env(monkeypatch):
    for var in (*GPU_ALLOCATION_VARS, "FANG_CPU_FALLBACK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def test_auto_is_the_cpu_without_an_allocation(no_gpu_env):
    assert pick_device("auto") == torch.device("cpu")
    no_gpu_env.setenv("SLURM_GPUS_ON_NODE", "0")
    no_gpu_env.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pick_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("var, value", [("CUDA_VISIBLE_DEVICES", "0"), ("SLURM_JOB_GPUS", "2,3"),
                                        ("SLURM_GPUS_ON_NODE", "1")])
def test_a_job_given_gpus_without_usable_cuda_refuses(no_gpu_env, var, value):
    no_gpu_env.setenv(var, value)
    with pytest.raises(RuntimeError, match=f"given GPUs \\({var}={value}\\).*device: cpu"):
        pick_device("auto")
    assert pick_device("cpu") == torch.device("cpu")  # an explicit CPU run is the user's choice
    no_gpu_env.setenv("FANG_CPU_FALLBACK", "1")  # placeholder GPUs (a test cluster's fake GRES)
    assert pick_device("auto") == torch.device("cpu")


def test_cuda_index_beyond_the_allocation_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="sees 1 GPU"):
        pick_device("cuda:1")
    assert pick_device("cuda:0") == torch.device("cuda:0")


def test_lm_loss_moves_targets_to_the_logits_device():
    """A tied LM head under a device map: the head's logits on another device than the hidden states."""
    model = tiny_model()
    head = model.lm_head

    class ElsewhereHead(nn.Module):
        def forward(self, h):
            return head(h).to("meta")

    model.lm_head = ElsewhereHead()
    hidden = torch.randn(1, 5, model.config.hidden_size)
    nll = _chunk_nll(model, hidden, random_windows(1, 5))
    assert nll.device.type == "meta" and nll.shape == (1, 5)


@pytest.mark.parametrize("metric", ["IFV", "WIFV", "WIFN"])
def test_flap_metrics_with_statistics_on_another_device(metric):
    stats = Moments()
    stats.add(torch.randn(2, 8, 6))
    stats.windows = 2
    W = torch.randn(4, 6, device="meta")  # the layer, back on another device than its statistics
    assert channel_metric(metric, W, stats).device.type == "meta"


def test_gpu_peaks_are_summed_over_every_gpu_and_reset_per_step(monkeypatch):
    from fangprune import io

    peaks = {0: 3 * 2**20, 1: 5 * 2**20}
    reset = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: peaks[d])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: reset.append(d))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    with io.timed_step("x") as info:
        pass
    assert reset == [0, 1]
    assert info["cuda_max_allocated_mib"] == 8.0 and info["cuda_max_allocated_per_gpu_mib"] == 5.0


HOLD = """
import os, sys, time
from fangprune.runtime import claim_gpus
got = claim_gpus(int(sys.argv[1]), sys.argv[2], wait_s=float(sys.argv[3]))
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[4]))
"""


def _holder(count, slots, wait=1.0, hold=30.0, env=None):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", HOLD, str(count), str(slots), str(wait), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_local_gpu_jobs_each_claim_their_own_gpus(tmp_path, monkeypatch):
    """Three GPUs, concurrent jobs of 1, 1 and 1 GPU: each gets its own; a fourth waits, then fails with a message;
    when a job ends (killed here), its GPU is free for the next; a 2-GPU job takes two at once."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2"
    slots = tmp_path / "slots"
    jobs = [_holder(1, slots, env=env) for _ in range(3)]
    got = sorted(j.stdout.readline().strip() for j in jobs)
    assert got == ["0", "1", "2"]
    late = _holder(1, slots, wait=1.0, hold=0, env=env)
    assert late.wait(timeout=60) != 0 and "no 1 free GPU(s) among 0,1,2" in late.stderr.read()
    jobs[0].kill()
    jobs[0].wait()
    freed = _holder(1, slots, wait=30.0, hold=0, env=env)
    assert freed.wait(timeout=60) == 0
    pair = _holder(2, slots, wait=1.0, hold=0, env=env)  # two GPUs are not free: all or none, no half claim
    assert pair.wait(timeout=60) != 0
    for j in jobs[1:]:
        j.kill()
        j.wait()
    pair = _holder(2, slots, wait=30.0, hold=0, env=env)
    assert pair.wait(timeout=60) == 0 and len(pair.stdout.read().strip().split(",")) == 2
    # under SLURM (which assigns GPUs) nothing is claimed or changed
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    from fangprune.runtime import claim_gpus

    assert claim_gpus(1, tmp_path / "other") == ["3"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert not (tmp_path / "other").exists()
