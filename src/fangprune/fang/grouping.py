"""Neuron-to-Function Assignment and Shared Neuron Group Retention (SNGR).

The N_n MLP channels of a layer are split into K functional groups of m = N_n / (K+1) channels and one shared
group of m channels, using the cluster-neuron score matrix S [K, N_n] (Eq. 5):

* shared group (SNGR): channels selected most often among the contexts' top-m channels (generalists);
* functional groups: the remaining channels are assigned to contexts so that sum_k sum_{j in G_k} s_kj is
  maximal with |G_k| = m.

``method="lap"`` (paper): shared group by selection frequency (ties by total score), assignment as the
paper's linear assignment problem (each context replicated m times), solved exactly in its transportation form
(K columns instead of N_n, see ``assign_lap``).
``method="greedy"`` (reference code, from LLaMA-MoE-v2): the shared group is built by repeated top-m voting
(highest vote count first, ties by ascending channel index), and channels are assigned greedily by the largest
remaining raw score.
"""

from __future__ import annotations

import numpy as np


def group_size(n: int, k: int) -> int:
    """Size m of the shared group: N_n / (K+1), rounded down when K+1 does not divide N_n (the functional groups
    then share the remainder, sizes differing by at most one)."""
    if n < k + 1:
        raise ValueError(f"{n} MLP channels cannot be split into K+1={k + 1} groups (K={k})")
    return n // (k + 1)


def shared_group_frequency(scores: np.ndarray, m: int) -> np.ndarray:
    """Paper SNGR: the m channels that appear most often in the contexts' top-m lists."""
    k, n = scores.shape
    top = np.argsort(-scores, axis=1, kind="stable")[:, :m]
    freq = np.bincount(top.ravel(), minlength=n)
    order = np.lexsort((-scores.sum(0), -freq))  # by frequency, then total score
    return np.sort(order[:m])


def assign_lap(scores: np.ndarray, available: np.ndarray, m: int | list[int]) -> list[np.ndarray]:
    """Assign ``available`` channels to K groups of m (or of the sizes ``m``) maximising the summed in-group
    scores (exact).

    The paper's linear assignment problem replicates context k |G_k| times: a channels x channels matrix, cubic
    time and 4.7 GiB of float64 at LLaMA-2-70B's 28672 channels (``assign_lap_replicated``). Every slot of a
    context is alike, so the same optimum is found on K nodes: channels are inserted one at a time, each along
    the shortest augmenting path of the residual network (successive shortest paths, which keeps the partial
    assignment optimal), where the edge g -> h is the cheapest move of one channel from group g to group h
    (kept in K(K-1) lazy heaps) and the path is found by Bellman-Ford over the K groups. Memory O(N_n K),
    time O(N_n K^3) plus the heaps.
    """
    import heapq

    k = scores.shape[0]
    sizes = np.asarray(_check_sizes(available, k, m))
    gain = np.ascontiguousarray(scores[:, available].T, dtype=np.float64)  # [channels, K]
    n = gain.shape[0]
    tol = 1e-12 * max(1.0, float(np.abs(gain).max()))  # no relaxation on rounding noise: no phantom cycles
    group_of = np.full(n, -1, dtype=np.int64)
    count = np.zeros(k, dtype=np.int64)
    heaps: list[list[list]] = [[[] for _ in range(k)] for _ in range(k)]  # heaps[g][h]: (cost of i: g -> h, i)
    move_cost = np.full((k, k), np.inf)

    def join(i: int, g: int) -> None:
        group_of[i] = g
        for h in range(k):
            if h != g:
                heapq.heappush(heaps[g][h], (gain[i, g] - gain[i, h], i))

    def refresh(g: int) -> None:
        for h in range(k):
            heap = heaps[g][h]
            while heap and group_of[heap[0][1]] != g:
                heapq.heappop(heap)
            move_cost[g, h] = heap[0][0] if heap else np.inf

    cols = np.arange(k)
    for j in range(n):
        dist = -gain[j].copy()  # channel j straight into group g
        pred = np.full(k, -1, dtype=np.int64)
        for _ in range(k - 1):
            via = dist[:, None] + move_cost  # [from, to]
            best = via.argmin(0)
            val = via[best, cols]
            better = val < dist - tol
            if not better.any():
                break
            dist[better] = val[better]
            pred[better] = best[better]
        free = np.flatnonzero(count < sizes)
        path = [int(free[np.argmin(dist[free])])]
        while pred[path[-1]] >= 0:
            path.append(int(pred[path[-1]]))
            if len(path) > k:
                raise RuntimeError("neuron-to-function assignment: a negative cycle (non-finite scores?)")
        path.reverse()  # j -> path[0] -> ... -> path[-1] (a group with room)
        moved = [(heaps[g][h][0][1], h) for g, h in zip(path[:-1], path[1:])]
        for i, h in moved:
            join(i, h)
        join(j, path[0])
        count[path[-1]] += 1
        for g in set(path):
            refresh(g)
    return [np.sort(available[group_of == g]) for g in range(k)]


