"""Tests for paretoalign.pareto on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from pymoo.indicators.hv import HV

from paretoalign.pareto import (
    bootstrap_hypervolume,
    bootstrap_hypervolume_difference,
    bootstrap_mean_interval,
    bootstrap_point_intervals,
    hypervolume,
    min_norm_weights,
    pareto_criticality,
    pareto_front,
    pareto_mask,
    simplex_grid,
)

# 2-D set (maximise): A, B, C form a staircase; D = (1, 1) is dominated by B; E duplicates B;
# F = (1, 2) ties B on y and is worse on x -> dominated by B; G = (3, 0) ties C on x, worse on y -> dominated.
POINTS_2D = [(1, 3), (2, 2), (3, 1), (1, 1), (2, 2), (1, 2), (3, 0)]


# ----------------------------------------------------------------------------------------------- pareto_mask


def test_pareto_mask_2d_with_duplicates_and_ties():
    expected = [True, True, True, False, True, False, False]
    assert pareto_mask(POINTS_2D).tolist() == expected


def test_pareto_mask_2d_minimize():
    # Minimising: D = (1, 1) dominates A (1, 3), B (2, 2), C (3, 1), E, F (1, 2); G = (3, 0) has the only y = 0,
    # so nothing dominates it, and G does not dominate D (x 3 > 1).
    expected = [False, False, False, True, False, False, True]
    assert pareto_mask(POINTS_2D, maximize=False).tolist() == expected


def test_pareto_mask_3d():
    points = [
        (1, 0, 0),  # dominated by (1, 1, 0): ties x and z, worse y
        (0, 1, 0),  # dominated by (1, 1, 0): ties y and z, worse x
        (0, 0, 1),  # non-dominated (only point with z >= 1 besides its duplicate)
        (1, 1, 0),  # non-dominated
        (0.5, 0.5, 0.5),  # non-dominated: (1, 1, 0) has z 0 < 0.5, (0, 0, 1) has x 0 < 0.5
        (0, 0, 1),  # duplicate: both copies kept
        (1, 1, -1),  # dominated by (1, 1, 0): ties x and y, worse z
    ]
    assert pareto_mask(points).tolist() == [False, False, True, True, True, True, False]
    # Minimising: (1, 1, -1) is the only z < 0, so non-dominated; (0, 1, 0) and (1, 0, 0) beat (1, 1, 0);
    # (0, 0, 1) vs (0, 1, 0): neither dominates; (0.5, 0.5, 0.5) is dominated by neither of the unit vectors
    # (each has a 1 somewhere) nor by (1, 1, -1) (x 1 > 0.5).
    assert pareto_mask(points, maximize=False).tolist() == [True, True, True, False, True, True, True]


def test_pareto_mask_all_identical_points_are_all_kept():
    assert pareto_mask(np.ones((4, 3))).tolist() == [True] * 4


def test_pareto_mask_single_point_empty_set_and_single_objective():
    assert pareto_mask([[5.0, -1.0]]).tolist() == [True]
    assert pareto_mask(np.zeros((0, 2))).shape == (0,)
    assert pareto_mask([]).shape == (0,)
    # One objective: only the maxima (both copies of 3) are non-dominated.
    assert pareto_mask([[1], [3], [2], [3]]).tolist() == [False, True, False, True]


def test_pareto_mask_accepts_torch_and_returns_numpy_bool():
    mask = pareto_mask(torch.tensor(POINTS_2D, dtype=torch.float32, requires_grad=True))
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert mask.tolist() == [True, True, True, False, True, False, False]


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([1.0, 2.0, 3.0], "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((3, 0)), "at least one objective"),
        ([[1.0, float("nan")], [0.0, 1.0]], "finite"),
        ([[1.0, 2.0], [float("inf"), 1.0]], "finite"),
        ([[1.0, 2.0], [1.0]], "numeric"),
    ],
)
def test_pareto_mask_rejects_bad_input(points, message):
    with pytest.raises(ValueError, match=message):
        pareto_mask(points)


# ---------------------------------------------------------------------------------------------- pareto_front


def test_pareto_front_2d_sorted_by_first_objective():
    # Non-dominated: A (1, 3), B (2, 2), E (2, 2), C (3, 1); sorted by x ascending.
    expected = [[1, 3], [2, 2], [2, 2], [3, 1]]
    np.testing.assert_array_equal(pareto_front(POINTS_2D[::-1]), expected)


def test_pareto_front_3d_ties_broken_by_next_objective_and_minimize():
    points = [(1, 2, 0), (0, 5, 5), (1, 0, 2), (0, 1, 1)]
    # (0, 1, 1) is dominated by (0, 5, 5); the two points with x = 1 are ordered by y.
    np.testing.assert_array_equal(pareto_front(points), [[0, 5, 5], [1, 0, 2], [1, 2, 0]])
    # Minimising: (0, 1, 1) dominates (0, 5, 5); (1, 2, 0) has the only z = 0; (1, 0, 2) the only y = 0.
    np.testing.assert_array_equal(pareto_front(points, maximize=False), [[0, 1, 1], [1, 0, 2], [1, 2, 0]])


# ----------------------------------------------------------------------------------------------- hypervolume


def test_hypervolume_2d_staircase():
    # Boxes [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1]: strips x in [0,1] height 3, [1,2] height 2, [2,3] height 1
    # -> 3 + 2 + 1 = 6.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == 6.0


def test_hypervolume_2d_ignores_dominated_points_and_points_not_beating_reference():
    # (1, 1) lies inside the staircase; (5, 0) ties the reference on y; (-1, 10) is below it on x;
    # a duplicate adds nothing -> still 6.
    points = [(1, 3), (2, 2), (3, 1), (1, 1), (5, 0), (-1, 10), (2, 2)]
    assert hypervolume(points, (0, 0)) == 6.0


def test_hypervolume_2d_shifted_reference_and_minimize():
    # Gains over (0.5, 0.5): (0.5, 2.5), (1.5, 1.5), (2.5, 0.5) -> 0.5*2.5 + 1*1.5 + 1*0.5 = 3.25.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0.5, 0.5)) == 3.25
    # Minimising with reference (4, 4): gains 4 - p = (3, 1), (2, 2), (1, 3) -> the staircase again, 6.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4), maximize=False) == 6.0
    # The same points maximised against (4, 4) beat it nowhere -> 0.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == 0.0


def test_hypervolume_1d_empty_and_torch_inputs():
    # One objective: max gain = 3 - 0.5.
    assert hypervolume([[1], [3], [2]], [0.5]) == 2.5
    assert hypervolume(np.zeros((0, 2)), (0, 0)) == 0.0
    assert hypervolume([], (0, 0, 0)) == 0.0
    value = hypervolume(torch.tensor([[1.0, 3.0], [3.0, 1.0]]), torch.tensor([0.0, 0.0]))
    # 3 + 3 - overlap [0,1]x[0,1] = 5.
    assert isinstance(value, float) and value == 5.0


def test_hypervolume_3d_single_box():
    # (1, 2, 3) over the origin: 1*2*3 = 6; over (-1, 0, 1): gains (2, 2, 2) -> 8.
    assert hypervolume([(1, 2, 3)], (0, 0, 0)) == pytest.approx(6.0, abs=1e-12)
    assert hypervolume([(1, 2, 3)], (-1, 0, 1)) == pytest.approx(8.0, abs=1e-12)


def test_hypervolume_3d_two_overlapping_boxes():
    # |A u B| = |A| + |B| - |A n B| = 1*2*3 + 3*2*1 - 1*2*1 = 10.
    assert hypervolume([(1, 2, 3), (3, 2, 1)], (0, 0, 0)) == pytest.approx(10.0, abs=1e-12)


def test_hypervolume_3d_staircase_and_ignored_points():
    # Boxes (1,2,3), (2,3,1), (3,1,2): each 6; pairwise intersections (1,2,1), (1,1,2), (2,1,1): 2 each;
    # triple (1,1,1): 1. Inclusion-exclusion: 18 - 6 + 1 = 13.
    staircase = [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
    assert hypervolume(staircase, (0, 0, 0)) == pytest.approx(13.0, abs=1e-12)
    # (5, 5, 0) ties the reference on z, (-1, 9, 9) is below it on x, (1, 1, 1) is inside -> still 13.
    assert hypervolume([*staircase, (5, 5, 0), (-1, 9, 9), (1, 1, 1)], (0, 0, 0)) == pytest.approx(13.0, abs=1e-12)
    # Minimising the negated points against the negated reference is the same problem.
    negated = [tuple(-v for v in point) for point in staircase]
    assert hypervolume(negated, (0, 0, 0), maximize=False) == pytest.approx(13.0, abs=1e-12)


def test_hypervolume_4d_box_union():
    # (1,2,3,4) -> 24; adding (2,1,1,1) -> 24 + 2 - |(1,1,1,1)| = 25.
    assert hypervolume([(1, 2, 3, 4)], np.zeros(4)) == pytest.approx(24.0, abs=1e-12)
    assert hypervolume([(1, 2, 3, 4), (2, 1, 1, 1)], np.zeros(4)) == pytest.approx(25.0, abs=1e-12)


def test_hypervolume_2d_exact_sweep_agrees_with_pymoo():
    rng = np.random.default_rng(0)
    for trial in range(30):
        points = rng.normal(size=(rng.integers(1, 40), 2))
        reference = rng.normal(size=2) - 1.0
        # pymoo minimises (and ignores points not beating the reference): maximising p against r is
        # minimising -p against -r.
        expected_max = float(HV(ref_point=-reference)(-points))
        assert hypervolume(points, reference) == pytest.approx(expected_max, rel=1e-12, abs=1e-9), trial
        reference_min = rng.normal(size=2) + 1.0
        expected_min = float(HV(ref_point=reference_min)(points))
        value_min = hypervolume(points, reference_min, maximize=False)
        assert value_min == pytest.approx(expected_min, rel=1e-12, abs=1e-9), trial


@pytest.mark.parametrize(
    ("points", "reference", "message"),
    [
        ([(1, 2)], (0, 0, 0), "reference point has 3"),
        ([(1, 2)], [[0, 0]], "1-D"),
        ([(1, 2)], [], "1-D"),
        ([(1, float("nan"))], (0, 0), "points must be finite"),
        ([(1, 2)], (0, float("-inf")), "reference must be finite"),
        ([1, 2], (0, 0), "2-D"),
    ],
)
def test_hypervolume_rejects_bad_input(points, reference, message):
    with pytest.raises(ValueError, match=message):
        hypervolume(points, reference)


# ---------------------------------------------------------------------------------------------- simplex_grid


def test_simplex_grid_two_objectives_four_divisions():
    expected = [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    np.testing.assert_array_equal(simplex_grid(2, 4), expected)


def test_simplex_grid_three_objectives_two_divisions():
    # Counts (2,0,0), (1,1,0), (1,0,1), (0,2,0), (0,1,1), (0,0,2), lexicographically descending, over 2.
    expected = [[1, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]]
    np.testing.assert_array_equal(simplex_grid(3, 2), expected)


@pytest.mark.parametrize(("num_objectives", "divisions", "count"), [(3, 10, 66), (4, 5, 56), (1, 7, 1), (5, 1, 5)])
def test_simplex_grid_count_order_and_exact_entries(num_objectives, divisions, count):
    # Count C(n + K - 1, K - 1): C(12, 2) = 66, C(8, 3) = 56, C(7, 0) = 1, C(5, 4) = 5.
    grid = simplex_grid(num_objectives, divisions)
    assert count == math.comb(divisions + num_objectives - 1, num_objectives - 1)
    assert grid.shape == (count, num_objectives)
    assert np.all(np.isin(grid, np.arange(divisions + 1) / divisions))
    np.testing.assert_allclose(grid.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    rows = [tuple(row) for row in grid]
    assert rows == sorted(set(rows), reverse=True)


def test_simplex_grid_single_objective_and_single_division():
    np.testing.assert_array_equal(simplex_grid(1, 3), [[1.0]])
    np.testing.assert_array_equal(simplex_grid(3, 1), np.eye(3))


@pytest.mark.parametrize(("num_objectives", "divisions"), [(0, 3), (3, 0), (-1, 2), (2.5, 2), (2, True), ("3", 2)])
def test_simplex_grid_rejects_bad_sizes(num_objectives, divisions):
    with pytest.raises(ValueError):
        simplex_grid(num_objectives, divisions)


# ---------------------------------------------------------------------------------------- pareto_criticality


def gram_of(gradients) -> np.ndarray:
    matrix = np.asarray(gradients, dtype=np.float64)
    return matrix @ matrix.T


def test_criticality_orthogonal_unit_gradients():
    # p = clip((1 - 0) / (1 + 1 - 0), 0, 1) = 1/2 -> ||(1/2, 1/2)||^2 = 1/4 + 1/4 = 1/2.
    assert pareto_criticality(np.eye(2)) == 0.5
    np.testing.assert_array_equal(min_norm_weights(np.eye(2)), [0.5, 0.5])


def test_criticality_opposite_gradients_is_zero():
    # g1 = (1, 0), g2 = (-2, 0): G = [[1, -2], [-2, 4]], p = (4 + 2) / (1 + 4 + 4) = 2/3
    # -> 2/3 * (1, 0) + 1/3 * (-2, 0) = 0.
    gram = gram_of([(1, 0), (-2, 0)])
    assert pareto_criticality(gram) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(min_norm_weights(gram), [2 / 3, 1 / 3], atol=1e-15)


def test_criticality_aligned_gradients_is_smallest_squared_norm():
    # g1 = (3, 4), g2 = (6, 8): p = (100 - 50) / (25 + 100 - 100) = 2 -> clipped to 1 -> ||g1||^2 = 25.
    assert pareto_criticality(gram_of([(3, 4), (6, 8)])) == 25.0
    # Reversed order: p = (25 - 50) / 25 = -1 -> clipped to 0 -> still 25.
    assert pareto_criticality(gram_of([(6, 8), (3, 4)])) == 25.0
    # Identical gradients: denominator ||g1 - g2||^2 = 0 -> p = 1 -> G_11 = 2.
    assert pareto_criticality([[2.0, 2.0], [2.0, 2.0]]) == 2.0


def test_criticality_two_gradients_interior_minimum():
    # g1 = (2, 0), g2 = (0, 1): p = (1 - 0) / (4 + 1) = 1/5 -> (2/5, 4/5), squared norm 4/25 + 16/25 = 4/5.
    gram = gram_of([(2, 0), (0, 1)])
    assert pareto_criticality(gram) == pytest.approx(0.8, abs=1e-15)
    np.testing.assert_allclose(min_norm_weights(gram), [0.2, 0.8], atol=1e-15)


def test_criticality_single_objective_is_squared_norm():
    assert pareto_criticality([[4.0]]) == 4.0
    np.testing.assert_array_equal(min_norm_weights([[4.0]]), [1.0])


def test_criticality_three_unit_vectors_at_120_degrees_is_zero():
    # G_ii = 1, G_ij = cos 120 deg = -1/2; p = (1/3, 1/3, 1/3): (3 * 1 + 6 * (-1/2)) / 9 = 0.
    angles = 2 * np.pi * np.arange(3) / 3
    gram = gram_of(np.stack([np.cos(angles), np.sin(angles)], axis=1))
    assert pareto_criticality(gram) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(min_norm_weights(gram), [1 / 3] * 3, atol=1e-12)


def test_criticality_three_orthonormal_gradients():
    # p = (1/3, 1/3, 1/3): 3 * (1/3)^2 = 1/3.
    assert pareto_criticality(np.eye(3)) == pytest.approx(1 / 3, abs=1e-15)


@pytest.mark.parametrize(
    ("gradients", "expected", "expected_weights"),
    [
        # Rank 2: segment (1,0)-(0,1) has closest point (1/2, 1/2), squared norm 1/2; g3 = (1, 1) is farther.
        ([(1, 0), (0, 1), (1, 1)], 0.5, [0.5, 0.5, 0.0]),
        # Rank 1, all on the positive x axis: the shortest, (1, 0), squared norm 1.
        ([(1, 0), (2, 0), (3, 0)], 1.0, [1.0, 0.0, 0.0]),
        # Rank 2 with a vanishing combination: (1, 0)/2 + (-1, 0)/2 = 0.
        ([(1, 0), (-1, 0), (0, 1)], 0.0, [0.5, 0.5, 0.0]),
        # Four gradients in the plane: 1/2 (1, 1) + 1/2 (-1, -1) = 0.
        ([(1, 1), (2, 0), (-1, -1), (0, 3)], 0.0, None),
        # All gradients zero.
        ([(0, 0), (0, 0), (0, 0)], 0.0, None),
    ],
)
def test_criticality_singular_gram(gradients, expected, expected_weights):
    gram = gram_of(gradients)
    assert pareto_criticality(gram) == pytest.approx(expected, abs=1e-14)
    weights = min_norm_weights(gram)
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0, abs=1e-15)
    if expected_weights is not None:
        np.testing.assert_allclose(weights, expected_weights, atol=1e-12)


def exact_min_over_supports(gram: np.ndarray) -> float:
    """Brute force: for every support S solve min q^T G_SS q s.t. sum q = 1 through its KKT system, keep the
    feasible (q >= 0) solutions, return the smallest value. The optimum is the affine minimiser of its own
    support, so this is exact."""
    best = math.inf
    for size in range(1, len(gram) + 1):
        for support in itertools.combinations(range(len(gram)), size):
            block = gram[np.ix_(support, support)]
            system = np.block([[block, np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
            solution = np.linalg.lstsq(system, np.r_[np.zeros(size), 1.0], rcond=None)[0][:size]
            if np.all(solution >= -1e-12) and abs(solution.sum() - 1) < 1e-9:
                best = min(best, float(solution @ block @ solution))
    return best


def test_criticality_random_matches_support_enumeration_and_kkt():
    rng = np.random.default_rng(1)
    for trial in range(60):
        num_objectives = int(rng.integers(3, 7))
        dimension = int(rng.integers(1, 8))
        scales = np.exp(rng.uniform(-2, 2, size=(num_objectives, 1)))
        gradients = rng.normal(size=(num_objectives, dimension)) * scales
        if trial % 3 == 0:
            gradients += 2 * rng.normal(size=dimension)  # a shared component: the min-norm point is often a vertex
        gram = gram_of(gradients)
        value = pareto_criticality(gram)
        weights = min_norm_weights(gram)
        assert value == pytest.approx(exact_min_over_supports(gram), abs=1e-10), trial
        # KKT certificate of the convex QP: (G p)_j >= p^T G p for every j (equality on the support).
        products = gram @ weights
        assert np.all(products >= weights @ products - 1e-10), trial


def refined_grid_minimum(gram: np.ndarray) -> tuple[float, float]:
    """(coarse, refined): the minimum of p^T G p over simplex_grid(3, 300), then refined by repeatedly searching
    a shrinking 41 x 41 neighbourhood of the best point, clipped to the simplex."""
    grid = simplex_grid(3, 300)
    values = np.einsum("ij,jk,ik->i", grid, gram, grid)
    coarse = float(values.min())
    best = grid[int(values.argmin())]
    offsets = np.linspace(-1, 1, 41)
    step = 1 / 300
    for _ in range(20):
        first, second = np.meshgrid(offsets * step, offsets * step)
        candidates = best + np.stack([first.ravel(), second.ravel(), -(first + second).ravel()], axis=1)
        candidates = candidates[np.all(candidates >= 0, axis=1)]
        candidate_values = np.einsum("ij,jk,ik->i", candidates, gram, candidates)
        best = candidates[int(candidate_values.argmin())]
        step /= 4
    return coarse, float(best @ gram @ best)


def test_criticality_three_random_gradients_vs_grid_search():
    rng = np.random.default_rng(2)
    for trial in range(6):
        gradients = rng.normal(size=(3, 4)) / 2
        if trial % 2:
            gradients += rng.normal(size=4)
        gram = gram_of(gradients)
        value = pareto_criticality(gram)
        coarse, refined = refined_grid_minimum(gram)
        assert coarse - 1e-4 <= value <= coarse, trial
        assert refined - 1e-8 <= value <= refined + 1e-12, trial


def test_criticality_accepts_torch_gram():
    gradients = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    value = pareto_criticality(gradients @ gradients.T)
    assert isinstance(value, float) and value == pytest.approx(0.8, abs=1e-7)


@pytest.mark.parametrize(
    ("gram", "message"),
    [
        (np.ones((2, 3)), "square"),
        (np.ones(3), "square"),
        (np.zeros((0, 0)), "square"),
        ([[1.0, 0.5], [0.0, 1.0]], "symmetric"),
        ([[1.0, float("nan")], [float("nan"), 1.0]], "finite"),
        ([[1.0, 2.0], [2.0, 1.0]], "positive semi-definite"),  # eigenvalues 3 and -1
    ],
)
def test_criticality_rejects_bad_gram(gram, message):
    with pytest.raises(ValueError, match=message):
        pareto_criticality(gram)
    with pytest.raises(ValueError, match=message):
        min_norm_weights(gram)


# ----------------------------------------------------------------------------------------- bootstrap intervals


def test_bootstrap_mean_interval_against_a_hand_count():
    # Two values 0 and 1: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the 5% and 95%
    # quantiles of 1000 resampled means are 0 and 1 (each end holds about 250 of them).
    assert bootstrap_mean_interval([0.0, 1.0], level=0.9) == (0.5, 0.0, 1.0)
    # Outcomes 1, 1, 1, 0: the resampled mean is k / 4 with k ~ Binomial(4, 3/4): P(k = 4) = 81/256 and
    # P(k <= 1) = 13/256 (about 51 of 1000, so the 2.5% quantile, near the 25th of the sorted 1000, is at k = 1).
    assert bootstrap_mean_interval([1.0, 1.0, 1.0, 0.0]) == (0.75, 0.25, 1.0)


def test_bootstrap_mean_interval_degenerate_empty_seeded_and_checked():
    assert bootstrap_mean_interval([0.5] * 7) == (0.5, 0.5, 0.5)
    assert all(math.isnan(value) for value in bootstrap_mean_interval([]))
    values = np.random.default_rng(3).random(40)
    first = bootstrap_mean_interval(values, seed=5, resamples=200)
    assert bootstrap_mean_interval(values, seed=5, resamples=200) == first
    assert bootstrap_mean_interval(values, seed=6, resamples=200) != first
    assert first[0] == pytest.approx(values.mean()) and first[1] < first[0] < first[2]
    with pytest.raises(ValueError, match="values must be finite"):
        bootstrap_mean_interval([1.0, math.nan])
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        bootstrap_mean_interval([1.0], level=1.0)
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        bootstrap_mean_interval([1.0], resamples=0)


def test_bootstrap_hypervolume_one_run_one_seed_against_a_hand_count():
    # Objective a: outcomes 1, 0 (mean 1/2, no gain over 0.5); b: 1, 1, 1 (gain 1/2 whatever is drawn). A resample
    # gains on a only when it draws the 1 twice (probability 1/4): volume (1 - 0.5) * (1 - 0.5) = 1/4, else 0.
    samples = [[[[1.0, 0.0], [1.0, 1.0, 1.0]]]]
    assert bootstrap_hypervolume(samples, [0.5, 0.5], level=0.9) == (0.0, 0.0, 0.25)
    # a: 1, 1, 1, 0 (mean 3/4): point volume (0.75 - 0.5) * 0.5 = 1/8; resampled a-means k / 4, k ~ Binomial(4, 3/4):
    # volume 1/4 at k = 4 (81/256), 1/8 at k = 3 (108/256), 0 below (67/256); the a-mean's 2.5% quantile is at
    # k = 1 (P(k = 0) = 1/256, P(k <= 1) = 13/256).
    samples = [[[[1.0, 1.0, 1.0, 0.0], [1.0, 1.0]]]]
    assert bootstrap_hypervolume(samples, [0.5, 0.5]) == (0.125, 0.0, 0.25)
    points, low, high = bootstrap_point_intervals(samples)
    assert points.tolist() == [[0.75, 1.0]] and low.tolist() == [[0.25, 1.0]] and high.tolist() == [[1.0, 1.0]]


def test_bootstrap_hypervolume_resamples_the_seeds():
    # One pair per objective, two seeds: seed 0 wins a, seed 1 loses it; b is won by both. The point is
    # (1/2, 1): no volume. Drawing seed 0 twice (probability 1/4) gives (1, 1): volume 1/2 * 1/2.
    samples = [[[[1.0], [1.0]], [[0.0], [1.0]]]]
    assert bootstrap_hypervolume(samples, [0.5, 0.5], level=0.9) == (0.0, 0.0, 0.25)


def test_bootstrap_hypervolume_degenerate_outcomes_give_a_zero_width_interval():
    runs = [[[[1.0] * 5, [0.5] * 3 + [1.0] * 3]] * 2, [[[1.0] * 5, [1.0] * 6]] * 2]
    # Every resample redraws the same values: run 0 is (1, 0.75), run 1 (1, 1), which dominates it.
    volume, low, high = bootstrap_hypervolume(runs, [0.5, 0.5])
    assert volume == low == high == 0.25
    # a missing measurement (NaN) is left out of the means; a run with nothing measured adds no point (run 0 draws
    # only its NaN with probability 1/256)
    runs = [[[[1.0, math.nan, 1.0, 1.0], [1.0, 1.0]]], [[[math.nan] * 4, [1.0, 1.0]]]]
    assert bootstrap_hypervolume(runs, [0.5, 0.5], level=0.9) == (0.25, 0.25, 0.25)


def test_hypervolume_difference_against_a_constant_baseline_is_the_hypervolume_shifted():
    # The baseline's run measures 0.75 on every unit: HV 0.25 * 0.25 in every resample, so the difference's interval
    # is the other set's own interval (same seed, same draws) less 1/16.
    generator = np.random.default_rng(0)
    samples = [[[generator.integers(0, 2, 40) / 1.0, generator.integers(0, 3, 30) / 2.0] for _ in range(2)]
               for _ in range(3)]
    baseline = [[[np.full(40, 0.75), np.full(30, 0.75)] for _ in range(2)]]
    volume, low, high = bootstrap_hypervolume(samples, [0.5, 0.5], resamples=400)
    difference = bootstrap_hypervolume_difference(samples, baseline, [0.5, 0.5], resamples=400)
    assert difference == pytest.approx((volume - 1 / 16, low - 1 / 16, high - 1 / 16))
    assert bootstrap_hypervolume_difference(samples, samples, [0.5, 0.5], resamples=400) == (0.0, 0.0, 0.0)


def test_paired_hypervolume_difference_resolves_what_the_separate_intervals_cannot():
    # One run each, 300 pairs per objective: the second set also wins 6 of the pairs the first set lost, on both
    # objectives. Each hypervolume's own interval covers the other's value, but the difference,
    # resampled pair by pair, stays above zero.
    generator = np.random.default_rng(0)
    base = [(generator.random(300) < 0.6).astype(float) for _ in range(2)]
    better = []
    for outcomes in base:
        improved = outcomes.copy()
        improved[np.flatnonzero(outcomes == 0)[:6]] = 1.0
        better.append(improved)
    first, second = [[base]], [[better]]
    volume_first, _, high_first = bootstrap_hypervolume(first, [0.5, 0.5])
    volume_second, low_second, _ = bootstrap_hypervolume(second, [0.5, 0.5])
    assert low_second < volume_first < volume_second < high_first
    difference, low, high = bootstrap_hypervolume_difference(second, first, [0.5, 0.5])
    assert difference == pytest.approx(volume_second - volume_first)
    assert 0 < low < difference < high


def test_bootstrap_hypervolume_is_reproducible_by_seed_and_checks_its_input():
    generator = np.random.default_rng(0)
    samples = [[[generator.integers(0, 2, 30) / 1.0, generator.integers(0, 3, 20) / 2.0] for _ in range(3)]
               for _ in range(4)]
    first = bootstrap_hypervolume(samples, [0.4, 0.4], seed=1, resamples=300)
    assert bootstrap_hypervolume(samples, [0.4, 0.4], seed=1, resamples=300) == first
    assert bootstrap_hypervolume(samples, [0.4, 0.4], seed=2, resamples=300) != first
    points = [[np.mean([np.mean(seed[k]) for seed in run]) for k in range(2)] for run in samples]
    assert first[0] == pytest.approx(hypervolume(points, [0.4, 0.4]))
    assert first[1] <= first[0] <= first[2]
    with pytest.raises(ValueError, match=r"samples\[1\]\[0\]\[1\] has 2 values, samples\[0\]\[0\]\[1\] has 3"):
        bootstrap_hypervolume([[[[1.0], [1.0, 0.0, 1.0]]], [[[1.0], [1.0, 0.0]]]], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"samples\[1\] has 1 seeds, samples\[0\] has 2"):
        bootstrap_hypervolume([[[[1.0], [1.0]]] * 2, [[[1.0], [1.0]]]], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"samples\[0\]\[0\] has 1 objectives, the reference point 2"):
        bootstrap_hypervolume([[[[1.0]]]], [0.5, 0.5])
