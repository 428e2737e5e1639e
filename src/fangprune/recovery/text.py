"""Recovery training text and windows, checked against the evaluation texts.

The training windows and the held-out windows (the learning curve's) are cut from one training text, never from
an evaluation text: every window that shares an ``NGRAM``-token run with an evaluation text is dropped, and a
text of which most windows overlap one (for example the WikiText-2 test split under another name) is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fangprune.data import C4_DOCS, TextSource, _local, calibration_text, with_bos

log = logging.getLogger(__name__)

#: Length of the token runs compared between training and evaluation text (long enough that ordinary phrases do
#: not match, short enough that any copied sentence does).
NGRAM = 32
#: A training text of which at least this fraction of windows overlaps an evaluation text is that text.
REFUSE_FRACTION = 0.5
#: Training data names (``text:<path>`` is also accepted).
DATASETS = ("c4", "alpaca", "wikitext2")


class OverlapError(ValueError):
    """The training text is (mostly) an evaluation text."""


def training_text(name: str, data_dir: str | None) -> TextSource:
    """The recovery text ``name``: ``c4`` (the C4 ``en`` train shard; offline, the documents of the local
    validation sample after the ``C4_DOCS`` that C4 perplexity reads), ``alpaca``, ``wikitext2`` (train split) or
    ``text:<path>``."""
    if name != "c4":
        return calibration_text(name, data_dir)
    if _local(data_dir, "c4", "c4-train.00000-of-01024.json") is not None or not data_dir:
        return calibration_text("c4", data_dir)
    path = _local(data_dir, "c4", "c4_validation_2k.parquet")
    if path is None:
        raise FileNotFoundError(f"neither c4/c4-train.00000-of-01024.json nor c4/c4_validation_2k.parquet in {data_dir}")
    import pyarrow.parquet as pq

    docs = pq.read_table(path, columns=["text"]).column("text").to_pylist()[C4_DOCS:]
    if not docs:
        raise ValueError(f"{path} has no documents after the {C4_DOCS} that C4 perplexity reads")
    return TextSource("\n\n".join(docs), f"c4 en validation documents {C4_DOCS + 1}-{C4_DOCS + len(docs)} of the local "
                      f"2,000-document sample ({path}; C4 perplexity reads documents 1-{C4_DOCS})")


def ngram_hashes(ids: torch.Tensor | np.ndarray, n: int = NGRAM) -> np.ndarray:
    """A 64-bit hash of every run of ``n`` consecutive tokens (a fixed random linear form, wrapping arithmetic)."""
    a = np.asarray(ids, dtype=np.uint64).ravel()
    if a.size < n:
        return np.zeros(0, dtype=np.uint64)
    coef = np.random.default_rng(12345).integers(1, 2**63, size=n, dtype=np.uint64) | np.uint64(1)
    out = np.zeros(a.size - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            out += a[j : j + out.size] * coef[j]
    return out


def overlapping(ids: torch.Tensor, seqlen: int, reference: np.ndarray, n: int = NGRAM) -> torch.Tensor:
    """Which of the ``len(ids) // seqlen`` consecutive windows of ``ids`` hold an ``n``-token run whose hash is in
    ``reference`` (``ngram_hashes`` of an evaluation text): one membership test over the whole stream."""
    windows = ids.numel() // seqlen
    hashes = ngram_hashes(ids[: windows * seqlen], n)
    pos = np.flatnonzero(np.isin(hashes, reference))
    pos = pos[(pos % seqlen) + n <= seqlen]  # runs that lie inside one window
    hit = torch.zeros(windows, dtype=torch.bool)
    hit[torch.from_numpy(pos // seqlen)] = True
    return hit


@dataclass
class RecoveryWindows:
    train: torch.Tensor  # [N, seqlen]
    heldout: torch.Tensor  # [H, seqlen]
    source: str
    dropped: dict  # evaluation text -> windows dropped for sharing a run with it


def recovery_windows(ids: torch.Tensor, seqlen: int, heldout: int, seed: int, source: str,
                     evaluation: dict[str, torch.Tensor], bos_id: int | None = None) -> RecoveryWindows:
    """Non-overlapping windows of ``seqlen`` tokens in a seeded order: the first ``heldout`` for the learning
    curve, the rest for training; windows sharing an ``NGRAM``-token run with an ``evaluation`` text (name ->
    token ids) are dropped, and a text mostly made of one is refused (OverlapError)."""
    text_len = seqlen - (bos_id is not None)
    n = ids.numel() // text_len
    if n < heldout + 1:
        raise ValueError(f"the recovery text has {ids.numel()} tokens: fewer than {heldout + 1} windows of {seqlen}")
    windows = ids[: n * text_len].reshape(n, text_len)
    keep = torch.ones(n, dtype=torch.bool)
    dropped = {}
    for name, eval_ids in evaluation.items():
        hit = overlapping(ids, text_len, ngram_hashes(eval_ids))
        if hit.float().mean() >= REFUSE_FRACTION:
            raise OverlapError(f"{hit.sum()} of {n} recovery windows share {NGRAM}-token runs with the {name} "
                               f"evaluation text: the recovery data ({source}) is that evaluation text")
        dropped[name] = int(hit.sum())
        keep &= ~hit
    kept = windows[keep]
    order = torch.randperm(kept.shape[0], generator=torch.Generator().manual_seed(seed))
    kept = with_bos(kept[order], bos_id)
    if kept.shape[0] < heldout + 1:
        raise ValueError(f"after dropping windows that overlap evaluation text, {kept.shape[0]} windows are left")
    log.info("recovery windows: %d train, %d held out, dropped %s", kept.shape[0] - heldout, heldout, dropped)
    return RecoveryWindows(kept[heldout:], kept[:heldout], source, dropped)


def contains_evaluation_text(text: str, evaluation: dict[str, str], probes: int = 50, chars: int = 100) -> str | None:
    """The name of an evaluation text of which at least half of ``probes`` evenly spaced ``chars``-character
    slices appear verbatim in ``text`` (a cheap check for validation, before any job), else None."""
    for name, ev in evaluation.items():
        if len(ev) < chars:
            continue
        step = max(1, (len(ev) - chars) // probes)
        slices = [ev[i : i + chars] for i in range(0, len(ev) - chars + 1, step)][:probes]
        if sum(sl in text for sl in slices) * 2 >= len(slices):
            return name
    return None


def read_text_arg(name: str) -> str | None:
    """The file text of a ``text:<path>`` dataset name, else None."""
    if not name.startswith("text:"):
        return None
    path = Path(name[5:]).expanduser()
    return path.read_text(errors="replace") if path.exists() else None
