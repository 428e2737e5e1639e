"""GGUF export: llama.cpp (through llama-cpp-python, the real engine) computes the same logits as PyTorch for
heterogeneously pruned models; uniform ones become llama.cpp's plain llama architecture; what llama.cpp cannot
represent is refused before a file is written."""

import os
import re

import numpy as np
import pytest
import torch
from conftest import random_windows, tiny_model

from fangprune.export.gguf_export import (
    GGUFExportError,
    export_gguf,
    tokenizer_gguf_for,
)
from fangprune.export.gguf_layout import rope_pairs
from fangprune.methods import resolve_method
from fangprune.modeling.checkpoint import save_pruned
from fangprune.modeling.tiny import SMOLLM2_GGUF
from fangprune.prune.driver import prune_model

VOCAB = 49152  # the default model's tokenizer, copied from its GGUF


def _pruned(arch, method, sparsities, tmp_path, **params):
    model = tiny_model(arch, vocab_size=VOCAB, num_attention_heads=4, num_key_value_heads=2)
    prune_model(model, random_windows(4, 32, vocab_size=VOCAB), resolve_method(method, params), sparsities,
                torch.device("cpu"))
    save_pruned(model, None, tmp_path / "ckpt", {"method": method})
    return model


def _llama_cpp_logits(path, ids):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=64, logits_all=True, n_threads=2, verbose=False)
    try:
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()


def _relative_error(model, path):
    ids = random_windows(1, 20, vocab_size=VOCAB, seed=3)[0].tolist()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    return float(np.abs(_llama_cpp_logits(path, ids) - ref).max() / np.abs(ref).max())


