"""Weightings on exact small cases, against brute force, and against torchjd's own weightings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchjd.aggregation import CAGradWeighting, MGDAWeighting, PCGradWeighting, UPGradWeighting

from paretoalign.weighting import (
    MAX_OBJECTIVES_EXACT_DUAL,
    WEIGHTINGS,
    amopo_alpha,
    amopo_objective_scores,
    amopo_sequence_draws,
    get_weighting,
    solve_cagrad_dual,
    validate_weights,
)


def random_gram(K: int, dim: int = 10, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    J = torch.randn(K, dim, generator=generator, dtype=torch.float64)
    return J @ J.T


def dual_objective(p: np.ndarray, G: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    s = c * math.sqrt(w @ G @ w)
    return p @ (G @ w) + s * np.sqrt(np.clip(np.einsum("...i,ij,...j->...", p, G, p), 0, None))


def simplex_points(K: int, n: int) -> np.ndarray:
    if K == 2:
        lam = np.linspace(0, 1, n + 1)
        return np.stack([lam, 1 - lam], axis=1)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    return np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n


# --- user weights -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, message",
    [
        ([0.7, -0.3, 0.6], "non-negative"),
        ([float("nan"), 1.0], "finite"),
        ([0.5, 0.6], "sum to 1"),
        ([0.0, 0.0], "not all be zero"),
        ([], "K >= 1"),
    ],
)
def test_weights_off_the_simplex_are_rejected_with_the_reason(weights, message):
    with pytest.raises(ValueError, match=message):
        validate_weights(weights)
    with pytest.raises(ValueError, match=message):
        get_weighting("raco", weights)


def test_weights_are_normalised_only_on_request():
    assert validate_weights([1.0, 3.0], normalize=True).tolist() == [0.25, 0.75]


def test_unknown_weighting_and_bad_parameter_are_named():
    with pytest.raises(ValueError, match="unknown weighting 'cagrad2'"):
        get_weighting("cagrad2", [0.5, 0.5])
    with pytest.raises(ValueError, match="bad parameters for weighting 'mgda'"):
        get_weighting("mgda", [0.5, 0.5], c=0.4)
    with pytest.raises(ValueError, match="c must be"):
        get_weighting("cagrad", [0.5, 0.5], c=-1.0)
    with pytest.raises(ValueError, match="clip_threshold"):
        get_weighting("raco", [0.5, 0.5], clip_target="gradient_norm")


def test_gram_of_the_wrong_size_or_with_nan_is_rejected():
    raco = get_weighting("raco", [0.5, 0.5])
    with pytest.raises(ValueError, match="3 x 3 but 2 weights"):
        raco(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        raco(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))


# --- every weighting is a torchjd Weighting returning K coefficients ----------------------------------------


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_every_weighting_is_a_torchjd_weighting_with_k_outputs(name):
    from torchjd.aggregation import Weighting

    weighting = get_weighting(name, [0.2, 0.3, 0.5])
    assert isinstance(weighting, Weighting)
    alpha = weighting(random_gram(3).float())
    assert alpha.shape == (3,) and alpha.dtype == torch.float32 and torch.isfinite(alpha).all()


def test_weighted_sum_returns_the_user_weights():
    for seed in range(5):
        assert torch.equal(get_weighting("weighted_sum", [0.1, 0.6, 0.3])(random_gram(3, seed=seed)),
                           torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("name", ["pcgrad", "upgrad", "cagrad", "raco", "mgda"])
def test_single_objective_reduces_to_plain_gradient_descent(name):
    alpha = get_weighting(name, [1.0])(torch.tensor([[4.0]], dtype=torch.float64))
    if name in ("cagrad", "raco"):
        # K = 1: p = 1, alpha = 1 + c * 2 / 2 = 1 + c: the same direction, 1.4 times longer.
        assert alpha.tolist() == pytest.approx([1.4])
    else:
        assert alpha.tolist() == pytest.approx([1.0])


# --- hand-computed CAGrad / RACO cases -------------------------------------------------------------------------


def test_orthogonal_unit_gradients_equal_weights():
    # G = I, w = (1/2, 1/2): ||g0|| = 1/sqrt2, s = 0.4/sqrt2; Phi(l) = 1/2 + s sqrt(l^2 + (1-l)^2) is smallest at
    # l = 1/2, so p = w, ||g_p|| = 1/sqrt2 and alpha = w + 0.4 p = (0.7, 0.7). The clip min(p, w) changes nothing.
    G = torch.eye(2, dtype=torch.float64)
    for name in ("cagrad", "raco"):
        weighting = get_weighting(name, [0.5, 0.5])
        assert weighting(G).tolist() == pytest.approx([0.7, 0.7], abs=1e-12)
    raco = get_weighting("raco", [0.5, 0.5])
    raco(G)
    assert raco.last_stats.clip_active is False


def test_exactly_opposite_gradients():
    # g1 = e, g2 = -e. Equal weights: g0 = 0, nothing to correct, alpha = w (direction 0).
    G = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    assert get_weighting("raco", [0.5, 0.5])(G).tolist() == [0.5, 0.5]
    # w = (0.7, 0.3): g0 = 0.4 e, s = 0.16, b = G w = (0.4, -0.4);
    # Phi(l) = -0.4 + 0.8 l + 0.16 |2l - 1| is smallest at l = 0, p = (0, 1), ||g_p|| = 1:
    # CAGrad alpha = (0.7, 0.3 + 0.16) = (0.7, 0.46). RACO: p~ = (0, 0.3), ||g_p~|| = 0.3, same alpha.
    for name in ("cagrad", "raco"):
        assert get_weighting(name, [0.7, 0.3])(G).tolist() == pytest.approx([0.7, 0.46], abs=1e-12)


def test_aligned_gradients_give_a_longer_step_along_the_anchor():
    # g1 = g, g2 = 2g: no conflict. Every p gives g_p parallel to g0, so d = (1 + c) g0.
    G = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    gradients = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    for name in ("cagrad", "raco"):
        alpha = get_weighting(name, w)(G)
        assert (alpha @ gradients).item() == pytest.approx(1.4 * (w @ gradients).item(), abs=1e-12)
        # Phi(p) = 2.1 (p1 + 2 p2) is smallest at p = (1, 0): alpha = w + 0.4 * 1.5 * (1, 0) = (1.1, 0.5).
        assert alpha.tolist() == pytest.approx([1.1, 0.5], abs=1e-12)
    # Equal gradients make the dual flat; its tie goes to p = w, so alpha = (1 + c) w keeps the user's proportions.
    for name in ("cagrad", "raco"):
        alpha = get_weighting(name, [0.3, 0.7])(torch.ones(2, 2, dtype=torch.float64))
        assert alpha.tolist() == pytest.approx([0.42, 0.98], abs=1e-12)


def test_zero_gradient_objective_falls_back_to_the_user_weights():
    # g2 = 0: b = (1/2, 0), s = 0.2, Phi(l) = l/2 + 0.2 l, smallest at l = 0: p = (0, 1), g_p = 0 -> alpha = w.
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for name in ("cagrad", "raco"):
        assert get_weighting(name, [0.5, 0.5])(G).tolist() == [0.5, 0.5]
    # All gradients zero: alpha = w, never NaN.
    for name in sorted(WEIGHTINGS):
        alpha = get_weighting(name, [0.25, 0.75])(torch.zeros(2, 2, dtype=torch.float64))
        assert torch.isfinite(alpha).all()


def test_singular_gram_with_three_objectives():
    # g1 = e1, g2 = e2, g3 = e1 + e2 (rank 2). Brute force over the simplex agrees with the exact solver.
    J = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    G = J @ J.T
    w = np.array([0.2, 0.3, 0.5])
    solution = solve_cagrad_dual(G, w, 0.4)
    grid = simplex_points(3, 400)
    assert solution.value <= dual_objective(grid, G.numpy(), w, 0.4).min() + 1e-12
    alpha = get_weighting("raco", w)(G)
    assert torch.isfinite(alpha).all() and (alpha >= torch.tensor(w) - 1e-12).all()


def test_interior_zero_norm_point_of_three_objectives():
    # Three unit vectors at 120 degrees: (1/3, 1/3, 1/3) combines them to 0. With w uniform g0 = 0: alpha = w.
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    J = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert get_weighting("raco", [1 / 3] * 3)(J @ J.T).tolist() == pytest.approx([1 / 3] * 3, abs=1e-12)
    # With w = (0.6, 0.2, 0.2), the dual's best point is found exactly (checked against a fine grid).
    w = np.array([0.6, 0.2, 0.2])
    solution = solve_cagrad_dual(J @ J.T, w, 0.4)
    grid_best = dual_objective(simplex_points(3, 600), (J @ J.T).numpy(), w, 0.4).min()
    assert solution.value <= grid_best + 1e-12 and solution.value >= grid_best - 1e-4


# --- the dual solver against brute force ------------------------------------------------------------------------


@pytest.mark.parametrize("K", [2, 3])
def test_dual_solver_is_optimal_against_a_fine_grid(K):
    n = 20000 if K == 2 else 300
    grid = simplex_points(K, n)
    rng = np.random.default_rng(K)
    for seed in range(40):
        G = random_gram(K, dim=rng.integers(1, 6), seed=seed).numpy()
        w = rng.dirichlet(np.ones(K))
        c = rng.uniform(0.1, 0.9)
        solution = solve_cagrad_dual(G, w, c)
        assert solution.p.min() >= 0 and solution.p.sum() == pytest.approx(1.0)
        grid_values = dual_objective(grid, G, w, c)
        scale = 1.0 + abs(grid_values.min())
        assert solution.value <= grid_values.min() + 1e-12 * scale
        assert solution.value >= grid_values.min() - (1e-6 if K == 2 else 2e-3) * scale


@pytest.mark.parametrize("K", [4, 5, 8])
def test_dual_solver_for_many_objectives_beats_random_and_vertex_points(K):
    rng = np.random.default_rng(K)
    for seed in range(10):
        G = random_gram(K, dim=12, seed=seed).numpy()
        w = rng.dirichlet(np.ones(K))
        solution = solve_cagrad_dual(G, w, 0.4)
        samples = np.concatenate([np.eye(K), rng.dirichlet(np.ones(K) * 0.3, size=20000)])
        assert solution.value <= dual_objective(samples, G, w, 0.4).min() + 1e-12


def test_dual_solver_refuses_more_objectives_than_it_can_enumerate():
    K = MAX_OBJECTIVES_EXACT_DUAL + 1
    with pytest.raises(ValueError, match="at most"):
        solve_cagrad_dual(np.eye(K), np.ones(K) / K, 0.4)


# --- parity with torchjd ------------------------------------------------------------------------------------------


def test_uniform_weight_cagrad_matches_torchjd_cagrad():
    for K in range(2, 7):
        for seed in range(100):
            G = random_gram(K, seed=1000 * K + seed)
            ours = get_weighting("cagrad", [1 / K] * K, c=0.4)(G)
            reference = CAGradWeighting(c=0.4)(G)
            assert torch.allclose(ours, reference, atol=1e-4), (K, seed, ours, reference)


def test_uniform_weight_mgda_and_upgrad_match_torchjd():
    for seed in range(20):
        G = random_gram(3, seed=seed)
        assert torch.allclose(get_weighting("mgda", [1 / 3] * 3)(G), MGDAWeighting()(G), atol=1e-12)
        assert torch.allclose(get_weighting("upgrad", [1 / 3] * 3)(G), UPGradWeighting()(G), atol=1e-8)


def test_uniform_weight_pcgrad_is_torchjd_pcgrad_averaged():
    for seed in range(20):
        G = random_gram(3, seed=seed)
        torch.manual_seed(seed)
        ours = get_weighting("pcgrad", [1 / 3] * 3)(G)
        torch.manual_seed(seed)
        reference = PCGradWeighting()(G / 9.0) / 3.0
        assert torch.allclose(ours, reference, atol=1e-12)


@pytest.mark.parametrize("name", ["pcgrad", "upgrad"])
def test_projection_methods_return_the_user_weights_without_conflict(name):
    # Non-negative Gram: every pair of gradients agrees, nothing to project.
    J = torch.tensor([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.0, 0.5, 1.0]], dtype=torch.float64)
    alpha = get_weighting(name, [0.2, 0.3, 0.5])(J @ J.T)
    assert alpha.tolist() == pytest.approx([0.2, 0.3, 0.5], abs=1e-6)


# --- RACO's clip ------------------------------------------------------------------------------------------------


def test_clip_bounds_the_mixing_weights_by_the_user_weights_and_reports_it():
    active = 0
    for seed in range(200):
        G = random_gram(3, dim=4, seed=seed)
        w = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
        raco = get_weighting("raco", w)
        alpha = raco(G)
        clipped = torch.tensor(raco.last_stats.mixing_weights, dtype=torch.float64)
        dual = torch.tensor(raco.last_stats.dual_solution, dtype=torch.float64)
        assert torch.all(clipped <= w + 1e-15) and torch.allclose(clipped, torch.minimum(dual, w))
        assert raco.last_stats.clip_active == bool((clipped / clipped.sum() - dual).abs().max() > 1e-9)
        active += raco.last_stats.clip_active
        correction_sq = float(clipped @ G @ clipped)
        if correction_sq > 1e-12:
            expected = w + 0.4 * math.sqrt(float(w @ G @ w)) / math.sqrt(correction_sq) * clipped
            assert torch.allclose(alpha, expected, atol=1e-12)
    assert active > 0


def test_clip_off_is_weighted_cagrad():
    for seed in range(20):
        G = random_gram(3, seed=seed)
        unclipped = get_weighting("raco", [0.5, 0.3, 0.2], clip=False)(G)
        assert torch.equal(unclipped, get_weighting("cagrad", [0.5, 0.3, 0.2])(G))


def test_clip_never_slows_the_weighted_descent_with_two_objectives():
    # RACO Thm 3.2: rho = <g0, u> / ||g0|| with u the unit correction direction; clipping never lowers rho.
    rng = np.random.default_rng(0)
    strictly_better = 0
    for seed in range(300):
        G = random_gram(2, dim=3, seed=seed)
        w = torch.tensor(rng.dirichlet([1.0, 1.0]), dtype=torch.float64)
        dual = torch.tensor(solve_cagrad_dual(G, w, 0.4).p, dtype=torch.float64)
        clipped = torch.minimum(dual, w)

        def rho(p):
            norm = math.sqrt(float(p @ G @ p))
            return float(w @ G @ p) / norm if norm > 1e-12 else float("nan")

        if math.isnan(rho(dual)) or math.isnan(rho(clipped)):
            continue
        assert rho(clipped) >= rho(dual) - 1e-10
        strictly_better += rho(clipped) > rho(dual) + 1e-6
    assert strictly_better > 0


def test_gradient_norm_clip_scales_each_weighted_gradient_to_the_threshold():
    # ||g1|| = 3, ||g2|| = 1, orthogonal; w = (1/2, 1/2); lambda = 1: s = (1/2 * 1/1.5, 1/2) = (1/3, 1/2).
    # Clipped gradients h = (1/3 g1, 1/2 g2) have norms (1, 1/2). CAGrad on them with anchor h1 + h2.
    G = torch.tensor([[9.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    raco = get_weighting("raco", [0.5, 0.5], clip_target="gradient_norm", clip_threshold=1.0)
    alpha = raco(G)
    assert raco.last_stats.clip_active is True
    H = torch.diag(torch.tensor([1.0, 0.25], dtype=torch.float64))  # Gram of h
    a = get_weighting("cagrad", [0.5, 0.5])(4 * H)  # anchor (1/2)(2 h1) + (1/2)(2 h2) = h1 + h2
    expected = torch.tensor([2 / 3, 1.0], dtype=torch.float64) * a
    assert torch.allclose(alpha, expected, atol=1e-12)
    # A threshold above every weighted norm clips nothing.
    loose = get_weighting("raco", [0.5, 0.5], clip_target="gradient_norm", clip_threshold=100.0)
    loose(G)
    assert loose.last_stats.clip_active is False


# --- AMoPO's adaptive weights ------------------------------------------------------------------------------------


def test_amopo_sequence_draws_are_mean_plus_std_times_a_standard_normal():
    probabilities = torch.tensor([[0.9, 0.5, 0.2, 0.7], [0.4, 0.6, 0.0, 0.0], [0.3, 0.8, 0.1, 0.1]],
                                 dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    draws = amopo_sequence_draws(probabilities, mask, torch.Generator().manual_seed(3))
    eps = torch.randn(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # Row 0: tokens (0.5, 0.2, 0.7): mean 0.466667, Bessel std sqrt(((0.0333)^2 + 0.2667^2 + 0.2333^2) / 2) = 0.251661.
    # Row 1: one token: std 0, the draw is its probability. Row 2: no response token: 0.
    assert draws.tolist() == pytest.approx([1.4 / 3 + 0.2516611 * eps[0].item(), 0.4, 0.0], abs=1e-7)
    assert draws[0].item() == pytest.approx(
        probabilities[0, 1:].mean().item() + probabilities[0, 1:].std().item() * eps[0].item(), abs=1e-15
    )


def test_amopo_objective_scores_average_each_pairs_two_draws_over_the_labelled_pairs():
    # Pairs 0, 1, 2: draws of the a responses (1, 2, 3), of the b responses (10, 20, 30).
    draws = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], dtype=torch.float64)
    labels = torch.tensor([[1, 0, 0], [-1, 1, 0], [0, 1, 0]])
    sums, counts = amopo_objective_scores(draws, labels)
    assert sums.tolist() == [11.0 + 22.0, 22.0 + 33.0, 0.0] and counts.tolist() == [2.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="shape \\[2N\\]"):
        amopo_objective_scores(draws[:5], labels)


def test_amopo_alpha_is_a_softmax_tilted_by_the_user_weights():
    scores = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    # Equal weights: the paper's softmax, e / (e + 1 + 1/e) = 0.665241, 0.244728, 0.090031.
    assert amopo_alpha(torch.full((3,), 1 / 3), scores).tolist() == pytest.approx([0.665241, 0.244728, 0.090031],
                                                                                   abs=1e-6)
    assert torch.allclose(amopo_alpha(torch.full((3,), 1 / 3), scores), torch.softmax(scores, 0), atol=1e-15)
    # w = (0.2, 0.3, 0.5): w_k e^{a_k} = (0.543656, 0.3, 0.183940), sum 1.027596.
    tilted = amopo_alpha(torch.tensor([0.2, 0.3, 0.5]), scores)
    assert tilted.tolist() == pytest.approx([0.529057, 0.291943, 0.179000], abs=1e-6)
    # An objective without a labelled pair (NaN) gets 0; scores that are all NaN leave the user weights.
    partial = amopo_alpha(torch.tensor([0.5, 0.5]), torch.tensor([float("nan"), 2.0]))
    assert partial.tolist() == [0.0, 1.0]
    assert amopo_alpha(torch.tensor([0.4, 0.6]), torch.full((2,), float("nan"))).tolist() == pytest.approx([0.4, 0.6])
    # Shifting every score leaves alpha unchanged; large scores do not overflow.
    assert torch.allclose(amopo_alpha(torch.tensor([0.2, 0.3, 0.5]), scores + 1000.0), tilted, atol=1e-12)


def test_amopo_weighting_uses_the_scores_it_was_given_and_ignores_the_gram():
    weighting = get_weighting("amopo", [0.5, 0.5])
    gram = random_gram(2)
    assert weighting(gram).tolist() == [0.5, 0.5]  # no scores yet: the user weights
    weighting.set_scores(torch.tensor([0.3, -0.2]))
    expected = torch.softmax(torch.tensor([0.3, -0.2], dtype=torch.float64), 0)
    assert torch.allclose(weighting(gram), expected, atol=1e-15)
    assert torch.allclose(weighting(torch.eye(2, dtype=torch.float64)), expected, atol=1e-15)
    static = get_weighting("amopo", [0.7, 0.3], adaptive=False)
    static.set_scores(torch.tensor([5.0, -5.0]))
    assert static(gram).tolist() == [0.7, 0.3]  # the RACO authors' static AMoPO baseline
    with pytest.raises(ValueError, match="one score per objective"):
        weighting.set_scores(torch.zeros(3))


def test_mgda_with_a_zero_weight_is_mgda_on_the_other_objectives():
    gram = torch.tensor([[1.0, -0.3, 0.2], [-0.3, 2.0, 0.1], [0.2, 0.1, 0.5]], dtype=torch.float64)
    alpha = get_weighting("mgda", [0.5, 0.5, 0.0])(gram)
    two = get_weighting("mgda", [0.5, 0.5])(gram[:2, :2])
    assert alpha[2] == 0 and torch.allclose(alpha[:2], two, atol=1e-12)
    assert not torch.allclose(alpha[:2], torch.tensor([0.5, 0.5], dtype=torch.float64))  # not the weighted sum
