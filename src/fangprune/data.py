"""Calibration windows and evaluation text ("Experimental Settings": 128 random 2048-token windows of the
WikiText-2 train split for calibration, the WikiText-2 test split for perplexity).

Each loader reads from a local data directory (layout of ../shared/data) when one is given, else from the hub.
Offline, WikiText-2 *raw* train is not available: the tokenised train split (``<unk>`` for rare words) is used
instead and the returned ``source`` says so, so that every artifact records what it was calibrated on.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass
class TextSource:
    text: str
    source: str  # human-readable provenance, recorded in every artifact


def _local(data_dir: str | None, *parts: str) -> Path | None:
    if not data_dir:
        return None
    path = Path(data_dir, *parts)
    return path if path.exists() else None


def _hub(name: str, config: str | None, split: str, field: str = "text", **kw) -> list[str]:
    try:
        from datasets import load_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "no local data directory is configured (config 'data_dir' or $FANG_DATA_DIR) and the 'datasets' "
            "package needed for the hub is not installed"
        ) from exc
    ds = load_dataset(name, config, split=split, **kw)
    return list(ds[field])


def calibration_text(dataset: str, data_dir: str | None) -> TextSource:
    """Text of a calibration corpus by name: wikitext2, c4, ptb, alpaca or text:<path>."""
    if dataset.startswith("text:"):
        path = Path(dataset[5:]).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"calibration text file not found: {path}")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return TextSource("\n\n".join(r.get("text", "") for r in rows), f"local jsonl {path}")
        return TextSource(path.read_text(), f"local text {path}")
    if dataset == "wikitext2":
        raw = _local(data_dir, "wikitext-2-raw", "wiki.train.raw")
        if raw is not None:
            return TextSource(raw.read_text(), f"wikitext-2-raw train (local {raw})")
        tok = _local(data_dir, "wikitext-2-tokens", "wiki.train.tokens")
        if tok is not None:
            log.warning("WikiText-2 raw train is not in %s; calibrating on the tokenised (<unk>) train split", data_dir)
            return TextSource(
                tok.read_text(), f"wikitext-2 TOKENISED train with <unk> (local {tok}; raw split unavailable offline)"
            )
        if data_dir:
            raise FileNotFoundError(f"neither wikitext-2-raw/wiki.train.raw nor wikitext-2-tokens/ in {data_dir}")
        return TextSource(" ".join(_hub("wikitext", "wikitext-2-raw-v1", "train")), "hub wikitext-2-raw-v1 train")
    if dataset == "ptb":
        local = _local(data_dir, "ptb", "ptb.train.txt")
        if local is not None:
            return TextSource(local.read_text(), f"ptb train (local {local})")
        if data_dir:
            raise FileNotFoundError(f"ptb/ptb.train.txt not in {data_dir}")
        return TextSource(" ".join(_hub("ptb_text_only", "penn_treebank", "train", "sentence")), "hub ptb train")
    if dataset == "c4":
        local = _local(data_dir, "c4", "c4-train.00000-of-01024.json")
        if local is not None:
            rows = [json.loads(line)["text"] for line in local.read_text().splitlines() if line.strip()]
            return TextSource("\n\n".join(rows), f"c4 shard (local {local})")
        if data_dir:
            raise FileNotFoundError(f"c4/c4-train.00000-of-01024.json not in {data_dir}")
        rows = _hub(
            "allenai/c4", None, "train", data_files={"train": "en/c4-train.00000-of-01024.json.gz"}
        )
        return TextSource("\n\n".join(rows), "hub allenai/c4 en train shard 0")
    if dataset == "alpaca":
        local = _local(data_dir, "alpaca", "alpaca_data.json")
        if local is not None:
            rows = json.loads(local.read_text())
        elif data_dir:
            raise FileNotFoundError(f"alpaca/alpaca_data.json not in {data_dir}")
        else:
            from datasets import load_dataset

            rows = list(load_dataset("tatsu-lab/alpaca", split="train"))
        texts = [" ".join(filter(None, (r.get("instruction"), r.get("input"), r.get("output")))) for r in rows]
        return TextSource("\n\n".join(texts), "alpaca")
    raise ValueError(f"unknown calibration dataset {dataset!r} (wikitext2, c4, ptb, alpaca, text:<path>)")


def sample_windows(token_ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` random windows of ``seqlen`` tokens (Wanda/FLAP/FANG sampler: uniform start positions)."""
    n = token_ids.numel()
    if n <= seqlen:
        raise ValueError(f"calibration text has {n} tokens, fewer than seqlen={seqlen}")
    rng = random.Random(seed)
    starts = [rng.randint(0, n - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([token_ids[s : s + seqlen] for s in starts])


def calibration_windows(tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int, data_dir: str | None):
    src = calibration_text(dataset, data_dir)
    ids = tokenizer(src.text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    return sample_windows(ids, nsamples, seqlen, seed), src.source


def wikitext2_test(data_dir: str | None) -> TextSource:
    """WikiText-2 raw test joined the standard way (``"\\n\\n".join(rows)``, as Wanda/FLAP/FANG)."""
    rows_file = _local(data_dir, "wikitext-2-raw", "hf_test_rows_newline_joined.txt")
    if rows_file is not None:
        rows = rows_file.read_text().split("\n")
        return TextSource("\n\n".join(rows), f"wikitext-2-raw test (local {rows_file})")
    raw = _local(data_dir, "wikitext-2-raw", "wiki.test.raw")
    if raw is not None:
        return TextSource("\n\n".join(raw.read_text().split("\n")), f"wikitext-2-raw test (local {raw})")
    if data_dir:
        raise FileNotFoundError(f"wikitext-2-raw/wiki.test.raw not in {data_dir}")
    return TextSource("\n\n".join(_hub("wikitext", "wikitext-2-raw-v1", "test")), "hub wikitext-2-raw-v1 test")
