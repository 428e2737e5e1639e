"""Atomic artifact I/O, run logging and resource accounting shared by every step.

Every artifact is written to a temporary sibling and renamed into place, so a killed job never leaves a file
that looks complete (Snakemake's incomplete-output tracking is the second line of defence).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("fangprune")


_TIMINGS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fangprune_timings", default=None)


@contextlib.contextmanager
def collect_timings() -> Iterator[dict]:
    """Seconds per named step (``timed``) spent inside the block, e.g. one layer's Hessian accumulation, inverse,
    selection and compensation; steps outside any collection cost nothing."""
    out: dict = {}
    token = _TIMINGS.set(out)
    try:
        yield out
    finally:
        _TIMINGS.reset(token)


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    """Add the block's wall time to ``step`` of the innermost ``collect_timings`` (CUDA work is waited for, so a
    GPU step is not billed to the next one)."""
    out = _TIMINGS.get()
    if out is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        out[step] = out.get(step, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkdtemp / mkstemp create 0700 / 0600, and writers inside a directory may do the same (safetensors
        # shards come out 0600): give every file the user's normal permissions, so a group can share results
        normal_permissions(tmp)
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def normal_permissions(path: str | os.PathLike) -> None:
    """chmod ``path`` (and, for a directory, everything under it) to what a plain ``open``/``mkdir`` would
    have given under the current umask: 0666 / 0777 minus the umask."""
    mask = _umask()
    path = Path(path)
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for entry in entries:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def setup_logging(log_file: str | os.PathLike | None = None) -> None:
    """Send logging, warnings and tqdm (stderr) of this process to ``log_file`` (the rule's log)."""
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_file, "a", buffering=1)
        sys.stderr = stream
        sys.stdout = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)


def peak_memory() -> dict[str, float]:
    """Peak resident set size of this process and peak CUDA allocation in MiB: the sum over every visible GPU
    (a device-map job spreads the model) and the largest single GPU's."""
    out = {"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peaks = [torch.cuda.max_memory_allocated(d) / 2**20 for d in range(torch.cuda.device_count())]
        out["cuda_max_allocated_mib"] = sum(peaks)
        out["cuda_max_allocated_per_gpu_mib"] = max(peaks)
    return out


def reset_gpu_peaks() -> None:
    """Start every visible GPU's peak-allocation counter afresh (a step's peak is its own)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for d in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(d)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far (getrusage)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def timed_step(name: str) -> Iterator[dict]:
    """Log wall time, CPU time (the step's, ``cpu_s``, and the process's so far, ``process_cpu_s``) and peak memory
    of a step. Snakemake's ``benchmark:`` has no GPU figures and samples CPU time and RSS, every 30 s after the
    first 15 s, so it misses what a job uses after its last sample."""
    info: dict[str, Any] = {"step": name}
    start, cpu_start = time.perf_counter(), cpu_seconds()
    reset_gpu_peaks()
    log.info("start %s", name)
    try:
        yield info
    finally:
        cpu = cpu_seconds()
        info.update(wall_s=round(time.perf_counter() - start, 3), cpu_s=round(cpu - cpu_start, 3),
                    process_cpu_s=round(cpu, 3))
        info.update(peak_memory())
        log.info("end %s: %s", name, json.dumps(info))


_END_LINE = re.compile(r" end [^:{]+: (\{.*\})")


def log_figures(log_file: str | os.PathLike) -> dict[str, float | None]:
    """A job's own figures from the ``end <step>`` lines ``timed_step`` wrote to its log, read once: ``max_rss_mib``,
    the largest peak (getrusage of the job's process, so no short peak is missed), and ``process_cpu_s``, the
    largest process CPU time (at the end of its last step: the whole process, imports included); None where the
    log (or every line of it) has none."""
    try:
        text = Path(log_file).read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    records = [json.loads(m.group(1)) for m in _END_LINE.finditer(text)]
    peaks = [r.get("max_rss_mib", 0.0) for r in records]
    cpu = [r["process_cpu_s"] for r in records if "process_cpu_s" in r]
    return {"max_rss_mib": max(peaks) if peaks else None, "process_cpu_s": max(cpu) if cpu else None}


def provenance() -> dict[str, Any]:
    """What produced an artifact: code version and library versions."""
    from fangprune import __version__

    info: dict[str, Any] = {"fangprune": __version__, "python": platform.python_version()}
    from importlib.metadata import PackageNotFoundError, version

    # distribution metadata, not imports: importing lm_eval alone takes seconds
    for mod, dist in (("torch", "torch"), ("transformers", "transformers"), ("numpy", "numpy"),
                      ("sklearn", "scikit-learn"), ("scipy", "scipy"), ("lm_eval", "lm_eval")):
        try:
            info[mod] = version(dist)
        except PackageNotFoundError:
            continue
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        if sha:
            info["git"] = sha
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info
