"""Recovery after pruning: the objective, the schedule, LoRA merging, data disjointness, resume after SIGKILL,
zero patterns kept, the report's numbers and the bad configs refused before any job."""

import copy
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, random_windows, tiny_model

from fangprune.config import ConfigError, recovered_methods, recovery_variants, validate_config
from fangprune.recovery.distill import BudgetError, TrainSpec, batch_order, distill, lr_factor, steps_for
from fangprune.recovery.losses import LossWeights, hidden_mse, kl_div
from fangprune.recovery.text import OverlapError, ngram_hashes, overlapping, recovery_windows


def test_kl_of_identical_models_is_zero_and_a_hand_computed_pair():
    logits = torch.randn(2, 5, 11)
    assert float(kl_div(logits, logits.clone())) == pytest.approx(0.0, abs=1e-6)
    # teacher p = (1/2, 1/2), student q = (3/4, 1/4): KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 0.143841
    student = torch.log(torch.tensor([[[0.75, 0.25]]]))
    teacher = torch.log(torch.tensor([[[0.5, 0.5]]]))
    assert float(kl_div(student, teacher)) == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2), abs=1e-6)
    # temperature T: KL of the softened distributions times T^2
    t = 2.0
    soft = float(kl_div(student, teacher, t))
    p, q = torch.softmax(teacher / t, -1), torch.softmax(student / t, -1)
    assert soft == pytest.approx(float((p * (p / q).log()).sum()) * t * t, abs=1e-6)


def test_hidden_term_is_zero_for_equal_states_and_scale_free():
    h = [torch.randn(2, 3, 4) for _ in range(3)]
    assert float(hidden_mse(h, [x.clone() for x in h])) == 0.0
    doubled = [2 * x for x in h]
    assert float(hidden_mse([torch.zeros_like(x) for x in h], h)) == pytest.approx(1.0, abs=1e-6)
    assert float(hidden_mse([torch.zeros_like(x) for x in h], doubled)) == pytest.approx(1.0, abs=1e-6)


def test_schedule_warmup_then_cosine_to_the_floor():
    steps, warm = 10, 2
    f = [lr_factor(s, steps, warm, 0.1) for s in range(steps)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[1:], f[2:]))
    assert steps_for(4096, 4, 256) == 4
    with pytest.raises(BudgetError, match="less than one batch"):
        steps_for(1000, 4, 256)


def test_batch_order_is_seeded_and_covers_every_window_per_epoch():
    a, b = batch_order(10, 5, 4, seed=3), batch_order(10, 5, 4, seed=3)
    assert torch.equal(a, b) and a.shape == (5, 4)
    assert sorted(a.flatten()[:10].tolist()) == list(range(10))
    assert not torch.equal(a, batch_order(10, 5, 4, seed=4))


def _pair(seed=0):
    teacher = tiny_model(seed=seed)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.model.layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student, teacher


def _heldout_kl(student, teacher, windows):
    with torch.no_grad():
        return float(kl_div(student(windows).logits, teacher(windows).logits))


def test_one_step_lowers_the_held_out_loss():
    torch.manual_seed(0)
    student, teacher = _pair()
    train, held = random_windows(8, 16, seed=1), random_windows(4, 16, seed=2)
    before = _heldout_kl(student, teacher, held)
    spec = TrainSpec(tokens=8 * 16, batch_size=8, seqlen=16, lr=1e-3, warmup_frac=0.0)
    curve = distill(student, teacher, train, held, spec, torch.device("cpu"))
    after = _heldout_kl(student, teacher, held)
    assert after < before
    assert [r["step"] for r in curve] == [0, 1] and curve[1]["tokens"] == 128


def test_a_zeroed_checkpoint_keeps_its_zeros():
    student, teacher = _pair()
    w = student.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w[:, ::2] = 0
    spec = TrainSpec(tokens=4 * 16 * 3, batch_size=4, seqlen=16, lr=1e-2, warmup_frac=0.0, weight_decay=0.1)
    distill(student, teacher, random_windows(8, 16), random_windows(2, 16, seed=5), spec, torch.device("cpu"))
    assert bool((w[:, ::2] == 0).all()) and bool((w[:, 1::2] != 0).all())


