"""Half precision on the CPU: every registered method prunes a bf16 and an fp16 copy of a tiny model to finite
weights close to its fp32 result, and the Taylor scores keep their ranking (fp16 with loss scaling)."""

import copy

import pytest
import torch
from conftest import random_windows, tiny_model
from scipy.stats import spearmanr
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from fangprune.fang.scores import taylor_scores
from fangprune.methods.registry import get_method, methods, resolve_method
from fangprune.modeling.models import block_params
from fangprune.prune.driver import prune_model

CPU = torch.device("cpu")
HALF = (torch.bfloat16, torch.float16)


@pytest.fixture(scope="module")
def setup():
    from test_pruning import artifacts

    model = tiny_model()
    windows = random_windows(4, 32)
    clusters, groups, scores, _ = artifacts(model, windows)
    return model, windows, clusters, groups, scores


LINALG = {"cholesky", "cholesky_ex", "cholesky_inverse", "cholesky_solve", "inv", "inv_ex", "inverse", "pinv",
          "pinverse", "svd", "svdvals", "solve", "solve_ex", "solve_triangular", "triangular_solve", "eig", "eigh",
          "eigvalsh", "qr", "lstsq", "det", "slogdet", "lu", "lu_factor", "lu_solve", "matrix_rank"}


class NoHalfLinalg(TorchFunctionMode):
    """Factorisations and solves on a half-precision tensor fail on GPUs or lose the OBS algebra's accuracy: the
    methods must cast to fp32 / fp64 first."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "").removeprefix("linalg_")
        if name in LINALG and any(
                isinstance(t, torch.Tensor) and t.dtype in HALF for t in tree_flatten((args, kwargs or {}))[0]):
            raise AssertionError(f"{name} called on a half-precision tensor")
        return func(*args, **(kwargs or {}))


def test_the_linalg_guard_sees_torch_linalg():
    with NoHalfLinalg(), pytest.raises(AssertionError, match="cholesky_ex called on a half"):
        torch.linalg.cholesky_ex(torch.eye(3, dtype=torch.bfloat16))
    with NoHalfLinalg():
        torch.linalg.cholesky_ex(torch.eye(3))


def _pruned(model, windows, name, clusters, groups, dtype):
    m = copy.deepcopy(model).to(dtype)
    params = resolve_method(name, {})
    grouped = get_method(params["algorithm"]).uses_groups
    with NoHalfLinalg():
        prune_model(m, windows, params, [0.4] * 3, CPU, clusters=clusters if grouped else None,
                    groups=groups if grouped else None)
    return m


@pytest.mark.parametrize("name", sorted(methods()))
def test_every_method_in_half_precision_is_finite_and_close_to_fp32(setup, name):
    model, windows, clusters, groups, _ = setup
    ids = random_windows(2, 16, seed=5)
    ref = _pruned(model, windows, name, clusters, groups, torch.float32)
    with torch.no_grad():
        want = ref(ids).logits
    for dtype in HALF:
        m = _pruned(model, windows, name, clusters, groups, dtype)
        assert all(p.dtype == dtype for p in m.parameters())
        assert block_params(m) == pytest.approx(block_params(ref), rel=0.02), dtype
        with torch.no_grad():
            got = m.float()(ids).logits
        assert torch.isfinite(got).all(), dtype
        rel = float((got - want).norm() / want.norm())
        assert rel < 0.25, (dtype, rel)


@pytest.mark.parametrize("dtype", HALF)
def test_taylor_scores_in_half_precision_keep_the_ranking(setup, dtype):
    model, windows, clusters, _, fp32 = setup
    half = copy.deepcopy(model).to(dtype)
    scores, counts = taylor_scores(half, windows, clusters, CPU)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    for layer in range(scores.shape[0]):
        for k in range(scores.shape[1]):
            if counts[layer, k] == 0:
                continue
            assert (scores[layer, k] > 0).float().mean() > 0.9  # no underflow to zero
            rho = spearmanr(scores[layer, k].numpy(), fp32[layer, k].numpy()).statistic
            assert rho > 0.9, (layer, k, rho)


def test_taylor_sensitivity_sums_gradients_in_fp32():
    """I_l = sum |w * sum_windows dL/dw| per block: equal to a direct fp32 computation, and a bf16 model's figures
    close to it (its gradients are summed in fp32, not in bf16)."""
    from fangprune.fang.layer_importance import taylor_sensitivity
    from fangprune.modeling.lm_loss import causal_lm_loss
    from fangprune.modeling.models import decoder_layers, roles

    model, windows = tiny_model(), random_windows(4, 32)
    ref = copy.deepcopy(model)
    weights = [list(roles(layer).projections().values()) for layer in decoder_layers(ref)]
    grads = torch.autograd.grad(sum(causal_lm_loss(ref, windows[i : i + 1]) for i in range(4)),
                                [lin.weight for ws in weights for lin in ws])
    it = iter(grads)
    want = [sum(float((lin.weight.double() * next(it).double()).abs().sum()) for lin in ws) for ws in weights]
    got = taylor_sensitivity(copy.deepcopy(model), windows, CPU)
    assert got == pytest.approx(want, rel=1e-4)
    half = taylor_sensitivity(copy.deepcopy(model).to(torch.bfloat16), windows, CPU)
    assert half == pytest.approx(want, rel=0.05)
