"""torch 2:4 semi-structured kernels at load time (speed.semi_sparse_acc): the 2:4 check on CPU, the conversion on CUDA."""

import pytest
import torch
from conftest import random_windows, tiny_model

from fangprune.evaluate.semi_sparse import accelerate_2of4, is_2of4
from fangprune.methods.registry import resolve_method
from fangprune.prune.driver import prune_model


def test_is_2of4_counts_zeros_per_group_of_four():
    w = torch.tensor([[0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0]])
    assert is_2of4(w)
    w[0, 0] = 5.0  # first group now has one zero
    assert not is_2of4(w) and not is_2of4(torch.zeros(2, 6))


def test_conversion_refuses_a_cpu_model_with_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA-only"):
        accelerate_2of4(tiny_model())


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch's semi-structured sparse tensors are CUDA-only (to_sparse_semi_structured raises on CPU)")
def test_a_2_4_model_runs_on_the_sparse_kernels_with_the_same_logits():
    model = tiny_model(hidden_size=128, intermediate_size=256)
    prune_model(model, random_windows(4, 32), resolve_method("wanda", {"sparsity_type": "2:4"}), [0.5] * 3,
                torch.device("cpu"))
    model = model.half().cuda()
    ids = random_windows(2, 64, seed=5).cuda()
    with torch.no_grad():
        before = model(input_ids=ids).logits.float()
    report = accelerate_2of4(model)
    assert report["converted"], report["dense"]
    with torch.no_grad():
        after = model(input_ids=ids).logits.float()
    assert torch.allclose(after, before, atol=5e-2, rtol=1e-2)


def test_fp32_weights_are_refused_for_the_2_4_kernels():
    from fangprune.evaluate.semi_sparse import refusal

    w = torch.tensor([[1.0, 0.0, 2.0, 0.0] * 4] * 8)
    assert "fp32 is 1:2" in refusal(w)
    assert refusal(w.to(torch.bfloat16)) is None and refusal(w.half()) is None
    assert refusal(torch.ones(8, 16, dtype=torch.float16)) == "not 2:4"
