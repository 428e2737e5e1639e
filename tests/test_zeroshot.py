"""Zero-shot evaluation: the local lm-eval tasks score exactly what a hand-rendered prompt scores."""

import bz2
import csv
import json
import re

import pytest
import torch
from conftest import DATA_DIR, tiny_model

pytest.importorskip("lm_eval")

from fangprune.evaluate.zeroshot import local_data, run_task, task_specs  # noqa: E402
from fangprune.evaluate.zeroshot.tasks import paper_metric  # noqa: E402

N = 5
pytestmark = pytest.mark.skipif(not (DATA_DIR / "arc").exists(), reason="no local zero-shot data")


def _jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def _labels(path):
    return [line.strip() for line in open(path, encoding="utf-8") if line.strip()]


def _hellaswag_clean(text):
    # HellaSwag's WikiHow artefacts, as the lm-eval task description states: [title] -> ". ", drop [..] tags
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hand_prompts(task):
    """(contexts, continuations, gold) for the first N examples, rendered by hand from the original files.

    One context with several continuations, except WinoGrande: several contexts with one continuation.
    """
    d = DATA_DIR
    out = []
    if task in ("arc_easy", "arc_challenge"):
        sub = "ARC-Easy" if task == "arc_easy" else "ARC-Challenge"
        for r in _jsonl(d / "arc" / sub / f"{sub}-Test.jsonl")[:N]:
            q = r["question"]
            labels = [c["label"] for c in q["choices"]]
            out.append(([f"Question: {q['stem']}\nAnswer:"], [" " + c["text"] for c in q["choices"]],
                        labels.index(r["answerKey"])))
    elif task == "boolq":
        for r in _jsonl(d / "boolq" / "val.jsonl")[:N]:
            out.append(([f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"], [" no", " yes"],
                        int(str(r["label"]).lower() == "true")))
    elif task == "piqa":
        rows, labels = _jsonl(d / "piqa" / "valid.jsonl"), _labels(d / "piqa" / "valid-labels.lst")
        for r, y in list(zip(rows, labels))[:N]:
            out.append(([f"Question: {r['goal']}\nAnswer:"], [" " + r["sol1"], " " + r["sol2"]], int(y)))
    elif task == "winogrande":
        rows, labels = _jsonl(d / "winogrande" / "dev.jsonl"), _labels(d / "winogrande" / "dev-labels.lst")
        for r, y in list(zip(rows, labels))[:N]:
            i = r["sentence"].index("_")
            contexts = [r["sentence"][:i] + r["option1"], r["sentence"][:i] + r["option2"]]
            out.append((contexts, [" " + r["sentence"][i + 1 :].strip()], int(y) - 1))
    elif task == "openbookqa":
        with open(d / "openbookqa" / "Main" / "test.tsv", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:N]
        for r in rows:
            texts = [t.strip() for t in re.split(r"\([A-D]\)", r["Choices"])[1:]]
            out.append(([r["Question Stem"]], [" " + t for t in texts], "ABCD".index(r["Answer Key"].strip())))
    elif task == "hellaswag":
        lines = bz2.open(d / "hellaswag" / "hellaswag_val_full.txt.bz2", "rt", encoding="utf-8").read().split("\n")
        for i in range(N):
            head, label, *endings = lines[6 * i : 6 * i + 6]
            out.append(([_hellaswag_clean(head)], [" " + _hellaswag_clean(e) for e in endings], int(label)))
    elif task.startswith("mmlu_"):
        subject = task[len("mmlu_") :]
        with open(d / "mmlu" / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))[:N]
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        for q, a, b, c, dd, ans in rows:
            prompt = head + f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {dd}\nAnswer:"
            out.append(([prompt], [" A", " B", " C", " D"], "ABCD".index(ans.strip())))
    return out


@torch.no_grad()
def hand_loglik(model, tok, context, continuation):
    """log p(continuation | context), tokenised as lm-eval does: encode the whole string, split at the context."""
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuation = context[: -n_space], context[-n_space:] + continuation
    whole = tok(context + continuation).input_ids
    ctx = tok(context).input_ids
    cont = whole[len(ctx) :]
    ids = torch.tensor([(ctx + cont)[:-1]])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    pos = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    return float(sum(logp[p, t] for p, t in zip(pos, cont)))


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(vocab_size=len(tokenizer), max_position_embeddings=1024)


