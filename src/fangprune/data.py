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


def _record_text(r) -> str:
    """A JSON record's text: its ``text`` field, else instruction/input/output (Alpaca-style), else its values."""
    if isinstance(r, str):
        return r
    if "text" in r:
        return str(r["text"])
    if "instruction" in r:
        return " ".join(filter(None, (r.get("instruction"), r.get("input"), r.get("output"))))
    return " ".join(str(v) for v in r.values() if isinstance(v, str))


def calibration_text(dataset: str, data_dir: str | None) -> TextSource:
    """Text of a calibration corpus by name: wikitext2, c4, ptb, alpaca or text:<path>."""
    if dataset.startswith("text:"):
        path = Path(dataset[5:]).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"calibration text file not found: {path}")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return TextSource("\n\n".join(_record_text(r) for r in rows), f"local jsonl {path}")
        if path.suffix == ".json":
            rows = json.loads(path.read_text())
            rows = rows if isinstance(rows, list) else [rows]
            return TextSource("\n\n".join(_record_text(r) for r in rows), f"local json {path}")
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
        # the full release if present, else the 5,000-record random sample (closest to sampling the full set)
        names = ("alpaca_data.json", "alpaca_5000.json", "alpaca_data_first2000.json")
        local = next((p for p in (_local(data_dir, "alpaca", n) for n in names) if p is not None), None)
        if local is not None:
            rows, where = json.loads(local.read_text()), f"local {local}"
        elif data_dir:
            raise FileNotFoundError(f"none of alpaca/{{{','.join(names)}}} in {data_dir}")
        else:
            from datasets import load_dataset

            rows, where = list(load_dataset("tatsu-lab/alpaca", split="train")), "hub tatsu-lab/alpaca"
        texts = [" ".join(filter(None, (r.get("instruction"), r.get("input"), r.get("output")))) for r in rows]
        return TextSource("\n\n".join(texts), f"alpaca, {len(rows)} records (instruction input output) ({where})")
    raise ValueError(f"unknown calibration dataset {dataset!r} (wikitext2, c4, ptb, alpaca, text:<path>)")


def _starts(n: int, nsamples: int, seqlen: int, seed: int) -> list[int]:
    if n <= seqlen:
        raise ValueError(f"calibration text has {n} tokens, fewer than seqlen={seqlen}")
    rng = random.Random(seed)
    return [rng.randint(0, n - seqlen - 1) for _ in range(nsamples)]


def with_bos(windows: torch.Tensor, bos_id: int | None) -> torch.Tensor:
    """Prepend ``bos_id`` to every window (models trained with BOS at every sequence start); None: unchanged."""
    if bos_id is None:
        return windows
    return torch.cat([torch.full((windows.shape[0], 1), bos_id, dtype=windows.dtype), windows], dim=1)


def sample_windows(
    token_ids: torch.Tensor, nsamples: int, seqlen: int, seed: int, bos_id: int | None = None
) -> torch.Tensor:
    """``nsamples`` random windows of ``seqlen`` tokens (Wanda/FLAP/FANG sampler: uniform start positions); with
    ``bos_id``, ``seqlen - 1`` text tokens after a BOS token."""
    text_len = seqlen - (bos_id is not None)
    starts = _starts(token_ids.numel(), nsamples, text_len, seed)
    return with_bos(torch.stack([token_ids[s : s + text_len] for s in starts]), bos_id)


#: Offset of the held-out sampler's seed from the calibration seed.
HOLDOUT_SEED_OFFSET = 1_000_003


def holdout_windows(
    token_ids: torch.Tensor, nsamples: int, seqlen: int, seed: int, n_holdout: int, bos_id: int | None = None
) -> torch.Tensor:
    """``n_holdout`` windows of the same text that overlap none of the ``nsamples`` calibration windows drawn
    with ``seed`` (for diagnostics and for choosing variants: training text, never the test sets)."""
    n = token_ids.numel()
    seqlen -= bos_id is not None
    taken = sorted(_starts(n, nsamples, seqlen, seed))
    rng = random.Random(seed + HOLDOUT_SEED_OFFSET)
    starts: list[int] = []
    for _ in range(1000 * max(n_holdout, 1)):
        if len(starts) == n_holdout:
            break
        s = rng.randint(0, n - seqlen - 1)
        if all(abs(s - t) >= seqlen for t in taken + starts):
            starts.append(s)
    if len(starts) < n_holdout:
        raise ValueError(f"the calibration text has no room for {n_holdout} held-out windows of {seqlen} tokens")
    return with_bos(torch.stack([token_ids[s : s + seqlen] for s in starts]), bos_id)


def calibration_token_ids(tokenizer, dataset: str, data_dir: str | None) -> tuple[torch.Tensor, str]:
    src = calibration_text(dataset, data_dir)
    return tokenizer(src.text, return_tensors="pt", add_special_tokens=False).input_ids[0], src.source


def calibration_windows(
    tokenizer, dataset: str, nsamples: int, seqlen: int, seed: int, data_dir: str | None, bos_id: int | None = None
):
    ids, source = calibration_token_ids(tokenizer, dataset, data_dir)
    return sample_windows(ids, nsamples, seqlen, seed, bos_id), source


