"""Per-objective preference losses and implicit-reward metrics on exact small cases."""

from __future__ import annotations

import math

import pytest
import torch

from paretoalign.losses import preference_losses, preference_metrics

DELTA = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)


def trl_dpo_loss(delta: torch.Tensor, beta: float, loss_type: str) -> torch.Tensor:
    """TRL 1.16 ``DPOTrainer._compute_loss`` (trl/trainer/dpo_trainer.py) for ``delta_score = chosen - rejected``
    log-ratios, f_divergence ``reverse_kl``, label_smoothing 0, reduced with ``.mean()``:
    sigmoid ``-logsigmoid(beta * delta)``, hinge ``relu(1 - beta * delta)``, ipo ``(delta - 1/(2 beta))^2`` (with the
    per-token averaged log-ratios as ``delta``)."""
    if loss_type == "sigmoid":
        return -torch.nn.functional.logsigmoid(beta * delta).mean()
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta).mean()
    return ((delta - 1 / (2 * beta)) ** 2).mean()


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
@pytest.mark.parametrize("beta", [0.1, 0.2, 1.0])
def test_single_objective_equals_trl_dpo_loss(loss_type, beta):
    labels = torch.ones(4, 1, dtype=torch.long)
    ours = preference_losses(DELTA, labels, beta, loss_type)
    assert ours.shape == (1,)
    assert ours[0].item() == pytest.approx(trl_dpo_loss(DELTA, beta, loss_type).item(), abs=1e-12)


def test_pinned_sigmoid_values():
    # beta = 0.2: -log sigmoid(0.1) = 0.644397, -log sigmoid(-0.2) = 0.798139, -log sigmoid(0.4) = 0.513015,
    # -log sigmoid(0) = log 2 = 0.693147; mean = 0.662175.
    loss = preference_losses(DELTA, torch.ones(4, 1, dtype=torch.long), 0.2, "sigmoid")
    assert loss.item() == pytest.approx(0.6621745, abs=1e-6)


def test_label_signs_and_missing_labels():
    # Objective 0: pairs 0 (a preferred) and 1 (b preferred); objective 1: pair 2 (b preferred) only.
    labels = torch.tensor([[1, 0], [-1, 0], [0, -1], [0, 0]])
    beta = 0.5
    losses = preference_losses(DELTA, labels, beta, "sigmoid")
    expected_0 = (-math.log(1 / (1 + math.exp(-0.25))) - math.log(1 / (1 + math.exp(-0.5)))) / 2
    expected_1 = -math.log(1 / (1 + math.exp(1.0)))
    assert losses.tolist() == pytest.approx([expected_0, expected_1], abs=1e-12)


def test_rows_with_label_zero_do_not_contribute():
    labels = torch.tensor([[1], [0], [0], [0]])
    delta = DELTA.clone().requires_grad_(True)
    loss = preference_losses(delta, labels, 0.2, "hinge")
    loss.sum().backward()
    assert delta.grad[1:].abs().sum().item() == 0.0
    # Changing an unlabelled pair's delta leaves the loss unchanged.
    changed = DELTA.clone()
    changed[1:] = torch.tensor([100.0, -100.0, 7.0], dtype=torch.float64)
    assert torch.equal(preference_losses(changed, labels, 0.2, "hinge"), loss.detach())


def test_objective_without_labels_has_zero_loss_and_zero_gradient():
    labels = torch.tensor([[1, 0], [-1, 0], [1, 0], [1, 0]])
    for loss_type in ("sigmoid", "ipo", "hinge"):
        delta = DELTA.clone().requires_grad_(True)
        losses = preference_losses(delta, labels, 0.2, loss_type)
        assert losses[1].item() == 0.0
        (gradient,) = torch.autograd.grad(losses[1], delta)
        assert torch.equal(gradient, torch.zeros_like(gradient))


def test_gradient_of_sigmoid_loss_matches_closed_form():
    # d/d delta of -log sigmoid(beta s delta) = -beta s sigmoid(-beta s delta), averaged over labelled pairs.
    labels = torch.tensor([[1], [-1], [1], [-1]])
    delta = DELTA.clone().requires_grad_(True)
    preference_losses(delta, labels, 0.2, "sigmoid")[0].backward()
    signs = labels[:, 0].double()
    expected = -0.2 * signs * torch.sigmoid(-0.2 * signs * DELTA) / 4
    assert torch.allclose(delta.grad, expected, atol=1e-15)


