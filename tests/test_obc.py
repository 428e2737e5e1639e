import torch

from fangprune.core.obs import (
    block_saliency,
    column_saliency,
    dampened_inverse,
    obs_compensate,
)
from fangprune.core.selection import lowest


def test_column_saliency_hand_computed():
    W = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    Hinv = torch.diag(torch.tensor([0.5, 2.0, 0.25], dtype=torch.float64))
    # ||W_:,j||^2 = [10, 4, 1]; divided by [0.5, 2, 0.25]
    assert torch.allclose(column_saliency(W, Hinv), torch.tensor([20.0, 2.0, 4.0], dtype=torch.float64))


def test_block_saliency_equals_column_saliency_for_single_columns():
    torch.manual_seed(0)
    W = torch.randn(5, 6)
    X = torch.randn(100, 6)
    Hinv = dampened_inverse(X.T @ X)
    blocks = [torch.tensor([j]) for j in range(6)]
    assert torch.allclose(block_saliency(W, Hinv, blocks), column_saliency(W, Hinv))


def test_dampening_hand_computed():
    H = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    # damp = 0.5 * mean(diag) = 1.5 -> diag [3.5, 5.5]
    assert torch.allclose(dampened_inverse(H, 0.5), torch.diag(torch.tensor([1 / 3.5, 1 / 5.5], dtype=torch.float64)))


def test_single_column_compensation_hand_computed():
    # H^-1 = [[2, 1], [1, 2]] (H = 1/3 [[2,-1],[-1,2]]); prune column 0 of W = [[1, 1]]:
    # W <- W - W_0 / Hinv_00 * Hinv_0,: = [1, 1] - 0.5 [2, 1] = [0, 0.5]
    Hinv = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    out = obs_compensate(torch.tensor([[1.0, 1.0]]), Hinv, torch.tensor([0]))
    assert torch.allclose(out, torch.tensor([[0.0, 0.5]]))


def test_compensation_lowers_reconstruction_error():
    torch.manual_seed(0)
    d_in, d_out, n = 32, 16, 512
    mix = torch.randn(d_in, d_in)
    X = torch.randn(n, d_in) @ mix  # correlated inputs, as real activations
    W = torch.randn(d_out, d_in)
    H = X.T @ X
    Hinv = dampened_inverse(H, 0.01)
    pruned = lowest(column_saliency(W, Hinv), 12)
    plain = W.clone()
    plain[:, pruned] = 0
    comp = obs_compensate(W, Hinv, pruned)
    assert torch.all(comp[:, pruned] == 0)
    err_plain = torch.linalg.norm(X @ W.T - X @ plain.T)
    err_comp = torch.linalg.norm(X @ W.T - X @ comp.T)
    assert err_comp < 0.9 * err_plain


def test_empty_prune_is_identity():
    W = torch.randn(3, 4)
    assert torch.equal(obs_compensate(W, torch.eye(4, dtype=torch.float64), torch.empty(0, dtype=torch.long)), W)


def test_lowest_picks_smallest_scores():
    assert lowest(torch.tensor([5.0, 1.0, 3.0, 0.5]), 2).tolist() == [1, 3]
    assert lowest(torch.tensor([1.0]), 0).numel() == 0
