r"""Preference losses per objective from per-pair log-ratio differences and a label matrix.

A batch holds N pairs ``(y_a, y_b)`` and a label matrix ``S`` [N, K] with entries +1 (``y_a`` preferred for
objective k), -1 (``y_b`` preferred) or 0 (no label). With the log-ratio difference

``delta_i = (log pi(y_a|x) - log pi_ref(y_a|x)) - (log pi(y_b|x) - log pi_ref(y_b|x))``

and the implicit reward margin ``h_i = beta * delta_i``, objective k's loss is

``L_k = sum_i |S_ik| l(S_ik h_i) / max(1, sum_i |S_ik|)``

(``tie_handling="exclude"``: the mean over the pairs labelled for objective k). ``tie_handling="include"`` is the RACO
authors' mean over all N pairs (``dpo_trainer.py`` of PeterLauLukChen/RACO: ``-logsigmoid(beta * s * delta).mean()``
with ``s = 0`` for an unlabelled pair):

``L_k = sum_i l(S_ik h_i) / N``

where an unlabelled pair adds ``l(0)``, the loss of a zero-margin pair (``log 2`` for sigmoid, ``1 / (4 beta^2)``
for IPO, 1 for hinge), and no gradient. With ``l`` one of (the definitions of TRL's DPO loss types):

* ``sigmoid``: ``l(z) = -log sigmoid(z)`` (DPO, Rafailov et al. 2023, arXiv 2305.18290);
* ``ipo``: ``l(z) = (z / beta - 1 / (2 beta))^2`` (IPO, Azar et al. 2023, arXiv 2310.12036). TRL feeds IPO the
  per-token *average* log-ratios; the preference trainer does the same for IPO unless ``length_normalized`` says
  otherwise (for every loss type it can average, as the RACO authors' ``raco_length_normalized``);
* ``hinge``: ``l(z) = max(0, 1 - z)`` (SLiC, Zhao et al. 2023, arXiv 2305.10425).

One forward pass over the N pairs yields all K losses; an objective without a labelled pair in the batch gets
a zero gradient (never NaN) and loss 0 (``exclude``) or ``l(0)`` (``include``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSS_TYPES", "TIE_HANDLINGS", "PreferenceMetrics", "preference_losses", "preference_metrics"]


LOSS_TYPES = ("sigmoid", "ipo", "hinge")
#: How unlabelled pairs (label 0) enter an objective's mean: left out, or counted with a zero-margin loss.
TIE_HANDLINGS = ("exclude", "include")


def _pair_loss(loss_type: str, beta: float) -> Callable[[Tensor], Tensor]:
    if loss_type == "sigmoid":
        return lambda z: -F.logsigmoid(z)
    if loss_type == "ipo":
        return lambda z: (z / beta - 1.0 / (2.0 * beta)) ** 2
    if loss_type == "hinge":
        return lambda z: torch.relu(1.0 - z)
    raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}.")


def _check_inputs(logratio_diff: Tensor, labels: Tensor, beta: float) -> None:
    if logratio_diff.ndim != 1:
        raise ValueError(f"logratio_diff must have shape [N], got {tuple(logratio_diff.shape)}.")
    if labels.ndim != 2 or labels.shape[0] != logratio_diff.shape[0]:
        raise ValueError(
            f"labels must have shape [N, K] with N = {logratio_diff.shape[0]}, got {tuple(labels.shape)}."
        )
    if not (beta > 0):
        raise ValueError(f"beta must be positive, got {beta}.")
    if not torch.isin(labels, torch.tensor([-1, 0, 1], device=labels.device)).all():
        raise ValueError("labels must hold only +1 (a preferred), -1 (b preferred) and 0 (no label).")


def preference_losses(
    logratio_diff: Tensor, labels: Tensor, beta: float, loss_type: str = "sigmoid", tie_handling: str = "exclude"
) -> Tensor:
    """The K per-objective preference losses ``L_k`` (see the module docstring), shape [K].

    Args:
        logratio_diff: [N] ``delta_i``, differentiable.
        labels: [N, K] integer label matrix ``S`` in {+1, -1, 0}.
        beta: KL-regularisation strength (RACO's default is 0.2).
        loss_type: ``sigmoid`` | ``ipo`` | ``hinge``.
        tie_handling: ``exclude`` (mean over the labelled pairs) | ``include`` (mean over all N pairs, an unlabelled
            pair adding the zero-margin loss ``l(0)``, as the RACO authors' code).
    """
    _check_inputs(logratio_diff, labels, beta)
    if tie_handling not in TIE_HANDLINGS:
        raise ValueError(f"unknown tie_handling {tie_handling!r}; choose one of {TIE_HANDLINGS}.")
    pair_loss = _pair_loss(loss_type, beta)
    signs = labels.to(logratio_diff.dtype)
    per_pair = pair_loss(signs * (beta * logratio_diff)[:, None])
    if tie_handling == "include":
        return per_pair.sum(dim=0) / max(1, per_pair.shape[0])
    labelled = signs.abs()
    per_pair = torch.where(labelled > 0, per_pair, torch.zeros_like(per_pair))
    return per_pair.sum(dim=0) / labelled.sum(dim=0).clamp_min(1.0)


@dataclass
class PreferenceMetrics:
    """Per-objective implicit-reward metrics over the labelled pairs: accuracy, mean margin, labelled-pair count."""

    accuracy: Tensor
    margin: Tensor
    count: Tensor


@torch.no_grad()
def preference_metrics(logratio_diff: Tensor, labels: Tensor, beta: float) -> PreferenceMetrics:
    """Implicit-reward accuracy ``mean_i [S_ik h_i > 0]`` and mean margin ``mean_i S_ik h_i`` per objective.

    A tie ``h_i = 0`` counts 1/2 towards the accuracy, so the reference policy itself scores 0.5. Means run over the pairs labelled for objective k; objectives without a labelled pair get NaN (not 0: an
    absent measurement is not a measured zero).
    """
    _check_inputs(logratio_diff, labels, beta)
    signed_margin = labels.to(logratio_diff.dtype) * (beta * logratio_diff.detach())[:, None]
    labelled = labels != 0
    count = labelled.sum(dim=0)
    denominator = count.clamp_min(1).to(logratio_diff.dtype)
    wins = ((signed_margin > 0) & labelled).sum(dim=0) + 0.5 * ((signed_margin == 0) & labelled).sum(dim=0)
    accuracy = wins / denominator
    margin = torch.where(labelled, signed_margin, torch.zeros_like(signed_margin)).sum(dim=0) / denominator
    missing = count == 0
    nan = torch.full_like(accuracy, float("nan"))
    return PreferenceMetrics(
        accuracy=torch.where(missing, nan, accuracy), margin=torch.where(missing, nan, margin), count=count
    )
