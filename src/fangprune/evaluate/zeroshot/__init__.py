"""Zero-shot evaluation (paper Tables 2, 4, 10) through lm-evaluation-harness 0.4, offline or from the hub."""

from fangprune.evaluate.zeroshot.harness import run_task
from fangprune.evaluate.zeroshot.tasks import (
    COMMONSENSE,
    DISPLAY,
    TASKS,
    paper_metric,
    task_specs,
)

__all__ = ["COMMONSENSE", "DISPLAY", "TASKS", "paper_metric", "run_task", "task_specs"]
