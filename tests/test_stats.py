"""Standard errors, paired bootstrap intervals and the per-example samples behind the table cells."""

import math

import numpy as np
import pytest

from fangprune.report import stats
from fangprune.report.comparisons import (
    delta_rows,
    evaluation_samples,
    gold_loglik_rows,
    resolve_references,
)


def test_stderr_of_an_accuracy_and_of_a_perplexity():
    acc = stats.sample("mean", [1, 0, 1, 0])
    assert stats.stderr(acc) == pytest.approx(math.sqrt(4 * 0.25 / 3) / 2)  # ddof 1, as lm-eval
    ppl = stats.sample("ppl", [2.0, 2.2])
    assert ppl.point() == pytest.approx(math.exp(2.1))
    assert stats.stderr(ppl) == pytest.approx(math.exp(2.1) * np.std([2.0, 2.2], ddof=1) / math.sqrt(2))


def test_paired_bootstrap_hand_made_cases():
    b = stats.sample("mean", [0.2, 0.5, 0.9, 0.4])
    shifted = stats.sample("mean", [0.3, 0.6, 1.0, 0.5])
    d = stats.paired_bootstrap(shifted, b)
    # every resample moves both means by the same examples: the difference is exactly 0.1 in every draw
    assert d["delta"] == pytest.approx(0.1) and d["ci_low"] == pytest.approx(0.1) and d["ci_high"] == pytest.approx(0.1)
    assert d["resolved"] and d["n"] == 4
    same = stats.paired_bootstrap(b, b)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0 and not same["resolved"]
    # per-example differences +1 and -1: resampled mean difference is -1, 0, +1 with probability 1/4, 1/2, 1/4,
    # so the 2.5 % and 97.5 % quantiles are -1 and +1
    swap = stats.paired_bootstrap(stats.sample("mean", [1, 0]), stats.sample("mean", [0, 1]), n_boot=4000)
    assert swap["delta"] == 0 and swap["ci_low"] == -1 and swap["ci_high"] == 1 and not swap["resolved"]


def test_paired_bootstrap_needs_the_same_examples():
    with pytest.raises(ValueError, match="same examples"):
        stats.paired_bootstrap(stats.sample("mean", [1, 0], ids=[1, 2]), stats.sample("mean", [1, 0], ids=[1, 3]))


def test_task_mean_resamples_each_task_and_averages():
    a = stats.task_mean([stats.sample("mean", [1, 1]), stats.sample("mean", [0, 0, 0, 1])])
    assert a.point() == pytest.approx((1 + 0.25) / 2) and a.n == 6
    d = stats.paired_bootstrap(a, a)
    assert d["delta"] == 0 and d["ci_low"] == d["ci_high"] == 0


def _zs(method, task, acc, loglik, gold, tokens=None):
    per = {"doc_id": list(range(len(acc))), "gold": gold, "loglik": loglik, "acc": acc, "acc_norm": None}
    if tokens:
        per["gold_tokens"] = tokens
    return {"model": "m", "method": method, "sparsity": 0.3, "task": task, "paper_metric": "acc", "per_example": per}


def test_samples_gold_loglik_and_deltas_from_evaluation_files():
    ppl = [{"model": "m", "method": m, "sparsity": 0.3, "dataset": "wikitext2", "window_nll": nll}
           for m, nll in (("obc", [3.0, 3.2]), ("o-fang", [2.9, 3.0]))]
    zs = [
        _zs("obc", "boolq", [1.0, 0.0], [[-1.0, -2.0], [-0.5, -3.0]], [0, 1], [2, 3]),
        _zs("o-fang", "boolq", [1.0, 1.0], [[-1.0, -2.0], [-3.0, -0.5]], [0, 1], [2, 3]),
    ]
    samples = evaluation_samples(ppl, zs)
    assert samples[("m", "obc", 0.3, "ppl_wikitext2")].point() == pytest.approx(math.exp(3.1))
    gold = {r["method"] + r["metric"]: r["value"] for r in gold_loglik_rows(samples)}
    assert gold["obcboolq/gold_loglik"] == pytest.approx((-1.0 - 3.0) / 2)
    assert gold["obcboolq/gold_loglik_per_token"] == pytest.approx((-1.0 / 2 - 3.0 / 3) / 2)
    assert samples[("m", "o-fang", 0.3, "zeroshot_avg")].point() == 1.0  # boolq is the only task present
    refs = resolve_references(["obc", "o-fang"], None)
    assert refs == {"o-fang": "obc"}
    deltas = {r["metric"]: r for r in delta_rows(samples, refs, n_boot=500)}
    assert deltas["delta_ppl_wikitext2"]["value"] == pytest.approx(math.exp(2.95) - math.exp(3.1))
    assert deltas["delta_boolq"]["value"] == pytest.approx(0.5) and deltas["delta_boolq"]["reference"] == "obc"
    assert deltas["delta_boolq/gold_loglik"]["value"] == pytest.approx((-1.0 - 0.5) / 2 - (-2.0))


def test_compare_ppl_tool_pairs_windows_of_two_checkpoints(tmp_path):
    """tools/compare_ppl.py on a run directory holding two perplexity files: the difference of exp(mean NLL)
    and its paired interval (identical files: 0, unresolved)."""
    import json
    import math
    import subprocess
    import sys

    from conftest import REPO

    base = tmp_path / "results" / "eval" / "ppl" / "wikitext2" / "m"
    (base / "a").mkdir(parents=True)
    nll_a, nll_b = [3.0, 3.2, 3.1, 2.9], [3.5, 3.6, 3.4, 3.7]
    (base / "a" / "sp0.40.json").write_text(json.dumps({"ppl": math.exp(3.05), "window_nll": nll_a}))
    (base / "dense.json").write_text(json.dumps({"ppl": math.exp(3.55), "window_nll": nll_b}))
    out = subprocess.run([sys.executable, str(REPO / "tools" / "compare_ppl.py"), "--run-dir", str(tmp_path),
                          "--model", "m", "--sparsity", "0.40", "a:dense", "a:a", "--datasets", "wikitext2"],
                         capture_output=True, text=True, check=True).stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()[2:]]
    assert float(rows[0][5]) == pytest.approx(math.exp(3.05) - math.exp(3.55), abs=0.01)
    assert rows[0][8] == "True" and float(rows[1][5]) == 0 and rows[1][8] == "False"
