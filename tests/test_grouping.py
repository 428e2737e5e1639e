import itertools

import numpy as np
import pytest

from fangprune.fang.grouping import (
    assign_greedy,
    assign_lap,
    assign_lap_replicated,
    build_groups,
    check_partition,
    shared_group_frequency,
    shared_group_voting,
)


@pytest.mark.parametrize("method", ["lap", "greedy"])
def test_groups_partition_channels(method):
    rng = np.random.default_rng(0)
    k, n = 7, 64
    g = build_groups(rng.random((k, n)), method)
    assert len(g["groups"]) == k
    assert all(len(x) == n // (k + 1) for x in g["groups"]) and len(g["shared"]) == n // (k + 1)
    check_partition(g["shared"], g["groups"], n)


def test_lap_is_optimal_by_brute_force():
    rng = np.random.default_rng(1)
    scores = rng.random((2, 4))
    groups = assign_lap(scores, np.arange(4), 2)
    best = max(
        sum(scores[0, list(c)]) + sum(scores[1, [j for j in range(4) if j not in c]])
        for c in itertools.combinations(range(4), 2)
    )
    got = scores[0, groups[0]].sum() + scores[1, groups[1]].sum()
    assert got == pytest.approx(best)


@pytest.mark.parametrize("n, sizes", [(200, None), (2000, None), (45, [3, 20, 5, 10, 7])])
def test_lap_on_k_nodes_equals_the_replicated_lap(n, sizes):
    # continuous scores: the optimum is unique, so both forms must return the same groups
    rng = np.random.default_rng(n)
    k = 7 if sizes is None else len(sizes)
    sizes = sizes or [n // k + (1 if g < n % k else 0) for g in range(k)]
    scores = rng.standard_normal((k, n))
    got, ref = assign_lap(scores, np.arange(n), sizes), assign_lap_replicated(scores, np.arange(n), sizes)
    assert [g.tolist() for g in got] == [g.tolist() for g in ref]


def test_lap_on_k_nodes_reaches_the_optimum_under_ties():
    # integer scores with many ties: the groups may differ from the replicated LAP's, the optimum may not
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=(5, 300)).astype(float)
    available = np.setdiff1d(np.arange(300), np.arange(0, 300, 7))
    sizes = [52, 52, 51, 51, 51]  # 257 channels

    def total(groups):
        return sum(scores[g, idx].sum() for g, idx in enumerate(groups))

    got = assign_lap(scores, available, sizes)
    assert [len(g) for g in got] == sizes
    assert np.array_equal(np.sort(np.concatenate(got)), available)
    assert total(got) == total(assign_lap_replicated(scores, available, sizes))


def test_shared_group_hand_computed():
    # top-2 lists: ctx0 -> {0, 1}, ctx1 -> {0, 2}, ctx2 -> {0, 3}; channel 0 is chosen by all three
    scores = np.array(
        [[9, 8, 1, 1, 0, 0], [9, 1, 8, 1, 0, 0], [9, 1, 1, 8, 0, 0]], dtype=float
    )
    assert shared_group_frequency(scores, 2)[0] == 0
    assert 0 in shared_group_voting(scores, 2)


def test_greedy_takes_largest_raw_score_first():
    scores = np.array([[5.0, 4.0, 0.0, 0.0], [6.0, 0.0, 3.0, 2.0]])
    groups = assign_greedy(scores, np.arange(4), 2)
    # 6 (ctx1, ch0) first, then 4 (ctx0, ch1), 3 (ctx1, ch2), then ctx0 takes its best remaining (ch3)
    assert groups[1].tolist() == [0, 2] and groups[0].tolist() == [1, 3]


def test_indivisible_width_gives_sizes_differing_by_one():
    # 60 channels, K = 7: shared group floor(60 / 8) = 7, the functional groups share the other 53 (8 x 4, 7 x 3)
    g = build_groups(np.random.default_rng(0).random((7, 60)))
    assert len(g["shared"]) == 7 and sorted(len(x) for x in g["groups"]) == [7, 7, 7, 8, 8, 8, 8]
    check_partition(g["shared"], g["groups"], 60)
    with pytest.raises(ValueError, match="cannot be split"):
        build_groups(np.ones((7, 5)))
