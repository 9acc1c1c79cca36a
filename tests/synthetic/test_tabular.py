"""Tests for paretoalign.synthetic.tabular: exact losses, convexity, the true front, criticality, descent, RACO's clip."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from paretoalign.losses import preference_losses
from paretoalign.pareto import pareto_criticality
from paretoalign.synthetic.tabular import (
    WEIGHTING_VARIANTS,
    SyntheticConfig,
    TabularProblem,
    conflicting_utilities,
    descend,
    expected_loss_gradients,
    expected_losses,
    make_problem,
    make_weighting,
    preference_angle_degrees,
    sample_preference_pairs,
    sampled_losses,
    smoothness_constant,
    solve_weighted_problems,
)
from paretoalign.weighting import get_weighting

BETA = 0.5


def tiny_problem(angle: float = 120.0, num_objectives: int = 2, seed: int = 0) -> TabularProblem:
    """2 prompts x 3 responses."""
    return make_problem(
        SyntheticConfig(num_prompts=2, num_responses=3, num_objectives=num_objectives, angle_degrees=angle, beta=BETA, seed=seed)
    )


def one_prompt_problem(utility_gaps: list[float], beta: float = BETA) -> TabularProblem:
    """1 prompt, 2 responses; objective k's utilities are (gap_k, 0), so ``P_k(y_0 > y_1) = sigmoid(gap_k)``."""
    utilities = torch.tensor([[[gap, 0.0]] for gap in utility_gaps], dtype=torch.float64)
    return TabularProblem(theta_ref=torch.tensor([[0.3, -0.2]], dtype=torch.float64), utilities=utilities, beta=beta)


