import torch

from fangprune.fang.reweighting import alpha_weights, context_distances


def test_alpha_rows_sum_to_one_and_own_context_weighs_most():
    torch.manual_seed(0)
    x = torch.randn(40, 8)
    ids = torch.arange(40) % 3
    x[ids == 1] += 5.0
    alpha = alpha_weights(x, ids, k=4, tau=2.0)
    assert alpha.shape == (4, 40)
    assert torch.allclose(alpha.sum(1), torch.ones(4))
    for k in range(3):
        own = alpha[k, ids == k]
        assert torch.all(own.min() >= alpha[k, ids != k].max() - 1e-7)
    assert torch.allclose(alpha[3], torch.full((40,), 1 / 40))  # context 3 absent -> uniform


def test_alpha_hand_computed():
    # two contexts with centres 0 and 3 (one dimension): d = [[0, 3], [3, 0]]
    x = torch.tensor([[0.0], [0.0], [3.0]])
    ids = torch.tensor([0, 0, 1])
    dist, present = context_distances(x, ids, 2)
    assert torch.allclose(dist, torch.tensor([[0.0, 3.0], [3.0, 0.0]]))
    a = alpha_weights(x, ids, 2, tau=3.0)
    e = torch.exp(torch.tensor(-1.0))
    assert torch.allclose(a[0], torch.tensor([1.0, 1.0, e]) / (2 + e))
    assert torch.allclose(a[1], torch.tensor([e, e, 1.0]) / (1 + 2 * e))


def test_large_tau_is_uniform():
    x = torch.randn(10, 4)
    ids = torch.arange(10) % 2
    assert torch.allclose(alpha_weights(x, ids, 2, tau=1e9), torch.full((2, 10), 0.1))