def _check(model, tok, name, result):
    prompts = hand_prompts(name)
    ex = result["per_example"]
    assert ex["doc_id"] == list(range(N))
    for i, (contexts, conts, gold) in enumerate(prompts):
        pairs = [(c, conts[0]) for c in contexts] if len(contexts) > 1 else [(contexts[0], k) for k in conts]
        ll = [hand_loglik(model, tok, c, k) for c, k in pairs]
        assert ex["gold"][i] == gold
        assert ex["loglik"][i] == pytest.approx(ll, abs=2e-3, rel=1e-4)
        gold_cont = pairs[gold][1]
        assert ex["gold_tokens"][i] == len(tok(gold_cont, add_special_tokens=False).input_ids) >= 1
        choice = max(range(len(ll)), key=ll.__getitem__)
        assert ex["acc"][i] == float(choice == gold)
        if ex["acc_norm"] is not None:  # lm-eval normalises by the choice's length in characters
            lens = [len(k) - 1 for _, k in pairs]  # without the " " target delimiter
            choice = max(range(len(ll)), key=lambda j: ll[j] / lens[j])
            assert ex["acc_norm"][i] == float(choice == gold)


@pytest.mark.parametrize(
    "task", ["boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
)
def test_local_task_matches_hand_computation(model, tokenizer, task):
    result = run_task(model, tokenizer, task, data_dir=DATA_DIR, limit=N, batch_size=4)
    assert result["n"] == N and result["n_total"] > N
    _check(model, tokenizer, task, result)
    metric = paper_metric(result["metrics"])
    assert result["value"] == pytest.approx(sum(result["per_example"][metric]) / N)
    assert result["exact_data"] == (task != "hellaswag")


def test_mmlu_subjects_match_hand_computation_and_weighting(model, tokenizer):
    specs = [s for s in task_specs("mmlu", DATA_DIR, limit=N) if s.name in ("mmlu_anatomy", "mmlu_virology", "mmlu_marketing")]
    assert {s.category for s in specs} == {"stem", "other"}
    result = run_task(model, tokenizer, "mmlu", data_dir=DATA_DIR, limit=N, batch_size=4, specs=specs)
    for name, sub in result["subjects"].items():
        _check(model, tokenizer, name, sub)
    accs = {n: sum(s["per_example"]["acc"]) / N for n, s in result["subjects"].items()}
    assert result["value"] == pytest.approx(sum(accs.values()) / 3)
    assert result["categories"]["stem"]["acc"] == pytest.approx(accs["mmlu_anatomy"])
    assert result["categories"]["other"]["n"] == 2 * N


def test_local_readers_match_release_sizes():
    sizes = {"arc_easy": ("test", 2376), "arc_challenge": ("test", 1172), "boolq": ("validation", 3270),
             "piqa": ("validation", 1838), "winogrande": ("validation", 1267), "openbookqa": ("test", 500),
             "hellaswag": ("validation", 10042)}
    for task, (split, n) in sizes.items():
        assert len(local_data.READERS[task](DATA_DIR)[split]) == n, task
    assert len(local_data.mmlu(DATA_DIR, "anatomy")["test"]) == 135


def test_builtin_prompts_are_kept(tmp_path):
    """Only the dataset source changes: every prompt/metric key equals the installed builtin task's."""
    from fangprune.evaluate.zeroshot.tasks import _BUILTIN_YAML, _load_builtin

    for task, rel in _BUILTIN_YAML.items():
        builtin = _load_builtin(rel)
        (spec,) = task_specs(task, DATA_DIR, limit=3)
        for key in ("doc_to_text", "doc_to_target", "doc_to_choice", "process_docs", "metric_list", "description",
                    "target_delimiter", "fewshot_delimiter", "output_type"):
            assert spec.config.get(key) == builtin.get(key), (task, key)
        assert "dataset_path" not in spec.config and callable(spec.config["custom_dataset"])
    (hub,) = task_specs("arc_easy", None)
    assert hub.config["dataset_path"] == "allenai/ai2_arc" and hub.source.startswith("hub")
