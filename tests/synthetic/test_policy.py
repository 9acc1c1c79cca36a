"""Tests for paretoalign.synthetic.policy: the conflict angle, the exact expected loss against Monte Carlo, full-batch
descent, the reference front, the loss scales and a seeded, reproducible benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paretoalign.losses import preference_losses
from paretoalign.synthetic.policy import (
    REFERENCE_LABEL,
    PolicyBenchmarkConfig,
    PolicyParameters,
    format_policy_tables,
    make_policy_problem,
    policy_benchmark,
    policy_expected_losses,
    policy_logits,
    solve_reference_front,
    train_policy,
)
from paretoalign.synthetic.tabular import make_weighting, sample_preference_pairs

TINY = {"num_prompts": 3, "num_features": 4, "hidden_size": 2, "num_responses": 3}


def perturbed(parameters: PolicyParameters, seed: int = 1, size: float = 0.5) -> PolicyParameters:
    generator = torch.Generator().manual_seed(seed)
    return PolicyParameters(
        *(tensor + size * torch.randn(tensor.shape, generator=generator, dtype=torch.float64) for tensor in parameters)
    )


@pytest.mark.parametrize("num_objectives", [2, 3])
@pytest.mark.parametrize("angle", [30.0, 90.0, 120.0, 170.0])
def test_utilities_meet_at_the_requested_angle(num_objectives, angle):
    problem = make_policy_problem(PolicyBenchmarkConfig(num_objectives=num_objectives, angle_degrees=angle, seed=3))
    utilities = problem.table.utilities
    centred = (utilities - utilities.mean(dim=-1, keepdim=True)).reshape(num_objectives, -1)
    first, last = centred[0], centred[-1]
    assert float(first @ last / (first.norm() * last.norm())) == pytest.approx(math.cos(math.radians(angle)), abs=1e-6)
    if num_objectives == 3:
        middle = centred[1]
        half = float(first @ middle / (first.norm() * middle.norm()))
        assert half == pytest.approx(math.cos(math.radians(angle / 2)), abs=1e-6)


def test_loss_scales_multiply_objective_one_only():
    problem = make_policy_problem(PolicyBenchmarkConfig(num_objectives=3, scale_ratio=10.0))
    assert problem.loss_scales.tolist() == [10.0, 1.0, 1.0]
    same_instance = make_policy_problem(PolicyBenchmarkConfig(num_objectives=3, scale_ratio=1.0, batch_size=4))
    assert torch.equal(problem.table.utilities, same_instance.table.utilities)
    assert torch.equal(problem.table.theta_ref, same_instance.table.theta_ref)


def test_every_loss_is_log_two_at_the_reference_policy():
    problem = make_policy_problem(PolicyBenchmarkConfig(num_objectives=3, **TINY))
    losses = policy_expected_losses(problem.reference, problem)
    assert torch.allclose(losses, torch.full((3,), math.log(2.0), dtype=torch.float64), atol=1e-15)


def test_exact_expected_loss_matches_a_monte_carlo_estimate():
    problem = make_policy_problem(PolicyBenchmarkConfig(num_objectives=2, beta=1.0, **TINY))
    parameters = perturbed(problem.reference, size=1.0)
    exact = policy_expected_losses(parameters, problem)
    logits = policy_logits(parameters, problem.features)
    log_ratio = logits - problem.table.theta_ref
    prompts, first, second, labels = sample_preference_pairs(problem.table, 40_000, torch.Generator().manual_seed(5))
    delta = log_ratio[prompts, first] - log_ratio[prompts, second]
    per_pair = -torch.nn.functional.logsigmoid(labels * delta[:, None])
    assert torch.allclose(per_pair.mean(0), preference_losses(delta, labels, 1.0))
    mean, standard_error = per_pair.mean(0), per_pair.std(0) / math.sqrt(len(per_pair))
    assert (standard_error > 0).all()
    assert ((mean - exact).abs() < 3 * standard_error).all(), (mean, exact, standard_error)


def test_batched_losses_equal_one_model_at_a_time():
    problem = make_policy_problem(PolicyBenchmarkConfig(num_objectives=2, **TINY))
    models = [perturbed(problem.reference, seed=seed) for seed in (1, 2, 3)]
    stacked = PolicyParameters(*(torch.stack(tensors) for tensors in zip(*models)))
    batched = policy_expected_losses(stacked, problem)
    assert batched.shape == (3, 2)
    for row, model in zip(batched, models):
        assert torch.allclose(row, policy_expected_losses(model, problem), atol=1e-14)


def test_full_batch_weighted_sum_run_decreases_the_weighted_objective():
    config = PolicyBenchmarkConfig(num_objectives=2, batch_size=4096, steps=60, learning_rate=0.05, seed=1)
    problem = make_policy_problem(config)
    weights = np.array([0.3, 0.7])
    start = float(torch.as_tensor(weights) @ policy_expected_losses(problem.reference, problem))
    parameters = train_policy(problem, make_weighting("weighted_sum", weights, 0.4, 1.0), config,
                              torch.Generator().manual_seed(0))
    end = float(torch.as_tensor(weights) @ policy_expected_losses(parameters, problem))
    assert start == pytest.approx(math.log(2.0), abs=1e-15)
    assert end < start - 0.02


def test_reference_front_keeps_the_best_restart_and_bounds_the_user_weights():
    config = PolicyBenchmarkConfig(num_objectives=2, front_divisions=4, front_restarts=2, front_steps=300)
    problem = make_policy_problem(config)
    user_weights = config.user_weights()
    front = solve_reference_front(problem, config, user_weights)
    assert front.weights.shape == (5 + len(user_weights), 2)
    for w in user_weights:
        solved = float(torch.as_tensor(w) @ front.losses_at(w))
        assert front.minimum_weighted_loss(w) <= solved + 1e-15
        assert solved < math.log(2.0)
    single_restart = solve_reference_front(
        problem, PolicyBenchmarkConfig(num_objectives=2, front_divisions=4, front_restarts=1, front_steps=300)
    )
    weighted = (front.weights[:5] * front.losses[:5]).sum(1)
    assert (weighted <= (single_restart.weights * single_restart.losses).sum(1) + 1e-12).all()
    assert front.hypervolume > 0
    with pytest.raises(ValueError, match=r"not solved at weights \[0.1, 0.9\]"):
        front.losses_at([0.1, 0.9])


def test_user_weights_have_no_zero():
    expected = np.array([[5, 1], [4, 2], [3, 3], [2, 4], [1, 5]]) / 6
    np.testing.assert_allclose(PolicyBenchmarkConfig(num_objectives=2).user_weights(), expected, atol=1e-15)
    assert len(PolicyBenchmarkConfig(num_objectives=3).user_weights()) == 6
    with pytest.raises(ValueError, match="weight_divisions must be at least K = 3"):
        PolicyBenchmarkConfig(num_objectives=3, weight_divisions=2).user_weights()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="optimizer"):
        PolicyBenchmarkConfig(optimizer="lion")
    with pytest.raises(ValueError, match="scale_ratio"):
        PolicyBenchmarkConfig(scale_ratio=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        PolicyBenchmarkConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"weightings: unknown \['amopo'\]"):
        PolicyBenchmarkConfig(weightings=("amopo",))


def tiny_benchmark() -> list[dict]:
    config = PolicyBenchmarkConfig(
        steps=15, front_steps=60, front_restarts=2, front_divisions=4, weightings=("weighted_sum", "raco"), **TINY
    )
    return policy_benchmark(config, seeds=[0, 1], objectives=[2], batch_sizes=[4], scale_ratios=[1.0, 10.0])


def test_benchmark_is_seeded_and_reproducible():
    first, second = tiny_benchmark(), tiny_benchmark()
    assert first == second
    assert [(r["weighting"], r["batch_size"], r["scale_ratio"]) for r in first] == [
        (REFERENCE_LABEL, None, None),
        ("weighted_sum", 4, 1.0), ("raco", 4, 1.0),
        ("weighted_sum", 4, 10.0), ("raco", 4, 10.0),
    ]
    for record in first:
        assert record["num_runs"] == 2 * 5
        assert [entry["seed"] for entry in record["per_seed"]] == [0, 1]
        fractions = [entry["hypervolume_fraction"] for entry in record["per_seed"]]
        assert record["hypervolume_fraction_mean"] == pytest.approx(np.mean(fractions))
        assert record["hypervolume_fraction_std"] == pytest.approx(np.std(fractions, ddof=1))
        assert record["worse_share"] == record["worse_runs"] / record["num_runs"]
    reference = first[0]
    assert all(run["weighted_loss_gap"] >= 0.0 for entry in reference["per_seed"] for run in entry["runs"])
    seeds_differ = first[1]["per_seed"][0]["runs"][0]["losses"] != first[1]["per_seed"][1]["runs"][0]["losses"]
    assert seeds_differ
    table = format_policy_tables(first)
    assert table.startswith("K = 2 (2 seeds;")
    assert "| full | - | reference front |" in table and "| 4 | 10 | raco |" in table
