"""Advantages for online multi-reward RL: GRPO, GDPO, decoupled per-reward advantages, conditional rewards.

All functions take a reward matrix ``R`` of shape ``[N, K]``: ``N = prompts x group_size`` completions stored
in contiguous groups (rows ``g * group_size`` to ``(g + 1) * group_size - 1`` answer prompt ``g``) and ``K``
reward functions. ``NaN`` means "this reward function could not score this completion". A row whose rewards are
all ``NaN`` is *unscorable*: it is left out of every statistic and its advantage is 0.

The semantics are exactly those of TRL 1.16's ``GRPOTrainer`` (``_generate_and_score_completions``, both
``multi_objective_aggregation`` modes):

* every mean is NaN-aware (``torch.nanmean``);
* every standard deviation is NaN-aware and Bessel-corrected (divides by ``n - 1``); with fewer than two
  non-NaN values it is ``NaN``, so a group with fewer than two scored completions gets advantage 0;
* ``eps`` (default ``1e-4``) is added to the standard deviation, not to the variance;
* ``NaN`` advantages are replaced by 0 at the end (``torch.nan_to_num``, which also maps ``+-inf`` to the
  largest finite values of the dtype).

TRL holds rewards in float32; float32 rewards give bit-identical advantages, other dtypes are computed in their own
precision.

Consequently ``group_size == 1`` gives all-zero advantages, and so does a group with constant rewards (for GDPO up
to rounding: its batch step subtracts the batch mean of the group-normalised sums, which is 0 in exact arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from trl.trainer.utils import nanstd

DISTINCT_TOLERANCE = 1e-3
"""Advantages closer than this count as one value in :func:`distinct_per_group`."""

__all__ = [
    "SCALES", "RewardCondition", "apply_conditions", "conditional_rewards", "distinct_per_group",
    "decoupled_advantages", "gdpo_advantages", "grpo_advantages",
]

SCALES = ("group", "batch", "none")
"""Values of ``grpo_advantages(scale=...)``, as TRL's ``GRPOConfig.scale_rewards``."""

DEFAULT_EPS = 1e-4


