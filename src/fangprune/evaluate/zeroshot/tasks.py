"""lm-eval tasks of the paper's zero-shot evaluation (Tables 2, 4 and 10), offline or from the hub.

The task configs are the *installed* lm-eval's builtin YAMLs, loaded as they are; offline, only the dataset
source is swapped for a reader of the original files (``local_data``), so prompts, choices, targets and
metrics are the builtin ones by construction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from fangprune.evaluate.zeroshot import local_data

#: The seven common-sense tasks in the paper's column order (Table 2), then MMLU (Table 4).
COMMONSENSE = ["boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
TASKS = COMMONSENSE + ["mmlu"]

DISPLAY = {
    "boolq": "BoolQ", "piqa": "PIQA", "hellaswag": "HellaSwag", "winogrande": "WinoGrande",
    "arc_easy": "ARC-e", "arc_challenge": "ARC-c", "openbookqa": "OBQA", "mmlu": "MMLU",
}

_BUILTIN_YAML = {
    "boolq": "super_glue/boolq/default.yaml",
    "piqa": "piqa/piqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
}

#: MMLU category tags of the builtin subtasks -> the paper's column names.
MMLU_CATEGORIES = {
    "mmlu_humanities_tasks": "humanities",
    "mmlu_stem_tasks": "stem",
    "mmlu_social_sciences_tasks": "social_sciences",
    "mmlu_other_tasks": "other",
}


def unknown_tasks(names) -> list[str]:
    return [n for n in names if n not in TASKS]


def _builtin_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def _load_builtin(relpath: str) -> dict:
    # lm-eval 0.4.10+ keeps its YAML loader (includes + !function) here; older releases had utils.load_yaml_config
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # pragma: no cover - depends on the installed lm-eval
        from lm_eval.utils import load_yaml_config

        return load_yaml_config(str(_builtin_dir() / relpath), mode="full")
    return load_yaml(_builtin_dir() / relpath, resolve_func=True)


def mmlu_subjects() -> dict[str, str]:
    """Builtin MMLU subtasks: subject -> category."""
    subjects = {}
    for path in sorted((_builtin_dir() / "mmlu" / "default").glob("mmlu_*.yaml")):
        cfg = _load_builtin(str(path.relative_to(_builtin_dir())))
        tags = cfg.get("tag") or []
        tags = [tags] if isinstance(tags, str) else tags
        category = next(MMLU_CATEGORIES[t] for t in tags if t in MMLU_CATEGORIES)
        subjects[cfg["dataset_name"]] = category
    if len(subjects) != 57:
        raise RuntimeError(f"expected the 57 builtin MMLU subtasks, found {len(subjects)}")
    return subjects


def _serve(dataset, **_ignored):
    # lm-eval calls custom_dataset(**metadata, **dataset_kwargs); the data is already read
    return dataset


@dataclass
class TaskSpec:
    """One lm-eval task (an MMLU subject is one task) and where its data comes from."""

    name: str
    config: dict
    source: str  # "local <dir>" or "hub <path>"
    exact: bool  # False when the local copy only approximates the hub dataset
    category: str | None = None  # MMLU category
    n_total: int | None = None  # size of the evaluation split before any limit (local data only)


def _localise(cfg: dict, reader, data_dir: Path, limit: int | None) -> tuple[dict, int]:
    """Swap the hub dataset for the local files; return the config and the evaluation split's full size.

    With a limit, the evaluation split is cut to its first ``limit`` rows here: lm-eval would score exactly those
    (it takes the first ``limit`` documents), but runs ``process_docs`` over the whole split several times first.
    """
    dataset = reader(data_dir)
    cfg = dict(cfg)
    cfg.pop("dataset_path", None)
    cfg.pop("dataset_name", None)
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if cfg.get(key) is not None and cfg[key] not in dataset:
            cfg[key] = None
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    if eval_split is None:
        raise ValueError(f"{cfg['task']}: no evaluation split in the local files under {data_dir}")
    n_total = len(dataset[eval_split])
    if limit is not None and limit < n_total:
        dataset[eval_split] = dataset[eval_split].select(range(limit))
    cfg["custom_dataset"] = functools.partial(_serve, dataset)
    return cfg, n_total


def task_specs(task: str, data_dir: str | Path | None, limit: int | None = None) -> list[TaskSpec]:
    """The lm-eval task configs behind ``task`` (57 for ``mmlu``), local when ``data_dir`` is given."""
    if task not in TASKS:
        raise ValueError(f"unknown zero-shot task {task!r}; known: {', '.join(TASKS)}")
    data_dir = Path(data_dir) if data_dir else None
    if task != "mmlu":
        cfg = _load_builtin(_BUILTIN_YAML[task])
        if data_dir is None:
            return [TaskSpec(task, cfg, f"hub {cfg.get('dataset_path')}", True)]
        cfg, n_total = _localise(cfg, local_data.READERS[task], data_dir, limit)
        return [TaskSpec(task, cfg, f"local {data_dir}", local_data.is_exact(task, data_dir), n_total=n_total)]
    specs = []
    for subject, category in mmlu_subjects().items():
        cfg = _load_builtin(f"mmlu/default/mmlu_{subject}.yaml")
        source, n_total = f"hub {cfg.get('dataset_path')}", None
        if data_dir is not None:
            reader = functools.partial(local_data.mmlu, subject=subject)
            (cfg, n_total), source = _localise(cfg, reader, data_dir, limit), f"local {data_dir}"
        specs.append(TaskSpec(cfg["task"], cfg, source, True, category, n_total))
    return specs


def paper_metric(metrics: dict) -> str:
    """The accuracy the paper's tables use: acc_norm where the task reports it, else acc."""
    return "acc_norm" if "acc_norm" in metrics else "acc"