def assign_lap_replicated(scores: np.ndarray, available: np.ndarray, m: int | list[int]) -> list[np.ndarray]:
    """The paper's form of ``assign_lap``: ``scipy.optimize.linear_sum_assignment`` on the channels x slots
    matrix, context k replicated |G_k| times. Quadratic memory; kept to check the transportation form."""
    from scipy.optimize import linear_sum_assignment

    k = scores.shape[0]
    sizes = _check_sizes(available, k, m)
    slot_group = np.repeat(np.arange(k), sizes)
    cost = -scores[:, available].T[:, slot_group]
    rows, cols = linear_sum_assignment(cost)
    group_of = np.empty(available.size, dtype=np.int64)
    group_of[rows] = slot_group[cols]
    return [np.sort(available[group_of == g]) for g in range(k)]


def _check_sizes(available: np.ndarray, k: int, m: int | list[int]) -> list[int]:
    sizes = [m] * k if isinstance(m, (int, np.integer)) else list(m)
    if available.size != sum(sizes):
        raise ValueError(f"{available.size} channels cannot fill {k} groups of {sizes}")
    return sizes


def shared_group_voting(scores: np.ndarray, m: int) -> np.ndarray:
    """Reference SNGR: repeatedly vote with every context's current top-m list; take the most-voted first."""
    k, n = scores.shape
    alive = np.ones(n, dtype=bool)
    shared: list[int] = []
    order = np.argsort(-scores, axis=1, kind="stable")
    while len(shared) < m:
        tops = [row[alive[row]][:m] for row in order]
        votes = np.bincount(np.concatenate(tops), minlength=n)
        best = votes.max()
        chosen = np.flatnonzero(votes == best)[: m - len(shared)]  # ascending index, as the reference
        shared.extend(chosen.tolist())
        alive[chosen] = False
    return np.sort(np.asarray(shared, dtype=np.int64))


def assign_greedy(scores: np.ndarray, available: np.ndarray, m: int | list[int]) -> list[np.ndarray]:
    """Reference split: repeatedly give the (context, channel) pair with the largest raw score."""
    k = scores.shape[0]
    cap = [m] * k if isinstance(m, (int, np.integer)) else list(m)
    free = np.zeros(scores.shape[1], dtype=bool)
    free[available] = True
    order = np.argsort(-scores, axis=1, kind="stable")
    ptr = np.zeros(k, dtype=np.int64)
    groups: list[list[int]] = [[] for _ in range(k)]
    for _ in range(available.size):
        best_val, best_c, best_j = -np.inf, -1, -1
        for c in range(k):
            if len(groups[c]) >= cap[c]:
                continue
            while not free[order[c, ptr[c]]]:
                ptr[c] += 1
            j = order[c, ptr[c]]
            if scores[c, j] >= best_val:  # ties go to the later context, as the reference
                best_val, best_c, best_j = scores[c, j], c, j
        groups[best_c].append(best_j)
        free[best_j] = False
    return [np.sort(np.asarray(g, dtype=np.int64)) for g in groups]


def random_groups(n: int, k: int, shared: bool, rng: np.random.Generator) -> dict:
    """Table 6 control: the same group sizes as the chosen grouping, channels drawn at random (seeded)."""
    perm = rng.permutation(n)
    m = group_size(n, k) if shared else 0
    sizes = _even_sizes(n - m, k)
    bounds = np.cumsum([m, *sizes])
    return {"shared": np.sort(perm[:m]), "groups": [np.sort(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]}


def _even_sizes(n: int, k: int) -> list[int]:
    return [n // k + (1 if g < n % k else 0) for g in range(k)]


def build_groups(scores: np.ndarray, method: str = "lap", shared: bool = True, rng=None) -> dict:
    """Split one layer's channels: returns {"shared": idx, "groups": [idx_0, ..., idx_{K-1}]}.

    ``shared=False`` (SNGR off, Table 5): no shared group; the K functional groups take all channels, sizes
    differing by at most one. ``method="random"`` (Table 6): the same sizes, channels at random (``rng``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    k, n = scores.shape
    if method == "random":
        return random_groups(n, k, shared, rng if rng is not None else np.random.default_rng(0))
    if method not in ("lap", "greedy"):
        raise ValueError(f"unknown grouping method {method!r} (lap, greedy, random)")
    if shared:
        m = group_size(n, k)
        sngr = shared_group_frequency if method == "lap" else shared_group_voting
        shared_idx = sngr(scores, m)
    else:
        shared_idx = np.empty(0, dtype=np.int64)
    sizes = _even_sizes(n - shared_idx.size, k)
    available = np.setdiff1d(np.arange(n), shared_idx)
    if method == "lap":
        groups = assign_lap(scores, available, sizes)
    else:
        groups = assign_greedy(scores, available, sizes)
    return {"shared": shared_idx, "groups": groups}


def check_partition(shared: np.ndarray, groups: list[np.ndarray], n: int) -> None:
    allidx = np.concatenate([shared, *groups])
    if allidx.size != n or not np.array_equal(np.sort(allidx), np.arange(n)):
        raise AssertionError("groups do not partition the channels")