def test_lora_merge_equals_the_adapter_model_and_leaves_plain_linears():
    from fangprune.recovery.lora import LoraTargetError, add_adapters, merge

    model = tiny_model()
    peft_model = add_adapters(model, rank=4, alpha=8, targets=["q_proj", "down_proj"])
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = random_windows(2, 12)
    with torch.no_grad():
        adapter = peft_model(ids).logits
        merged_model = merge(peft_model)
        merged = merged_model(ids).logits
    torch.testing.assert_close(merged, adapter, rtol=1e-5, atol=1e-5)
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    assert type(merged_model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    with pytest.raises(LoraTargetError, match="lm_head"):
        add_adapters(tiny_model(), 4, 8, ["lm_head"])


def test_windows_that_share_a_run_with_evaluation_text_are_dropped():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30000, (64 * 40,), generator=g)
    evaluation = torch.randint(0, 30000, (5000,), generator=g)
    evaluation[100:200] = ids[64 * 7 + 10 : 64 * 7 + 110]  # windows 7 and 8 hold copied text
    w = recovery_windows(ids, 64, 4, seed=0, source="t", evaluation={"wikitext2": evaluation})
    assert w.dropped == {"wikitext2": 2} and w.train.shape[0] + w.heldout.shape[0] == 38
    ref = np.unique(ngram_hashes(evaluation))
    for window in torch.cat([w.train, w.heldout]):
        assert not np.isin(ngram_hashes(window), ref).any()
    assert overlapping(ids, 64, ref).nonzero().flatten().tolist() == [7, 8]
    with pytest.raises(OverlapError, match="is that evaluation text"):
        recovery_windows(ids, 64, 4, seed=0, source="t", evaluation={"wikitext2": ids[: 64 * 30]})


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from conftest import random_windows, tiny_model
    from test_recovery import _pair
    from fangprune.recovery.distill import TrainSpec, distill
    student, teacher = _pair()
    spec = TrainSpec(tokens=6 * 2 * 16, batch_size=2, seqlen=16, lr=1e-3, save_every=2, eval_every=2)
    kill_at, ran = int(sys.argv[2]), []
    def on_step(step):
        ran.append(step)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    curve = distill(student, teacher, random_windows(5, 16), random_windows(2, 16, seed=9), spec,
                    torch.device("cpu"), sys.argv[1], on_step)
    torch.save({{"weights": student.state_dict(), "curve": curve, "ran": ran}}, sys.argv[3])
