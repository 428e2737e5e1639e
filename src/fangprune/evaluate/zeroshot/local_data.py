"""Readers for the zero-shot benchmarks' original release files (layout of ../shared/data).

Each reader returns a ``datasets.DatasetDict`` with the splits and columns of the Hugging Face dataset that
lm-eval's builtin task loads, so the builtin ``doc_to_text``/``doc_to_choice``/``process_docs`` apply unchanged.
Only splits whose files exist are returned.
"""

from __future__ import annotations

import bz2
import csv
import json
import re
from pathlib import Path

#: Tasks whose local copy is not byte-identical to the hub dataset lm-eval uses; the note travels with the numbers.
APPROXIMATE = {
    "hellaswag": (
        "HellaSwag from a derived text copy (hellaswag_val_full.txt.bz2): ctx_a/ctx_b split lost, so ctx_b is not "
        "capitalised as lm-eval does; close to, not exactly, lm-eval's hellaswag"
    ),
}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_labels(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"zero-shot data file not found: {path}")
    return path


def _dataset_dict(splits: dict[str, list[dict]]):
    import datasets

    if not splits:
        raise FileNotFoundError("no split of this task was found in the data directory")
    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def _choice_rows(path: Path, stem_key: str) -> list[dict]:
    """AI2's multiple-choice jsonl (ARC, OpenBookQA) as the hub columns; the question goes to ``stem_key``."""
    rows = []
    for r in _read_jsonl(path):
        choices = r["question"]["choices"]
        rows.append({
            "id": r["id"],
            stem_key: r["question"]["stem"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
            "answerKey": r["answerKey"],
        })
    return rows


def _labelled(base: Path, docs_file: str, labels_file: str, task: str) -> list[tuple[dict, str]]:
    """(document, label) pairs from a jsonl and its separate one-label-per-line file (PIQA, WinoGrande)."""
    docs, labels = _read_jsonl(_require(base / docs_file)), _read_labels(_require(base / labels_file))
    if len(docs) != len(labels):
        raise ValueError(f"{task}: {len(docs)} documents but {len(labels)} labels")
    return list(zip(docs, labels))


def arc(data_dir: Path, subset: str):
    """allenai/ai2_arc (ARC-Easy or ARC-Challenge) from the ARC-V1 jsonl release."""
    base = Path(data_dir, "arc", subset)
    files = {"train": "Train", "validation": "Dev", "test": "Test"}
    return _dataset_dict({
        split: _choice_rows(base / f"{subset}-{tag}.jsonl", "question")
        for split, tag in files.items()
        if (base / f"{subset}-{tag}.jsonl").exists()
    })


def boolq(data_dir: Path):
    """super_glue/boolq validation from the SuperGLUE jsonl (labels "true"/"false" or booleans)."""
    rows = []
    for r in _read_jsonl(_require(Path(data_dir, "boolq", "val.jsonl"))):
        label = r["label"] if isinstance(r["label"], bool) else str(r["label"]).strip().lower() == "true"
        rows.append({"question": r["question"], "passage": r["passage"], "idx": int(r["idx"]), "label": int(label)})
    return _dataset_dict({"validation": rows})


def piqa(data_dir: Path):
    """PIQA validation: goal/sol1/sol2 from valid.jsonl, the answer from valid-labels.lst."""
    pairs = _labelled(Path(data_dir, "piqa"), "valid.jsonl", "valid-labels.lst", "piqa")
    rows = [{"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(y)} for d, y in pairs]
    return _dataset_dict({"validation": rows})


def winogrande(data_dir: Path):
    """winogrande_xl validation (= the 1.1 dev release) with dev-labels.lst as the answer."""
    rows = []
    for d, y in _labelled(Path(data_dir, "winogrande"), "dev.jsonl", "dev-labels.lst", "winogrande"):
        if "answer" in d and str(d["answer"]) != y:
            raise ValueError(f"winogrande: label file disagrees with the answer of {d.get('qID')}")
        rows.append({"sentence": d["sentence"], "option1": d["option1"], "option2": d["option2"], "answer": y})
    return _dataset_dict({"validation": rows})


_OBQA_CHOICE = re.compile(r"\(([A-D])\)\s*")


def _obqa_tsv_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            parts = _OBQA_CHOICE.split(r["Choices"].strip())
            labels, texts = parts[1::2], [t.strip() for t in parts[2::2]]
            if labels != ["A", "B", "C", "D"]:
                raise ValueError(f"openbookqa {path.name}: cannot parse the choices of {r['ID']}")
            rows.append({
                "id": r["ID"],
                "question_stem": r["Question Stem"],
                "choices": {"text": texts, "label": labels},
                "answerKey": r["Answer Key"].strip(),
            })
    return rows


def openbookqa(data_dir: Path):
    """allenai/openbookqa 'main' from the original release (jsonl if present, else the TSV)."""
    base = Path(data_dir, "openbookqa", "Main")
    splits = {}
    for split, stem in (("train", "train"), ("validation", "dev"), ("test", "test")):
        if (base / f"{stem}.jsonl").exists():
            splits[split] = _choice_rows(base / f"{stem}.jsonl", "question_stem")
        elif (base / f"{stem}.tsv").exists():
            splits[split] = _obqa_tsv_rows(base / f"{stem}.tsv")
    return _dataset_dict(splits)


def hellaswag(data_dir: Path):
    """Rowan/hellaswag validation: the original jsonl when present (exact), else the derived text copy.

    The text copy holds ``activity_label: ctx`` per task; it goes into ``ctx_a`` with an empty ``ctx_b``, so the
    builtin ``process_docs`` reproduces the query except for ctx_b's capitalisation (see ``APPROXIMATE``).
    """
    base = Path(data_dir, "hellaswag")
    exact = base / "hellaswag_val.jsonl"
    if exact.exists():
        rows = [
            {
                "ind": int(r["ind"]), "activity_label": r["activity_label"], "ctx_a": r["ctx_a"],
                "ctx_b": r["ctx_b"], "ctx": r["ctx"], "endings": r["endings"], "source_id": r["source_id"],
                "split": r["split"], "split_type": r["split_type"], "label": str(r["label"]),
            }
            for r in _read_jsonl(exact)
        ]
        return _dataset_dict({"validation": rows})
    with bz2.open(_require(base / "hellaswag_val_full.txt.bz2"), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    rows = []
    for i in range(len(lines) // 6):
        head, label, *endings = lines[6 * i : 6 * i + 6]
        activity, _, ctx = head.partition(": ")
        rows.append({
            "ind": i, "activity_label": activity, "ctx_a": ctx, "ctx_b": "", "ctx": ctx, "endings": endings,
            "source_id": "", "split": "val", "split_type": "", "label": label.strip(),
        })
    return _dataset_dict({"validation": rows})


def is_exact(task: str, data_dir: Path) -> bool:
    """Whether the local copy of ``task`` reproduces the hub dataset exactly."""
    if task == "hellaswag":
        return Path(data_dir, "hellaswag", "hellaswag_val.jsonl").exists()
    return True


def mmlu(data_dir: Path, subject: str):
    """cais/mmlu for one subject from the hendrycks CSVs (test, val -> validation, dev)."""
    base = Path(data_dir, "mmlu")
    splits = {}
    for split, folder in (("test", "test"), ("validation", "val"), ("dev", "dev")):
        path = base / folder / f"{subject}_{folder}.csv"
        if not path.exists():
            continue
        with open(path, encoding="utf-8", newline="") as fh:
            splits[split] = [
                {"question": r[0], "subject": subject, "choices": r[1:5], "answer": "ABCD".index(r[5].strip())}
                for r in csv.reader(fh)
            ]
    if "test" not in splits:
        raise FileNotFoundError(f"mmlu/test/{subject}_test.csv not in {data_dir}")
    return _dataset_dict(splits)


#: Files (relative to the data directory) a task cannot do without; alternatives separated by "|".
REQUIRED = {
    "arc_easy": ["arc/ARC-Easy/ARC-Easy-Test.jsonl"],
    "arc_challenge": ["arc/ARC-Challenge/ARC-Challenge-Test.jsonl"],
    "boolq": ["boolq/val.jsonl"],
    "piqa": ["piqa/valid.jsonl", "piqa/valid-labels.lst"],
    "winogrande": ["winogrande/dev.jsonl", "winogrande/dev-labels.lst"],
    "openbookqa": ["openbookqa/Main/test.jsonl|openbookqa/Main/test.tsv"],
    "hellaswag": ["hellaswag/hellaswag_val.jsonl|hellaswag/hellaswag_val_full.txt.bz2"],
    "mmlu": ["mmlu/test"],
}


def missing_files(task: str, data_dir) -> list[str]:
    """Required files of ``task`` absent from ``data_dir`` (checked before any job starts)."""
    return [
        alts for alts in REQUIRED[task] if not any(Path(data_dir, alt).exists() for alt in alts.split("|"))
    ]


#: task name -> reader(data_dir) for the seven common-sense tasks; MMLU is read per subject.
READERS = {
    "arc_easy": lambda d: arc(d, "ARC-Easy"),
    "arc_challenge": lambda d: arc(d, "ARC-Challenge"),
    "boolq": boolq,
    "piqa": piqa,
    "winogrande": winogrande,
    "openbookqa": openbookqa,
    "hellaswag": hellaswag,
}
