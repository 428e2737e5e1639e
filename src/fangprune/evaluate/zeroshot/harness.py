"""Run one zero-shot task with lm-evaluation-harness 0.4 on an in-memory (dense or pruned) model."""

from __future__ import annotations

import logging
import math
from importlib.metadata import version

import torch

from fangprune.evaluate.zeroshot.tasks import TaskSpec, paper_metric, task_specs
from fangprune.modeling.models import needs_bos, place

log = logging.getLogger(__name__)


def _lm(model, tokenizer, batch_size: int, device: torch.device, max_length: int | None):
    from lm_eval.models.huggingface import HFLM

    device = place(model, device)
    model.eval()
    bos = True if needs_bos(model.config.model_type) else None  # None: lm-eval's default for the tokenizer
    return HFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device), max_length=max_length,
        add_bos_token=bos,
    )


def _gold(task, doc) -> int:
    # lm-eval's multiple-choice rule: with several contexts (WinoGrande) doc_to_text holds the gold index
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, str) and not gold.isdigit():
        gold = task.doc_to_choice(doc).index(gold)
    return int(gold)


def _gold_tokens(tokenizer, sample: dict, gold: int) -> int:
    """Tokens of the gold answer's continuation (for the per-token gold log-likelihood)."""
    _context, continuation = sample["arguments"][gold]
    return len(tokenizer(continuation, add_special_tokens=False).input_ids)


def _per_example(task, samples: list[dict], tokenizer=None) -> dict:
    """Per-example log-likelihoods and gold choice, ordered by doc_id (enough to recompute acc and acc_norm),
    and the gold continuation's token count."""
    samples = sorted(samples, key=lambda s: s["doc_id"])
    gold = [_gold(task, s["doc"]) for s in samples]
    return {
        "doc_id": [s["doc_id"] for s in samples],
        "gold": gold,
        "gold_tokens": [_gold_tokens(tokenizer, s, g) for s, g in zip(samples, gold)] if tokenizer else None,
        "loglik": [[float(r[0]) for r in s["filtered_resps"]] for s in samples],
        "acc": [float(s["acc"]) for s in samples],
        "acc_norm": [float(s["acc_norm"]) for s in samples] if "acc_norm" in samples[0] else None,
    }


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def run_task(
    model,
    tokenizer,
    task: str,
    *,
    data_dir=None,
    limit: int | None = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    seed: int = 0,
    max_length: int | None = None,
    specs: list[TaskSpec] | None = None,
) -> dict:
    """Evaluate ``model`` on ``task`` (one of ``tasks.TASKS``) and return metrics plus per-example scores.

    ``limit`` keeps the first ``limit`` documents of each lm-eval task (of each subject for MMLU). The returned
    ``value`` is the paper's column (acc_norm where present, else acc); MMLU's is the size-weighted mean over
    subjects, as lm-eval's ``mmlu`` group computes it, with per-category means alongside.
    """
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    datasets.disable_progress_bars()  # one bar per map() call floods the rule's log
    specs = specs if specs is not None else task_specs(task, data_dir, limit)
    lm = _lm(model, tokenizer, batch_size, torch.device(device), max_length)
    objs = [ConfigurableTask(config=dict(s.config)) for s in specs]
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=objs,
        task_manager=TaskManager(include_defaults=False),  # the default one indexes ~14k YAMLs (~25 s)
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=1000,  # acc/acc_norm stderr is closed-form; bootstrap only for other metrics
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    results, samples, n_samples = out["results"], out["samples"], out["n-samples"]
    per_task = {}
    for s, obj in zip(specs, objs):
        r = results[s.name]
        metrics = {
            k.split(",")[0]: _clean(v) for k, v in r.items() if "," in k and isinstance(v, (int, float))
        }
        per_task[s.name] = {
            "metrics": metrics,
            "n": int(n_samples[s.name]["effective"]),
            "n_total": s.n_total if s.n_total is not None else int(n_samples[s.name]["original"]),
            "per_example": _per_example(obj, samples[s.name], tokenizer),
        }
    result = {
        "task": task,
        "num_fewshot": num_fewshot,
        "limit": limit,
        "source": sorted({s.source for s in specs}),
        "exact_data": all(s.exact for s in specs),
        "lm_eval_version": version("lm_eval"),
    }
    if task != "mmlu":
        one = per_task[task]
        result.update(one)
        result["paper_metric"] = paper_metric(one["metrics"])
        result["value"] = one["metrics"][result["paper_metric"]]
        return result
    # lm-eval's mmlu group: accuracy weighted by subject size, overall and per category
    n = sum(t["n"] for t in per_task.values())
    result["n"] = n
    result["n_total"] = sum(t["n_total"] for t in per_task.values())
    result["paper_metric"] = "acc"
    result["value"] = sum(t["metrics"]["acc"] * t["n"] for t in per_task.values()) / n
    result["metrics"] = {"acc": result["value"]}
    categories: dict[str, list] = {}
    for s in specs:
        categories.setdefault(s.category, []).append(per_task[s.name])
    result["categories"] = {
        c: {"acc": sum(t["metrics"]["acc"] * t["n"] for t in ts) / sum(t["n"] for t in ts), "n": sum(t["n"] for t in ts)}
        for c, ts in sorted(categories.items())
    }
    result["subjects"] = {name: t for name, t in per_task.items()}
    return result