def grpo_advantages(
    rewards: torch.Tensor,
    group_size: int,
    weights: Sequence[float] | torch.Tensor | None = None,
    scale: str = "group",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """GRPO advantages of a weighted reward sum (TRL's ``multi_objective_aggregation="sum_then_normalize"``).

    GRPO: Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
    arXiv 2402.03300.

    For completion ``i`` of group ``g``::

        r_i = nansum_k w_k R_ik                         (NaN for unscorable rows)
        A_i = r_i - nanmean_{j in g} r_j
        A_i = A_i / (nanstd_{j in g} r_j + eps)         if scale == "group"
        A_i = A_i / (nanstd_{all j}  r_j + eps)         if scale == "batch"
        A_i = A_i                                       if scale == "none"
        A_i = 0 where A_i is NaN

    A NaN reward of a scorable row contributes nothing to ``r_i`` (as if it were 0). Weights are used as given
    (TRL's ``reward_weights``; they are not normalised and need not sum to 1).

    Args:
        rewards: ``[N, K]`` rewards, ``N`` a multiple of ``group_size``, groups contiguous.
        group_size: completions per prompt (TRL's ``num_generations``).
        weights: ``K`` finite reward weights; all ones when omitted.
        scale: ``"group"``, ``"batch"`` or ``"none"`` (TRL's ``scale_rewards``).
        eps: added to the standard deviation.

    Returns:
        ``[N]`` advantages, same floating dtype and device as ``rewards``.
    """
    rewards = _validated_rewards(rewards, group_size)
    reward_weights = _validated_weights(weights, rewards)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}.")

    summed = _weighted_nansum(rewards, reward_weights).masked_fill(_unscorable_rows(rewards), math.nan)
    grouped = summed.view(len(summed) // group_size, group_size)
    advantages = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if scale == "group":
        advantages = advantages / (nanstd(grouped, dim=1, keepdim=True) + eps)
    elif scale == "batch":
        advantages = advantages / (nanstd(summed, dim=0, keepdim=True) + eps)
    return torch.nan_to_num(advantages.reshape(-1), nan=0.0)


def gdpo_advantages(
    rewards: torch.Tensor,
    group_size: int,
    weights: Sequence[float] | torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """GDPO advantages: normalise each reward in its group, sum with weights, normalise over the batch.

    GDPO: Liu et al. 2026, "GDPO: Group reward-Decoupled Normalization Policy Optimization", arXiv 2601.05242.
    Identical to TRL's ``multi_objective_aggregation="normalize_then_sum"``.

    For completion ``i`` of group ``g``::

        A_ik = (R_ik - nanmean_{j in g} R_jk) / (nanstd_{j in g} R_jk + eps)       (decoupled_advantages)
        s_i  = nansum_k w_k A_ik                        (NaN for unscorable rows)
        A_i  = (s_i - nanmean_{all j} s_j) / (nanstd_{all j} s_j + eps)
        A_i  = 0 where A_i is NaN

    Unlike GRPO, rewards that differ in kind (which of them a completion satisfies) give different advantages
    even when their weighted sums are equal. A scorable row whose every ``A_ik`` is NaN (each of its rewards is
    NaN or the only scored value of its group) has ``s_i = 0`` and takes part in the batch statistics.

    Args:
        rewards: ``[N, K]`` rewards, ``N`` a multiple of ``group_size``, groups contiguous.
        group_size: completions per prompt.
        weights: ``K`` finite reward weights, applied after normalisation; all ones when omitted.
        eps: added to each standard deviation.

    Returns:
        ``[N]`` advantages, same floating dtype and device as ``rewards``.
    """
    rewards = _validated_rewards(rewards, group_size)
    reward_weights = _validated_weights(weights, rewards)

    per_reward = _group_normalised_per_reward(rewards, group_size, eps)
    summed = _weighted_nansum(per_reward, reward_weights).masked_fill(_unscorable_rows(rewards), math.nan)
    advantages = (summed - torch.nanmean(summed)) / (nanstd(summed, dim=0, keepdim=True) + eps)
    return torch.nan_to_num(advantages, nan=0.0)


def decoupled_advantages(
    rewards: torch.Tensor,
    group_size: int,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Per-reward group-normalised advantages, one column per reward.

    The first step of GDPO (Liu et al. 2026, arXiv 2601.05242), kept per reward so that each reward drives its own
    policy-gradient loss; the K losses are then combined by a conflict-averse weighting. For completion ``i`` of
    group ``g`` and reward ``k``::

        A_ik = (R_ik - nanmean_{j in g} R_jk) / (nanstd_{j in g} R_jk + eps)
        A_ik = 0 where A_ik is NaN

    so an unscored reward, a reward scored for only one completion of the group, and ``group_size == 1`` give 0.

    Args:
        rewards: ``[N, K]`` rewards, ``N`` a multiple of ``group_size``, groups contiguous.
        group_size: completions per prompt.
        eps: added to each standard deviation.

    Returns:
        ``[N, K]`` advantages, same floating dtype and device as ``rewards``.
    """
    rewards = _validated_rewards(rewards, group_size)
    return torch.nan_to_num(_group_normalised_per_reward(rewards, group_size, eps), nan=0.0)


def conditional_rewards(
    rewards: torch.Tensor,
    condition_index: int,
    threshold: float,
    targets: int | Sequence[int],
) -> torch.Tensor:
    """Rewards that count only where a condition reward reaches a threshold (GDPO's conditional reward).

    Liu et al. 2026, arXiv 2601.05242, e.g. a length reward given only to correct answers. For every target
    column ``k``::

        R'_ik = R_ik   if R_ic >= threshold     (c = condition_index)
        R'_ik = 0      otherwise

    A ``NaN`` condition (the condition could not be scored) does not reach the threshold. A ``NaN`` target stays
    ``NaN``: a reward that could not be scored is not turned into a score of 0, so an unscorable row stays
    unscorable. All other columns, including the condition column, are copied unchanged.

    Args:
        rewards: ``[N, K]`` rewards.
        condition_index: column of the condition reward.
        threshold: the condition reward must be ``>= threshold`` for the targets to count.
        targets: column index or indices of the rewards to condition; must not contain ``condition_index``.

    Returns:
        A new ``[N, K]`` tensor; ``rewards`` is not modified.
    """
    rewards = _validated_matrix(rewards)
    num_rewards = rewards.shape[1]
    if not _is_index(condition_index) or not 0 <= condition_index < num_rewards:
        raise ValueError(f"condition_index must be an integer in [0, {num_rewards}), got {condition_index!r}.")
    target_indices = [targets] if _is_index(targets) else list(targets)
    if not target_indices:
        raise ValueError("targets must name at least one reward column.")
    for target in target_indices:
        if not _is_index(target) or not 0 <= target < num_rewards:
            raise ValueError(f"every target must be an integer in [0, {num_rewards}), got {target!r}.")
    if condition_index in target_indices:
        raise ValueError(f"condition_index {condition_index} cannot also be a target.")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold):
        raise ValueError(f"threshold must be a real number, got {threshold!r}.")

    reached = rewards[:, condition_index] >= threshold
    target_rewards = rewards[:, target_indices]
    keep = reached.unsqueeze(1) | torch.isnan(target_rewards)
    conditioned = rewards.clone()
    conditioned[:, target_indices] = torch.where(keep, target_rewards, torch.zeros_like(target_rewards))
    return conditioned


@dataclass(frozen=True)
class RewardCondition:
    """Reward column ``reward`` counts only where column ``condition`` is at least ``threshold``."""

    reward: int
    condition: int
    threshold: float


def apply_conditions(rewards: torch.Tensor, conditions: Sequence[RewardCondition]) -> torch.Tensor:
    """GDPO's conditional rewards on ``[N, K]`` rewards; every condition reads the unconditioned rewards, and several
    conditions on one reward must all hold."""
    conditioned = rewards.clone()
    for condition in conditions:
        source = rewards.clone()
        source[:, condition.reward] = conditioned[:, condition.reward]
        result = conditional_rewards(source, condition.condition, condition.threshold, condition.reward)
        conditioned[:, condition.reward] = result[:, condition.reward]
    return conditioned


def _group_normalised_per_reward(rewards: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """``(R_ik - nanmean_group R_k) / (nanstd_group R_k + eps)``, NaN kept, shape ``[N, K]``."""
    num_completions, num_rewards = rewards.shape
    grouped = rewards.reshape(num_completions // group_size, group_size, num_rewards)
    normalised = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + eps)
    return normalised.view(num_completions, num_rewards)


def _weighted_nansum(rewards: torch.Tensor, reward_weights: torch.Tensor) -> torch.Tensor:
    """``nansum_k w_k R_ik``, shape ``[N]``."""
    return (rewards * reward_weights.unsqueeze(0)).nansum(dim=1)


def _unscorable_rows(rewards: torch.Tensor) -> torch.Tensor:
    """Rows in which every reward is NaN."""
    return torch.isnan(rewards).all(dim=1)


def _validated_matrix(rewards: torch.Tensor) -> torch.Tensor:
    """``rewards`` as a 2-D floating tensor with at least one column (integer and bool tensors are converted)."""
    if not isinstance(rewards, torch.Tensor):
        raise ValueError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}.")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be 2-D [completions, reward functions], got shape {tuple(rewards.shape)}.")
    if rewards.shape[1] < 1:
        raise ValueError("rewards must have at least one column (one per reward function).")
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    return rewards


def _validated_rewards(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``_validated_matrix`` plus a group size that divides the number of rows."""
    rewards = _validated_matrix(rewards)
    if not _is_index(group_size) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}.")
    if rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"the number of completions ({rewards.shape[0]}) must be a multiple of group_size ({group_size})."
        )
    return rewards


def _validated_weights(weights: Sequence[float] | torch.Tensor | None, rewards: torch.Tensor) -> torch.Tensor:
    """``K`` finite weights in the rewards' dtype and device; all ones when ``weights`` is None."""
    num_rewards = rewards.shape[1]
    if weights is None:
        return torch.ones(num_rewards, dtype=rewards.dtype, device=rewards.device)
    reward_weights = torch.as_tensor(weights).to(dtype=rewards.dtype, device=rewards.device)
    if reward_weights.dim() != 1 or reward_weights.numel() != num_rewards:
        raise ValueError(
            f"weights must hold one value per reward function ({num_rewards}), got shape {tuple(reward_weights.shape)}."
        )
    if not torch.isfinite(reward_weights).all():
        raise ValueError(f"weights must be finite, got {reward_weights.tolist()}.")
    return reward_weights


def _is_index(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def distinct_per_group(values: torch.Tensor, group_size: int, tolerance: float = DISTINCT_TOLERANCE) -> float:
    """Number of distinct values (rows, for a ``[N, K]`` tensor) per group of ``group_size``, averaged over groups.

    Values are compared after rounding to multiples of ``tolerance``, so differences of the order of the advantages'
    ``eps = 1e-4`` (e.g. ``1 / (sqrt(2) + eps)`` against ``2 / (2 sqrt(2) + eps)``) do not count; NaN rows count as
    one value. ``group_size = len(values)`` counts the distinct values of the whole batch. For advantages
    this measures the collapse GDPO removes (Liu et al. 2026, Sec. 3): with two binary rewards and groups of two,
    GRPO gives the reward totals (0, 1), (0, 2) and (1, 2) the same advantages +-0.7071, so a batch of all 16
    possible groups holds 3 distinct values, where GDPO's holds 5.
    """
    rows = values.detach().double().reshape(values.shape[0], -1).cpu()
    rows = torch.nan_to_num(torch.round(rows / tolerance), nan=math.inf)
    groups = rows.reshape(-1, group_size, rows.shape[1])
    counts = [torch.unique(group, dim=0).shape[0] for group in groups]
    return sum(counts) / len(counts)
