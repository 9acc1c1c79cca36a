"""Tests for paretoalign.synthetic.bandit: the KL-regularised optimum, the sources, a pinned seeded simulation."""

from __future__ import annotations

import math

import pytest
import torch

from paretoalign.synthetic.bandit import (
    TransferBandit,
    TransferBanditConfig,
    kl_regularised_value,
    make_transfer_bandit,
    normalised_value,
    optimal_policy_logits,
    optimal_value,
    simulate_transfer,
)
from paretoalign.tpo import SELF_SOURCE


def test_kl_regularised_optimum_on_a_two_response_bandit():
    bandit = TransferBandit(
        theta_ref=torch.zeros(1, 2, dtype=torch.float64),
        true_reward=torch.tensor([[1.0, 0.0]], dtype=torch.float64),
        sources={},
        beta=1.0,
    )
    e = math.e
    assert torch.softmax(optimal_policy_logits(bandit), -1)[0, 0].item() == pytest.approx(e / (e + 1), abs=1e-12)
    assert optimal_value(bandit) == pytest.approx(math.log((e + 1) / 2), abs=1e-12)  # beta log Z
    optimum = optimal_policy_logits(bandit)
    assert kl_regularised_value(optimum, bandit) == pytest.approx(optimal_value(bandit), abs=1e-12)
    assert kl_regularised_value(bandit.theta_ref, bandit) == pytest.approx(0.5, abs=1e-12)  # E r*, no KL
    for shift in (-0.3, 0.2, 1.0):
        assert kl_regularised_value(optimum + torch.tensor([[shift, 0.0]]), bandit) < optimal_value(bandit)
    assert normalised_value(bandit.theta_ref, bandit) == 0.0
    assert normalised_value(optimum, bandit) == pytest.approx(1.0, abs=1e-12)


def test_bandit_sources_sit_at_the_intended_distances():
    config = TransferBanditConfig(num_prompts=3, num_responses=10, seed=1)
    bandit = make_transfer_bandit(config)
    assert torch.allclose(bandit.true_reward.min(-1).values, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(bandit.true_reward.max(-1).values, torch.full((3,), 4.0, dtype=torch.float64))

    def correlation(table):
        return float(torch.corrcoef(torch.stack([table.flatten(), bandit.true_reward.flatten()]))[0, 1])

    assert correlation(bandit.sources["good"]) > 0.9
    assert correlation(bandit.sources["adversarial"]) < -0.9
    assert abs(correlation(bandit.sources["biased"])) < correlation(bandit.sources["good"])


def test_pinned_seeded_simulation():
    config = TransferBanditConfig(num_prompts=2, num_responses=6, n=4, m=8, num_replaced=2, refresh_prompts=5,
                                  prompts_per_iteration=10, label_budget=300, seed=0)
    alone = simulate_transfer(config, (), run_seed=0)
    assert alone["labels_to_target"] == 80 and alone["picks"] == {SELF_SOURCE: 300}
    assert alone["final_value"] == pytest.approx(0.288758, abs=1e-6)
    transfer = simulate_transfer(config, ("good", "adversarial"), run_seed=0)
    assert transfer["labels_to_target"] == 40
    assert transfer["picks"] == {"good": 27, "adversarial": 7, SELF_SOURCE: 266}
    assert transfer["wins"]["good"] == 9.0 and transfer["wins"]["adversarial"] == 0.0
    assert transfer["final_value"] == pytest.approx(0.899447, abs=1e-6)
