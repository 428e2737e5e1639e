"""Process setup for a workflow step: log file, threads, seeds and device, from the rule's params."""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from fangprune.io import setup_logging
from fangprune.modeling.models import pick_device

log = logging.getLogger("fangprune")
_LIMITS: list = []  # keeps the thread-pool limits alive for the process


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def deterministic_cuda() -> None:
    """What torch offers for repeatable GPU results where a rule's output feeds a selection: deterministic
    kernels where they exist (a warning, not an error, where an op has none), a fixed cuBLAS workspace, no cuDNN
    autotuning. Results can still differ between GPU models, driver and library versions (docs/slurm.md)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


_CLAIMS: list = []  # open lock files: a claimed GPU stays this process's until it exits (or crashes)
GPU_SLOTS = ".snakemake/gpu-slots"


def visible_gpus() -> list[str]:
    """The GPUs this process may use, without initialising CUDA (after which CUDA_VISIBLE_DEVICES is fixed):
    CUDA_VISIBLE_DEVICES if set, else one per GPU the NVIDIA driver lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in (x.strip() for x in env.split(",")) if g and g != "-1"]
    driver = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(driver.iterdir())))] if driver.is_dir() else []


def claim_gpus(count: int, slots: str | Path = GPU_SLOTS, wait_s: float = 600.0) -> list[str]:
    """Local runs on a machine with several GPUs: take ``count`` GPUs no other job of this run holds and restrict
    CUDA_VISIBLE_DEVICES to them, so concurrent GPU jobs do not all land on the first GPU (Snakemake's ``gpu``
    resource counts GPUs but does not say which). Each GPU is an exclusive lock file under ``slots``, released when
    the process ends, however it ends. Under SLURM (which assigns GPUs itself), or with no more GPUs than asked
    for, nothing changes. Waits up to ``wait_s`` for a GPU to free up, then fails naming what holds them."""
    import fcntl

    gpus = visible_gpus()
    if count < 1 or os.environ.get("SLURM_JOB_ID") or len(gpus) <= count:
        return gpus[:count] if count >= 1 else []
    Path(slots).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        held = []
        for gpu in gpus:
            f = open(Path(slots) / f"gpu{gpu}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            f.seek(0), f.truncate(), f.write(f"{os.getpid()}\n"), f.flush()
            held.append((gpu, f))
            if len(held) == count:
                break
        if len(held) == count:
            _CLAIMS.extend(f for _, f in held)
            chosen = [g for g, _ in held]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
            log.info("claimed GPU(s) %s of %s", ",".join(chosen), ",".join(gpus))
            return chosen
        for _, f in held:
            f.close()  # releases the lock: take all or none, so two jobs never wait on each other's halves
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {count} free GPU(s) among {','.join(gpus)} after {wait_s:.0f} s: other jobs of "
                               f"this run hold them (locks in {slots}); is the profile's `gpu` resource larger than "
                               "the machine's GPU count?")
        time.sleep(1.0)


def setup(log_file: str | None, threads: int = 1, seed: int = 0, device: str = "auto", gpus: int = 0) -> torch.device:
    """Log file, thread budget, seeds and device of one step; ``gpus``: the GPUs the job was given (its ``gpu``
    resource), claimed before anything touches CUDA when the config leaves the index open (``claim_gpus``)."""
    setup_logging(log_file)
    if gpus and str(device) in ("auto", "cuda"):
        claim_gpus(gpus)
    torch.set_num_threads(max(1, int(threads)))
    try:  # BLAS/OpenMP pools of numpy, scipy and scikit-learn obey the same budget as torch
        from threadpoolctl import threadpool_limits

        _LIMITS.append(threadpool_limits(max(1, int(threads))))
    except ImportError:
        pass
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seed_everything(seed)
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # Hessians and compensation need full fp32
        torch.backends.cudnn.allow_tf32 = False
        deterministic_cuda()
    log.info("device=%s threads=%d seed=%d", dev, torch.get_num_threads(), seed)
    return dev


def from_snakemake(smk) -> torch.device:
    """Setup from a Snakemake ``script:`` object (params: threads via smk.threads, seed, device; resources: gpu)."""
    return setup(smk.log[0] if smk.log else None, smk.threads, smk.params.get("seed", 0), smk.params.get("device", "auto"),
                 gpus=int(smk.resources.get("gpu", 0) or 0))


def dense_engine(model_dir: str, windows_path: str, dtype: str, device: torch.device, batch_size: int = 1):
    """Load the dense model and the calibration windows into a LayerwiseEngine; return (engine, calibration)."""
    from fangprune.core.engine import LayerwiseEngine
    from fangprune.io import load_torch
    from fangprune.modeling.models import load_model

    calib = load_torch(windows_path)
    model = load_model(model_dir, dtype=dtype)
    return LayerwiseEngine(model, calib["input_ids"], device, batch_size=batch_size), calib
