"""Process setup for a workflow step: log file, threads, seeds and device, from the rule's params."""

from __future__ import annotations

import logging
import os
import random

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


def setup(log_file: str | None, threads: int = 1, seed: int = 0, device: str = "auto") -> torch.device:
    setup_logging(log_file)
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
    """Setup from a Snakemake ``script:`` object (params: threads via smk.threads, seed, device)."""
    return setup(smk.log[0] if smk.log else None, smk.threads, smk.params.get("seed", 0), smk.params.get("device", "auto"))


def dense_engine(model_dir: str, windows_path: str, dtype: str, device: torch.device, batch_size: int = 1):
    """Load the dense model and the calibration windows into a LayerwiseEngine; return (engine, calibration)."""
    from fangprune.core.engine import LayerwiseEngine
    from fangprune.io import load_torch
    from fangprune.modeling.models import load_model

    calib = load_torch(windows_path)
    model = load_model(model_dir, dtype=dtype)
    return LayerwiseEngine(model, calib["input_ids"], device, batch_size=batch_size), calib