def test_rope_rows_go_from_halves_to_pairs():
    w = np.arange(8)[:, None] * np.ones((1, 3))  # one head of dim 8: rows 0..7
    assert rope_pairs(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    two = np.arange(8)  # two heads of dim 4, a bias
    assert rope_pairs(two, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize(
    "arch, method, tensor_type, tol",
    [
        ("llama", "obc", "f32", 1e-3),
        ("llama", "flap", "f32", 1e-3),  # o_proj / down_proj biases from bias compensation
        ("qwen2", "flap", "f32", 1e-3),  # q/k/v biases, reordered with their rows
        ("llama", "obc", "f16", 3e-3),
    ],
)
def test_heterogeneous_prune_runs_in_llama_cpp_with_the_same_logits(tmp_path, arch, method, tensor_type, tol):
    model = _pruned(arch, method, [0.2, 0.5, 0.7], tmp_path)
    out = tmp_path / f"m.{tensor_type}.gguf"
    rep = export_gguf(tmp_path / "ckpt", out, tensor_type, tokenizer_gguf_for(SMOLLM2_GGUF))
    assert rep["architecture"] == "deci"
    assert len(set(rep["head_count"])) > 1 and len(set(rep["feed_forward_length"])) == 3
    assert _relative_error(model, out) < tol


def test_uniform_prune_is_a_plain_llama_gguf_and_quantizes(tmp_path):
    model = _pruned("llama", "obc", [0.5] * 3, tmp_path, allocation="uniform")
    rep = export_gguf(tmp_path / "ckpt", tmp_path / "m.gguf", "f32", tokenizer_gguf_for(SMOLLM2_GGUF))
    assert rep["architecture"] == "llama" and len(set(rep["feed_forward_length"])) == 1
    assert _relative_error(model, tmp_path / "m.gguf") < 1e-3
    import gguf

    q = export_gguf(tmp_path / "ckpt", tmp_path / "q.gguf", "q8_0", tokenizer_gguf_for(SMOLLM2_GGUF))
    width = rep["feed_forward_length"][0]
    downs = [f for f in q["f16_fallbacks"] if "ffn_down" in f]
    assert bool(downs) == bool(width % 32)  # down_proj rows are MLP-width long
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert _relative_error(model, tmp_path / "q.gguf") < 0.05  # 8-bit weights
    assert q["bytes"] < 0.5 * rep["bytes"]


def test_a_tokenizer_built_from_tokenizer_json_tokenizes_like_hf(tmp_path):
    from llama_cpp import Llama

    from fangprune.modeling.models import load_tokenizer

    tok = load_tokenizer(SMOLLM2_GGUF)
    model = tiny_model("llama", vocab_size=VOCAB)
    save_pruned(model, tok, tmp_path / "ckpt", {"method": "dense"}, structured=False)
    rep = export_gguf(tmp_path / "ckpt", tmp_path / "m.gguf", "f16")
    assert any("pre-tokenizer" in n for n in rep["notes"])
    text = "The quick brown fox jumps over the lazy dog, twice."
    llm = Llama(model_path=str(tmp_path / "m.gguf"), n_ctx=64, n_threads=1, verbose=False, vocab_only=True)
    try:
        assert llm.tokenize(text.encode(), add_bos=False) == tok(text, add_special_tokens=False).input_ids
    finally:
        llm.close()


@pytest.mark.parametrize("arch, match", [("qwen3", "q_norm"), ("gemma3_text", "Gemma 3")])
def test_families_llama_cpp_cannot_represent_are_refused_before_writing(tmp_path, arch, match):
    from transformers import AutoModelForCausalLM, Qwen3Config

    from fangprune.modeling.tiny import tiny_config

    if arch == "qwen3":
        cfg = Qwen3Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    else:
        cfg = tiny_config(arch, vocab_size=128)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(GGUFExportError, match=match):
        export_gguf(tmp_path / "ckpt", tmp_path / "m.gguf", "f16", tokenizer_gguf_for(SMOLLM2_GGUF))
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".m.gguf*"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_the_export_gets_the_umask_permissions(tmp_path, umask, mode):
    _pruned("llama", "mag-sp", [0.3] * 3, tmp_path)
    old = os.umask(umask)
    try:
        export_gguf(tmp_path / "ckpt", tmp_path / "m.gguf", "q4_0", tokenizer_gguf_for(SMOLLM2_GGUF))
    finally:
        os.umask(old)
    assert (tmp_path / "m.gguf").stat().st_mode & 0o777 == mode


def test_llama_cpp_perplexity_pairs_with_the_workflows_on_the_same_windows(tmp_path):
    from fangprune.evaluate.engine_ppl import llamacpp_perplexity
    from fangprune.evaluate.perplexity import perplexity

    model = _pruned("llama", "obc", [0.2, 0.5, 0.7], tmp_path)
    export_gguf(tmp_path / "ckpt", tmp_path / "m.gguf", "f32", tokenizer_gguf_for(SMOLLM2_GGUF))
    ids = random_windows(1, 3 * 32, vocab_size=VOCAB, seed=5)[0]
    ours = perplexity(model, ids, 32, torch.device("cpu"))
    engine = llamacpp_perplexity(str(tmp_path / "m.gguf"), ids.reshape(3, 32), threads=1)
    assert engine["windows"] == ours["windows"] == 3
    assert np.allclose(engine["window_nll"], ours["window_nll"], rtol=1e-4)
    assert abs(engine["ppl"] / ours["ppl"] - 1) < 1e-3


def test_llama_cpp_speed_reports_both_files_and_their_ratio(tmp_path):
    from fangprune.evaluate.engine_speed import llamacpp_speed

    _pruned("llama", "obc", [0.5] * 3, tmp_path, allocation="uniform")
    export_gguf(tmp_path / "ckpt", tmp_path / "p.gguf", "f32", tokenizer_gguf_for(SMOLLM2_GGUF))
    dense = tiny_model("llama", vocab_size=VOCAB, num_attention_heads=4, num_key_value_heads=2)
    save_pruned(dense, None, tmp_path / "dense", {"method": "dense"}, structured=False)
    export_gguf(tmp_path / "dense", tmp_path / "d.gguf", "f32", tokenizer_gguf_for(SMOLLM2_GGUF))
    res = llamacpp_speed(str(tmp_path / "d.gguf"), str(tmp_path / "p.gguf"), prompt_len=32, gen_tokens=4,
                         repeats=3, threads=1)
    for key in ("dense_prompt_tps", "pruned_prompt_tps", "dense_gen_tps", "pruned_gen_tps", "prompt_speedup"):
        s = res[key]
        assert s["n"] == 3 and 0 < s["min"] <= s["median"] <= s["max"]
    # the llama.cpp build is named by ggml's version and commit, not only by the binding's version
    assert re.fullmatch(r"llama\.cpp ggml [\d.]+ \(commit \w+(-dirty)?\) via llama-cpp-python [\d.]+", res["engine"])