""")


def test_a_killed_run_resumes_and_ends_with_the_uninterrupted_weights(tmp_path):
    from conftest import REPO

    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(REPO / "tests")))
    state = tmp_path / "state.pt"

    def run(kill_at, out):
        return subprocess.run([sys.executable, str(script), str(state), str(kill_at), str(out)], cwd=tmp_path,
                              capture_output=True, text=True)

    killed = run(5, tmp_path / "never.pt")
    assert killed.returncode == -9 and state.exists()  # SIGKILL after step 5; the state of step 4 is on disk
    assert run(0, tmp_path / "resumed.pt").returncode == 0 and not state.exists()
    assert run(0, tmp_path / "straight.pt").returncode == 0
    resumed, straight = torch.load(tmp_path / "resumed.pt"), torch.load(tmp_path / "straight.pt")
    for name, value in straight["weights"].items():
        assert torch.equal(resumed["weights"][name], value), name
    assert resumed["curve"] == straight["curve"]
    # on_step sees only the steps a process runs (recovery.run's tokens_per_s_last_run counts them)
    assert resumed["ran"] == [5, 6] and straight["ran"] == [1, 2, 3, 4, 5, 6]


def _config(tmp_path, **recovery):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text("{}")
    return {"models": {"m": {"source": str(tmp_path / "m")}}, "sparsities": [0.2], "data_dir": str(DATA_DIR),
            "methods": {"obc": {}, "o-fang": {}}, "zeroshot": {"tasks": []},
            "recovery": {"methods": ["o-fang"], **recovery}}


def test_recovered_methods_and_variants(tmp_path):
    cfg = validate_config(_config(tmp_path, variants={"kd": {}, "kd4x": {"tokens": 4 * 131072, "lora": {}}}))
    assert recovered_methods(cfg) == {"o-fang+kd": ("o-fang", "kd"), "o-fang+kd4x": ("o-fang", "kd4x")}
    v = recovery_variants(cfg)
    assert v["kd"]["tokens"] == 131072 and v["kd"]["lora"] is None and v["kd"]["loss"]["kl"] == 1.0
    assert v["kd4x"]["tokens"] == 524288 and v["kd4x"]["lora"]["rank"] == 8


@pytest.mark.parametrize(
    "recovery, key, message",
    [
        ({"tokens": 100}, "recovery.tokens", "less than one batch"),
        ({"variants": {"tiny": {"tokens": 0}}}, "recovery.variants.tiny.tokens", ""),
        ({"lr": -1e-4}, "recovery.lr", ""),
        ({"variants": {"kd": {"lr": 0}}}, "recovery.variants.kd.lr", ""),
        ({"lora": {"targets": ["lm_head"]}}, "recovery.lora.targets", "match no projection"),
        ({"methods": ["flap"]}, "recovery.methods", "no method named 'flap'"),
        ({"teacher": "big"}, "recovery.teacher", "no model named 'big'"),
        ({"data": "wikitext2-test"}, "recovery.data", ""),
        ({"seqlen": 4096}, "recovery.seqlen", "longer than the context"),
    ],
)
def test_bad_recovery_config_names_the_key(tmp_path, recovery, key, message):
    cfg = _config(tmp_path, **recovery)
    (tmp_path / "m" / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 2048}')
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    assert f"'{key}" in str(exc.value) and message in str(exc.value)


@pytest.mark.skipif(not (DATA_DIR / "wikitext-2-raw" / "wiki.test.raw").exists(), reason="needs the data folder")
def test_wikitext2_test_text_is_refused_as_recovery_data(tmp_path):
    copy_of_test = tmp_path / "mytext.txt"
    copy_of_test.write_text((DATA_DIR / "wikitext-2-raw" / "wiki.test.raw").read_text())
    with pytest.raises(ConfigError, match="'recovery.data'.*contains the wikitext2 evaluation text"):
        validate_config(_config(tmp_path, data=f"text:{copy_of_test}"))
    train = tmp_path / "train.txt"
    train.write_text((DATA_DIR / "wikitext-2-tokens" / "wiki.valid.tokens").read_text())
    validate_config(_config(tmp_path, data=f"text:{train}"))  # another split is accepted


def test_a_method_name_with_the_recovery_separator_is_refused(tmp_path):
    cfg = _config(tmp_path)
    cfg["methods"]["obc+kd"] = {"algorithm": "obc"}
    with pytest.raises(ConfigError, match="config key 'methods': 'obc\\+kd' does not match"):
        validate_config(cfg)


def _samples(values):
    from fangprune.report import stats

    return {k: stats.sample("ppl", v) for k, v in values.items()}


def test_recovery_table_gap_closed_and_verdicts():
    from fangprune.report.recovery import comparison_frame, recovery_frame, verdict

    m = "ppl_wikitext2"
    dense, before, after = [1.0, 1.2, 1.1, 0.9], [2.0, 2.2, 2.1, 1.9], [1.5, 1.7, 1.6, 1.4]
    samples = _samples({("x", "dense", 0.0, m): dense, ("x", "a", 0.4, m): before, ("x", "a+kd", 0.4, m): after,
                        ("x", "b", 0.4, m): [v + 0.1 for v in before], ("x", "b+kd", 0.4, m): after})
    frame = recovery_frame(samples, n_boot=200)
    row = frame[(frame.method == "a") & (frame.variant == "kd")].iloc[0]
    # windows' mean NLL 2.05 -> 1.55 with dense 1.05: ppl e^2.05 -> e^1.55, gap closed (e^2.05 - e^1.55) / (e^2.05 - e^1.05)
    expect = (math.exp(2.05) - math.exp(1.55)) / (math.exp(2.05) - math.exp(1.05))
    assert row["gap_closed"] == pytest.approx(100 * expect, abs=0.05)
    assert row["before"] == pytest.approx(math.exp(2.05)) and row["after"] == pytest.approx(math.exp(1.55))
    comp = comparison_frame(samples, {"b": "a"}, n_boot=200)
    assert comp.iloc[0]["verdict"] == "no longer resolved after recovery"  # b - a: +0.1 on every window, then 0
    d = lambda lo, hi: {"delta": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}  # noqa: E731
    assert verdict(d(1, 3), d(1.5, 2.5)) == "persists"
    assert verdict(d(5, 7), d(1, 2)) == "shrinks"
    assert verdict(d(1, 2), d(-3, -1)) == "reverses"
    assert verdict(d(-1, 1), d(-2, 2)) == "unresolved before and after"


def test_heldout_nll_is_the_mean_token_nll_for_plain_and_lora_students():
    from fangprune.recovery.distill import heldout_nll
    from fangprune.recovery.lora import add_adapters

    model, windows = tiny_model(), random_windows(3, 16, seed=4)

    def direct(m):
        with torch.no_grad():
            logits = m(windows).logits[:, :-1].double()
        return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()))

    assert heldout_nll(model, windows, torch.device("cpu"), 2, amp=False) == pytest.approx(direct(model), rel=1e-6)
    lora = add_adapters(model, rank=4, alpha=8, targets=["q_proj", "down_proj"])
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 5.0)  # adapters that change the output, so scoring without them would differ
    got = heldout_nll(lora, windows, torch.device("cpu"), 2, amp=False)
    assert got == pytest.approx(direct(lora), rel=1e-6) and got != pytest.approx(direct(tiny_model()), rel=1e-4)
