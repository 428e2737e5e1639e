import pytest
import torch

from fangprune.core.obs import (
    _mirror_lower,
    block_saliency,
    column_saliency,
    dampen,
    dampened_inverse,
    invert_spd_in_place,
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


@pytest.mark.parametrize("n, block", [(2100, 1024), (300, 64), (129, 128), (7, 3), (5, 1024)])
def test_in_place_inverse_is_the_inverse_in_the_same_memory(n, block):
    """Full blocks, a partial last block, one block; only the lower triangle is read (garbage above)."""
    torch.manual_seed(0)
    R = torch.randn(n, 50, dtype=torch.float64)
    A = R @ R.T + torch.diag(torch.rand(n, dtype=torch.float64) + 0.5)
    ref = torch.linalg.inv(A)
    A[torch.triu(torch.ones(n, n, dtype=torch.bool), 1)] = 7.0
    ptr = A.data_ptr()
    assert invert_spd_in_place(A, block)
    assert A.data_ptr() == ptr
    assert torch.equal(A, A.T)  # exactly symmetric: the upper triangle is the lower one copied
    assert torch.allclose(A, ref, rtol=1e-9, atol=1e-12)


def test_in_place_inverse_reports_an_indefinite_matrix():
    A = torch.eye(300, dtype=torch.float64)
    A[250, 250] = -1.0  # fails in the third block
    assert not invert_spd_in_place(A, 100)


def test_mirror_lower_hand_computed():
    A = torch.tensor([[1.0, 9.0, 9.0], [2.0, 4.0, 9.0], [3.0, 5.0, 6.0]])
    _mirror_lower(A, block=2)
    assert torch.equal(A, torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]]))


def test_dampened_inverse_matches_torch_and_falls_back_to_pinv():
    torch.manual_seed(1)
    X = torch.randn(400, 70)
    X[:, 5] = 0.0  # a dead input: H_55 = 0 -> 1
    H = X.T @ X
    assert torch.allclose(dampened_inverse(H, 0.01), torch.linalg.inv(dampen(H, 0.01)), rtol=1e-9, atol=1e-12)
    # indefinite even after dampening: Cholesky fails, the pseudo-inverse is returned
    M = torch.diag(torch.tensor([1.0, -5.0, 2.0]))
    assert torch.allclose(dampened_inverse(M, 0.01), torch.linalg.pinv(dampen(M, 0.01), hermitian=True))


def test_blockwise_compensation_equals_the_closed_form():
    """Eq. 10 applied a few columns at a time equals W - W_M (Hinv_MM)^-1 Hinv_M,: in one product."""
    torch.manual_seed(2)
    X = torch.randn(300, 40) @ torch.randn(40, 40)
    W = torch.randn(12, 40)
    Hinv = dampened_inverse(X.T @ X, 0.01)
    pruned = torch.tensor([1, 7, 8, 20, 33, 39])
    W64 = W.double()
    closed = W64 - W64[:, pruned] @ torch.linalg.inv(Hinv[pruned][:, pruned]) @ Hinv[pruned, :]
    closed[:, pruned] = 0.0
    for block in (3, 16, 4096):
        assert torch.allclose(obs_compensate(W64, Hinv, pruned, block=block), closed, rtol=1e-9, atol=1e-10)
    assert not torch.equal(obs_compensate(W64, Hinv, pruned), W64)  # float64 input is not modified in place
    assert W64[0, 1] != 0.0


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