def test_included_ties_add_the_zero_margin_loss_and_count_in_the_mean():
    # The RACO authors' mean over all N = 4 pairs: objective 0 labels pairs 0 and 1, objective 1 pair 2 only.
    labels = torch.tensor([[1, 0], [-1, 0], [0, -1], [0, 0]])
    beta = 0.5
    losses = preference_losses(DELTA, labels, beta, "sigmoid", tie_handling="include")
    # -log sigmoid(0.25) = 0.575939, -log sigmoid(0.5) = 0.474077, -log sigmoid(-1) = 1.313262, a tie log 2 = 0.693147.
    expected_0 = (-math.log(1 / (1 + math.exp(-0.25))) - math.log(1 / (1 + math.exp(-0.5))) + 2 * math.log(2)) / 4
    expected_1 = (-math.log(1 / (1 + math.exp(1.0))) + 3 * math.log(2)) / 4
    assert losses.tolist() == pytest.approx([expected_0, expected_1], abs=1e-12)
    assert losses.tolist() == pytest.approx([0.6090774, 0.8481758], abs=1e-6)
    # IPO: a tie adds (0 - 1 / (2 beta))^2 = 1; hinge: a tie adds relu(1 - 0) = 1.
    ipo = preference_losses(DELTA, labels, beta, "ipo", tie_handling="include")
    assert ipo[1].item() == pytest.approx(((-1.0 / beta - 1.0 / (2 * beta)) ** 2 + 3 * 1.0) / 4, abs=1e-12)
    hinge = preference_losses(DELTA, labels, beta, "hinge", tie_handling="include")
    assert hinge[1].item() == pytest.approx((max(0.0, 1 + 1.0) + 3 * 1.0) / 4, abs=1e-12)


def test_included_ties_carry_no_gradient_and_scale_the_labelled_ones_by_one_over_n():
    labels = torch.tensor([[1], [0], [-1], [0]])
    delta = DELTA.clone().requires_grad_(True)
    preference_losses(delta, labels, 0.2, "sigmoid", tie_handling="include")[0].backward()
    signs = labels[:, 0].double()
    assert torch.allclose(delta.grad, -0.2 * signs * torch.sigmoid(-0.2 * signs * DELTA) / 4, atol=1e-15)
    assert delta.grad[1].item() == 0.0 and delta.grad[3].item() == 0.0
    # Without a labelled pair the objective's loss is the zero-margin loss, with a zero gradient.
    unlabelled = preference_losses(DELTA, torch.zeros(4, 1, dtype=torch.long), 0.2, "sigmoid", tie_handling="include")
    assert unlabelled.item() == pytest.approx(math.log(2), abs=1e-15)


def test_excluded_and_included_ties_agree_when_every_pair_is_labelled():
    labels = torch.tensor([[1, -1], [-1, 1], [1, 1], [-1, -1]])
    for loss_type in ("sigmoid", "ipo", "hinge"):
        assert torch.equal(preference_losses(DELTA, labels, 0.2, loss_type, tie_handling="exclude"),
                           preference_losses(DELTA, labels, 0.2, loss_type, tie_handling="include"))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown loss_type"):
        preference_losses(DELTA, torch.ones(4, 1, dtype=torch.long), 0.2, "kto")
    with pytest.raises(ValueError, match="shape \\[N, K\\]"):
        preference_losses(DELTA, torch.ones(3, 1, dtype=torch.long), 0.2)
    with pytest.raises(ValueError, match="\\+1"):
        preference_losses(DELTA, torch.full((4, 1), 2), 0.2)
    with pytest.raises(ValueError, match="beta"):
        preference_losses(DELTA, torch.ones(4, 1, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="unknown tie_handling 'ignore'"):
        preference_losses(DELTA, torch.ones(4, 1, dtype=torch.long), 0.2, tie_handling="ignore")


def test_metrics_accuracy_margin_and_absent_objectives():
    labels = torch.tensor([[1, 0, 0], [-1, 1, 0], [1, -1, 0], [-1, 0, 0]])
    metrics = preference_metrics(DELTA, labels, 0.5)
    # Objective 0: signed margins 0.25, 0.5, 1.0, 0.0 -> accuracy (3 + 1/2) / 4 (a tie counts 1/2), margin 0.4375.
    # Objective 1: -0.5, -1.0 -> accuracy 0, margin -0.75. Objective 2: no labels -> NaN.
    assert metrics.accuracy[:2].tolist() == [0.875, 0.0]
    assert metrics.margin[:2].tolist() == pytest.approx([0.4375, -0.75])
    assert math.isnan(metrics.accuracy[2].item()) and math.isnan(metrics.margin[2].item())
    assert metrics.count.tolist() == [4, 2, 0]