def wikitext2_rows(text: str, layout: str) -> list[str]:
    """The 4,358 rows of the HF ``wikitext-2-raw-v1`` test split, rebuilt from a local file.

    ``layout="rows_newline_joined"``: ``"\n".join(rows)``, where a text row keeps its own trailing newline, so
    a non-empty line is a row (plus ``"\n"``) followed by the joining newline, and an unconsumed empty line is
    an empty row. ``layout="raw"``: ``wiki.test.raw``, one line per row, empty rows written as ``" "``.
    """
    lines = text.split("\n")
    if layout == "raw":
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return ["" if line == " " else line + "\n" for line in lines]
    if layout != "rows_newline_joined":
        raise ValueError(f"unknown WikiText-2 layout {layout!r}")
    rows, i = [], 0
    while i < len(lines):
        if lines[i] == "":
            rows.append("")
            i += 1
            continue
        rows.append(lines[i] + "\n")
        i += 1
        if i < len(lines):
            if lines[i] != "":
                raise ValueError(f"line {i}: a text row must be followed by the joining newline")
            i += 1
    return rows


def wikitext2_test(data_dir: str | None) -> TextSource:
    """WikiText-2 raw test joined the standard way: ``"\n\n".join(rows)`` of the 4,358 dataset rows (each text
    row keeps its trailing newline), as Wanda, FLAP and FANG tokenise it."""
    for name, layout in (("hf_test_rows_newline_joined.txt", "rows_newline_joined"), ("wiki.test.raw", "raw")):
        path = _local(data_dir, "wikitext-2-raw", name)
        if path is not None:
            rows = wikitext2_rows(path.read_text(), layout)
            return TextSource("\n\n".join(rows), f"wikitext-2-raw test, {len(rows)} rows joined by \\n\\n (local {path})")
    if data_dir:
        raise FileNotFoundError(f"wikitext-2-raw/wiki.test.raw not in {data_dir}")
    return TextSource("\n\n".join(_hub("wikitext", "wikitext-2-raw-v1", "test")), "hub wikitext-2-raw-v1 test")


def ptb_test(data_dir: str | None) -> TextSource:
    """Penn Treebank test sentences joined by single spaces (``" ".join(sentences)``, the SparseGPT protocol)."""
    path = _local(data_dir, "ptb", "ptb.test.txt")
    if path is not None:
        sentences = [line.strip() for line in path.read_text().splitlines()]
        return TextSource(" ".join(sentences), f"ptb test, {len(sentences)} sentences (local {path})")
    if data_dir:
        raise FileNotFoundError(f"ptb/ptb.test.txt not in {data_dir}")
    sentences = _hub("ptb_text_only", "penn_treebank", "test", "sentence")
    return TextSource(" ".join(sentences), "hub ptb_text_only test")


#: Documents of the C4 validation text (SparseGPT/Wanda: the first 1,100 of validation shard 0).
C4_DOCS = 1100


def c4_validation(data_dir: str | None) -> TextSource:
    """C4 ``en`` validation: ``" ".join`` of 1,100 documents (SparseGPT/Wanda; they keep the first 256 x seqlen
    tokens). Locally the 2,000 validation documents of ``c4/c4_validation_2k.parquet`` have an unknown shard and
    order, so the number is a C4-validation perplexity but not byte-comparable with that protocol."""
    path = _local(data_dir, "c4", "c4_validation_2k.parquet")
    if path is not None:
        import pyarrow.parquet as pq

        docs = pq.read_table(path, columns=["text"]).column("text").to_pylist()[:C4_DOCS]
        return TextSource(
            " ".join(docs),
            f"c4 en validation, {len(docs)} documents of a 2,000-document sample of unknown shard/order "
            f"(local {path}; not byte-comparable with the SparseGPT/Wanda shard-0 text)",
        )
    if data_dir:
        raise FileNotFoundError(f"c4/c4_validation_2k.parquet not in {data_dir}")
    docs = _hub("allenai/c4", None, "validation", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"})
    return TextSource(" ".join(docs[:C4_DOCS]), "hub allenai/c4 en validation shard 0, first 1,100 documents")


#: Perplexity datasets: name -> (loader, at most this many windows by the protocol (None = all)).
EVAL_DATASETS = {
    "wikitext2": (wikitext2_test, None),
    "ptb": (ptb_test, None),
    "c4": (c4_validation, 256),
}


def evaluation_text(dataset: str, data_dir: str | None) -> TextSource:
    try:
        loader, _ = EVAL_DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown evaluation dataset {dataset!r} ({', '.join(EVAL_DATASETS)})") from None
    return loader(data_dir)


def protocol_windows(dataset: str, max_windows: int | None) -> int | None:
    """The window cap of a dataset's protocol (C4: 256 windows), combined with the config's ``max_windows``."""
    cap = EVAL_DATASETS[dataset][1]
    if cap is None:
        return max_windows
    return cap if max_windows is None else min(cap, max_windows)