def random_theta(problem: TabularProblem, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return problem.theta_ref + torch.randn(problem.theta_ref.shape, generator=generator, dtype=torch.float64)


def test_conflicting_utilities_meet_at_the_requested_angle():
    for angle in (0.0, 45.0, 120.0, 180.0):
        utilities = conflicting_utilities(5, 4, 3, angle, scale=2.0)
        first, middle, last = utilities.reshape(3, -1)
        cosine = float(first @ last / (first.norm() * last.norm()))
        assert cosine == pytest.approx(math.cos(math.radians(angle)), abs=1e-12)
        half = float(first @ middle / (first.norm() * middle.norm()))
        assert half == pytest.approx(math.cos(math.radians(angle / 2)), abs=1e-12)
        assert torch.allclose(utilities.mean(dim=-1), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)
        assert float(utilities.pow(2).mean(dim=(1, 2)).sqrt()[0]) == pytest.approx(2.0)


def test_expected_loss_equals_explicit_enumeration_through_preference_losses():
    """Sum over prompts, ordered pairs and both label outcomes, each pair's loss from ``preference_losses``."""
    problem = tiny_problem()
    theta = random_theta(problem)
    num_prompts, num_responses = theta.shape
    total = torch.zeros(2, dtype=torch.float64)
    for x, y1, y2 in itertools.product(range(num_prompts), range(num_responses), range(num_responses)):
        if y1 == y2:
            continue
        delta = (theta[x, y1] - problem.theta_ref[x, y1]) - (theta[x, y2] - problem.theta_ref[x, y2])
        for k in range(2):
            p_first_wins = torch.sigmoid(problem.utilities[k, x, y1] - problem.utilities[k, x, y2])
            for label, probability in ((1, p_first_wins), (-1, 1.0 - p_first_wins)):
                labels = torch.zeros(1, 2, dtype=torch.long)
                labels[0, k] = label
                total[k] += probability * preference_losses(delta.reshape(1), labels, BETA)[k]
    expected = total / (num_prompts * num_responses * (num_responses - 1))
    assert torch.allclose(expected_losses(theta, problem), expected, rtol=0, atol=1e-14)


def test_reference_policy_has_loss_log_two_for_every_objective():
    problem = tiny_problem(num_objectives=3)
    assert torch.allclose(expected_losses(problem.theta_ref, problem), torch.full((3,), math.log(2.0), dtype=torch.float64))


def test_sampled_losses_are_unbiased_monte_carlo_estimates():
    problem = tiny_problem()
    theta = random_theta(problem)
    generator = torch.Generator().manual_seed(3)
    pairs = sample_preference_pairs(problem, 100_000, generator)
    prompts, first, second, labels = pairs
    assert bool((first != second).all())
    estimate = sampled_losses(theta, problem, pairs)
    per_pair = torch.stack(
        [sampled_losses(theta, problem, (prompts[i::50], first[i::50], second[i::50], labels[i::50])) for i in range(50)]
    )
    standard_error = per_pair.std(dim=0) / math.sqrt(50)
    assert bool(((estimate - expected_losses(theta, problem)).abs() < 4 * standard_error).all())


def test_analytic_gradients_match_autograd():
    problem = tiny_problem(num_objectives=3)
    theta = random_theta(problem).requires_grad_(True)
    losses = expected_losses(theta, problem)
    autograd = torch.stack([torch.autograd.grad(loss, theta, retain_graph=True)[0] for loss in losses])
    assert torch.allclose(expected_loss_gradients(theta.detach(), problem), autograd, rtol=0, atol=1e-15)


def test_losses_are_convex_hessian_psd_and_bounded_by_the_smoothness_constant():
    problem = tiny_problem(num_objectives=3)
    ell = smoothness_constant(problem)
    for seed in range(3):
        theta = random_theta(problem, seed)
        for k in range(3):
            hessian = torch.autograd.functional.hessian(lambda t: expected_losses(t, problem)[k], theta).reshape(6, 6)
            eigenvalues = torch.linalg.eigvalsh(hessian)
            assert float(eigenvalues.min()) >= -1e-15
            assert float(eigenvalues.max()) <= ell * (1 + 1e-12)
            assert torch.allclose(hessian @ torch.tensor([1.0, 1, 1, 0, 0, 0], dtype=torch.float64), torch.zeros(6, dtype=torch.float64), atol=1e-15)


def test_losses_satisfy_the_midpoint_inequality():
    problem = tiny_problem()
    for seed in range(20):
        a, b = random_theta(problem, 2 * seed) * 3, random_theta(problem, 2 * seed + 1) * 3
        midpoint = expected_losses((a + b) / 2, problem)
        assert bool((midpoint <= (expected_losses(a, problem) + expected_losses(b, problem)) / 2 + 1e-15).all())


def test_front_solver_matches_the_one_prompt_two_response_closed_form():
    r"""One prompt, responses (y_0, y_1), ``P_k = P_k(y_0 > y_1)``. Both ordered pairs give the same term, so
    ``sum_k lambda_k L_k = Pbar l(z) + (1 - Pbar) l(-z)`` with ``z = beta delta``, ``Pbar = sum_k lambda_k P_k``:
    a logistic loss whose derivative ``sigmoid(z) - Pbar`` vanishes at ``z* = logit(Pbar)``. There
    ``sigmoid(z*) = Pbar``, so ``L_k = -P_k log Pbar - (1 - P_k) log(1 - Pbar)`` (the cross-entropy of P_k to Pbar)."""
    problem = one_prompt_problem([1.5, -0.7])
    p = torch.sigmoid(torch.tensor([1.5, -0.7], dtype=torch.float64))
    lambdas = torch.stack([torch.linspace(0, 1, 21, dtype=torch.float64), 1 - torch.linspace(0, 1, 21, dtype=torch.float64)], 1)
    optimum = solve_weighted_problems(problem, lambdas)
    mixture = lambdas @ p
    delta = (optimum.thetas - problem.theta_ref)[:, 0, 0] - (optimum.thetas - problem.theta_ref)[:, 0, 1]
    assert torch.allclose(BETA * delta, torch.log(mixture / (1 - mixture)), atol=1e-10)
    closed_form = -(p[None] * torch.log(mixture[:, None]) + (1 - p[None]) * torch.log(1 - mixture[:, None]))
    assert torch.allclose(optimum.losses, closed_form, rtol=0, atol=1e-13)
    assert float(optimum.gradient_norms.max()) < 1e-9


def test_front_vertices_are_each_objectives_own_optimum():
    """``lambda = e_k`` gives ``r = u_k / beta`` per prompt (up to a constant) and ``L_k`` = mean binary entropy."""
    problem = tiny_problem(num_objectives=3)
    optimum = solve_weighted_problems(problem, torch.eye(3, dtype=torch.float64))
    assert float(optimum.gradient_norms.max()) < 1e-9
    for k in range(3):
        r = optimum.thetas[k] - problem.theta_ref
        target = problem.utilities[k] / BETA
        assert torch.allclose(r - r.mean(-1, keepdim=True), target - target.mean(-1, keepdim=True), atol=1e-9)
        p = problem.preferences[k]
        entropy = -(p * p.log() + (1 - p) * (1 - p).log()) * (1 - torch.eye(3, dtype=torch.float64))
        assert float(optimum.losses[k, k]) == pytest.approx(float(entropy.sum() / problem.num_pairs), abs=1e-14)


def test_criticality_on_hand_cases():
    """At ``theta_ref`` with one prompt and two responses ``g_k = beta (1/2 - P_k) (1, -1)``."""
    opposite = one_prompt_problem([math.log(4.0), -math.log(7.0 / 3.0)])  # P = (0.8, 0.3)
    gradients = expected_loss_gradients(opposite.theta_ref, opposite).flatten(1)
    assert torch.allclose(gradients, BETA * torch.tensor([[-0.3, 0.3], [0.2, -0.2]], dtype=torch.float64), atol=1e-15)
    assert pareto_criticality(gradients @ gradients.T) == pytest.approx(0.0, abs=1e-16)
    aligned = one_prompt_problem([math.log(4.0), math.log(9.0)])  # P = (0.8, 0.9): the shorter gradient is the min-norm point
    gradients = expected_loss_gradients(aligned.theta_ref, aligned).flatten(1)
    assert pareto_criticality(gradients @ gradients.T) == pytest.approx(2 * (0.3 * BETA) ** 2, rel=1e-12)
    step = 0.5 / smoothness_constant(opposite)
    result = descend(opposite, get_weighting("mgda", [0.5, 0.5]), [0.5, 0.5], step, 5, eps=1e-6)
    assert result.steps_to_eps == 0


def test_weighted_sum_descent_converges_to_the_weighted_sum_optimum():
    problem = tiny_problem(num_objectives=3)
    w = [0.2, 0.5, 0.3]
    optimum = solve_weighted_problems(problem, torch.tensor([w], dtype=torch.float64))
    step = 0.5 / smoothness_constant(problem)
    result = descend(problem, get_weighting("weighted_sum", w), w, step, 400, eps=1e-8)
    assert torch.allclose(result.losses, optimum.losses[0], rtol=0, atol=1e-12)
    assert result.steps_to_eps is not None and result.steps_to_eps < 400


def test_preference_angle():
    assert preference_angle_degrees([1.0, 1.0], [0.6, 0.8], [2 / 3, 1 / 3]) == pytest.approx(0.0, abs=1e-6)
    assert preference_angle_degrees([1.0, 1.0], [1.0, 0.5], [1.0, 0.0]) == pytest.approx(90.0)
    assert math.isnan(preference_angle_degrees([1.0, 1.0], [1.0, 1.0], [0.5, 0.5]))


def clip_runs(w: list[float], c: float, angle: float = 120.0, steps: int = 60, seed: int = 0):
    problem = make_problem(SyntheticConfig(angle_degrees=angle, seed=seed))
    minimum = float(torch.tensor(w, dtype=torch.float64) @ solve_weighted_problems(problem, [w]).losses[0])
    step = 0.5 / smoothness_constant(problem)
    return [
        descend(problem, get_weighting("raco", w, c=c, clip=clip), w, step, steps, eps=1e-6)
        for clip in (True, False)
    ], minimum


def test_raco_clip_speeds_up_the_weighted_loss_at_equal_weights():
    """K = 2, w = (1/2, 1/2), angle 120, c = 0.8 (measured): the clip changes the correction on the first steps and
    reaches L_w - min L_w < 1e-6 in 5 steps instead of 20; its weighted loss is never above the unclipped one."""
    (clipped, unclipped), minimum = clip_runs([0.5, 0.5], c=0.8)
    assert clipped.clip_active_steps > 0
    assert bool((clipped.weighted_losses <= unclipped.weighted_losses + 1e-15).all())
    steps_clipped = int(torch.nonzero(clipped.weighted_losses - minimum < 1e-6)[0, 0])
    steps_unclipped = int(torch.nonzero(unclipped.weighted_losses - minimum < 1e-6)[0, 0])
    assert (steps_clipped, steps_unclipped) == (5, 20)


def test_raco_clip_changes_nothing_when_the_dual_solution_is_a_vertex():
    """K = 2, w = (0.8, 0.2), angle 120, c = 0.4 (measured): p* is a vertex, min(p*, w) only rescales it, so the
    clipped and unclipped trajectories coincide."""
    (clipped, unclipped), _ = clip_runs([0.8, 0.2], c=0.4)
    assert clipped.clip_active_steps == 0
    assert torch.allclose(clipped.weighted_losses, unclipped.weighted_losses, rtol=0, atol=1e-15)


def steps_to_gap(result, minimum: float, tolerance: float = 1e-6) -> int | None:
    below = torch.nonzero(result.weighted_losses - minimum < tolerance)
    return int(below[0, 0]) if len(below) else None


def test_raco_clip_never_needs_more_steps_to_the_weighted_optimum_on_other_seeds():
    """K = 2, seeds 1-3, angles 30 and 120, c in {0.4, 0.8}, w in {(1/2, 1/2), (0.8, 0.2)} (measured): the clipped run
    reaches ``L_w - min L_w < 1e-6`` in at most as many steps as the unclipped one, and strictly fewer somewhere."""
    strictly_faster = 0
    for seed, angle, c, w in itertools.product((1, 2, 3), (30.0, 120.0), (0.4, 0.8), ([0.5, 0.5], [0.8, 0.2])):
        (clipped, unclipped), minimum = clip_runs(w, c=c, angle=angle, steps=80, seed=seed)
        steps_clipped, steps_unclipped = steps_to_gap(clipped, minimum), steps_to_gap(unclipped, minimum)
        assert steps_clipped is not None and steps_unclipped is not None
        assert steps_clipped <= steps_unclipped, (seed, angle, c, w)
        strictly_faster += steps_clipped < steps_unclipped
    assert strictly_faster >= 6


def test_raco_clip_can_leave_a_slightly_larger_weighted_loss_later_in_a_run():
    """Theorem 3.2 compares guaranteed per-step decreases, not trajectories. Seed 2, angle 30, c = 0.4, w = (0.8, 0.2)
    (measured): the clip acts on the first step only; the clipped ``L_w`` is lower up to step 15, higher from step 16
    on (gap after 25 steps 9.83e-6 vs 9.79e-6), and both runs reach gap < 1e-6 at step 36."""
    (clipped, unclipped), minimum = clip_runs([0.8, 0.2], c=0.4, angle=30.0, steps=60, seed=2)
    assert clipped.clip_active_steps == 1
    assert bool((clipped.weighted_losses[1:16] < unclipped.weighted_losses[1:16]).all())
    assert bool((clipped.weighted_losses[16:40] > unclipped.weighted_losses[16:40]).all())
    assert float(clipped.weighted_losses[25] - minimum) == pytest.approx(9.83e-6, rel=1e-3)
    assert float(unclipped.weighted_losses[25] - minimum) == pytest.approx(9.79e-6, rel=1e-3)
    assert steps_to_gap(clipped, minimum) == steps_to_gap(unclipped, minimum) == 36


def test_every_weighting_variant_builds():
    for label in WEIGHTING_VARIANTS:
        assert make_weighting(label, [0.5, 0.5], c=0.4, clip_threshold=1e-3) is not None
    with pytest.raises(ValueError):
        make_weighting("nope", [0.5, 0.5], c=0.4, clip_threshold=1e-3)
