"""Tests for paretoalign.advantages: parity with TRL's GRPOTrainer, the GDPO collapse example, hand-computed cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from paretoalign.advantages import (
    apply_conditions,
    conditional_rewards,
    decoupled_advantages,
    distinct_per_group,
    gdpo_advantages,
    grpo_advantages,
)
from paretoalign.trainers.grpo import resolve_conditions

NAN = math.nan
EPS = 1e-4


def assert_equal_values(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=atol)


# ---------------------------------------------------------------------------------------------------------------
# 1. Parity with TRL 1.16's GRPOTrainer, driven live.
#
# The reference numbers come from TRL itself: a GRPOTrainer on a tiny random Llama whose reward functions return
# fixed rows of a reward matrix (None where the matrix holds NaN). `_generate_and_score_completions` generates
# throwaway completions, scores them with those functions, aggregates (`multi_objective_aggregation`,
# `scale_rewards`) and returns the advantages under the key "advantages".
# ---------------------------------------------------------------------------------------------------------------

TRL_MODES = [
    ("sum_then_normalize", "group"),
    ("sum_then_normalize", "batch"),
    ("sum_then_normalize", "none"),
    ("normalize_then_sum", "group"),
]


def _parity_cases() -> dict[str, tuple[torch.Tensor, int, list[float] | None]]:
    generator = torch.Generator().manual_seed(1234)

    # 4 groups of 4, 3 rewards: scattered NaNs, an unscorable row, a constant group, a reward unscored in a group.
    gaussian = torch.randn(16, 3, generator=generator)
    gaussian[torch.rand(16, 3, generator=generator) < 0.2] = NAN
    gaussian[5] = NAN
    gaussian[8:12] = torch.tensor([0.3, -1.2, 2.0])
    gaussian[12:16, 1] = NAN
    gaussian[13, 2] = NAN

    # 6 groups of 2, binary rewards, signed weights: one group with an unscorable row (a single scored value),
    # groups with equal weighted sums.
    binary = torch.randint(0, 2, (12, 3), generator=generator).float()
    binary[3] = NAN
    binary[6:8] = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    binary[9, 0] = NAN

    # 3 groups of 3, 2 rewards: rows 0 and 1 are scorable but each of their rewards is the only scored value of
    # its group, so every per-reward normalised value is NaN (GDPO sum 0); row 2 is unscorable.
    sparse = torch.tensor(
        [[NAN, 1.0], [2.0, NAN], [NAN, NAN], [0.5, 4.0], [1.5, 4.0], [-1.0, 0.0], [3.0, 3.0], [3.0, 3.0], [NAN, 3.0]]
    )

    # group_size 1 (reached through TRL's evaluation path, num_generations_eval=1).
    singletons = torch.randn(5, 2, generator=generator)
    singletons[2] = NAN

    return {
        "gaussian_g4": (gaussian, 4, None),
        "binary_g2_weighted": (binary, 2, [0.5, 2.0, -1.0]),
        "sparse_g3_weighted": (sparse, 3, [1.0, 0.25]),
        "singletons_g1": (singletons, 1, None),
    }


PARITY_CASES = _parity_cases()


@pytest.fixture(scope="module")
def trl_advantages(tmp_path_factory, tiny_tokenizer, make_tiny_llama):
    """Advantages computed by TRL's GRPOTrainer for a given reward matrix and configuration."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = tiny_tokenizer
    output_dir = tmp_path_factory.mktemp("grpo")
    scored = {}

    def reward_function(column):
        def reward(completions, row, **kwargs):
            values = scored["rewards"][row, column].tolist()
            return [None if math.isnan(value) else value for value in values]

        reward.__name__ = f"reward_{column}"
        return reward

    def compute(rewards, group_size, aggregation, scale_rewards, weights):
        num_completions, num_rewards = rewards.shape
        train_group = max(group_size, 2)
        config = GRPOConfig(
            output_dir=str(output_dir),
            num_generations=train_group,
            num_generations_eval=group_size,
            per_device_train_batch_size=train_group,
            per_device_eval_batch_size=group_size,
            max_completion_length=2,
            multi_objective_aggregation=aggregation,
            scale_rewards=scale_rewards,
            reward_weights=weights,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
        )
        trainer = GRPOTrainer(
            model=make_tiny_llama(len(tokenizer)),
            processing_class=tokenizer,
            reward_funcs=[reward_function(column) for column in range(num_rewards)],
            args=config,
            train_dataset=Dataset.from_dict({"prompt": ["Hello"] * train_group, "row": list(range(train_group))}),
        )
        # TRL reads num_generations in training mode and num_generations_eval in evaluation mode.
        trainer.model.train(group_size > 1)
        scored["rewards"] = rewards
        inputs = [{"prompt": "Hello", "row": row} for row in range(num_completions)]
        return trainer._generate_and_score_completions(inputs)["advantages"]

    return compute


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize(("aggregation", "scale_rewards"), TRL_MODES)
@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_matches_trl_grpo_trainer(trl_advantages, case, aggregation, scale_rewards):
    rewards, group_size, weights = PARITY_CASES[case]
    expected = trl_advantages(rewards, group_size, aggregation, scale_rewards, weights)
    if aggregation == "sum_then_normalize":
        actual = grpo_advantages(rewards, group_size, weights=weights, scale=scale_rewards)
    else:
        actual = gdpo_advantages(rewards, group_size, weights=weights)

    torch.testing.assert_close(actual, expected, rtol=0.0, atol=1e-6)
    if group_size > 1:
        assert expected.abs().max() > 0.1
    unscorable = torch.isnan(rewards).all(dim=1)
    assert (actual[unscorable] == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# 2. The GDPO collapse (Liu et al. 2026, Sec. 3): two binary rewards, groups of two completions.
#
# Each completion scores (r1, r2) in {0, 1}^2; a group of two can be scored in 4 x 4 = 16 ways. eps = 0 gives the
# paper's exact values (with the default eps they move by about 1e-4).
#
# GRPO: the group holds totals t_a, t_b in {0, 1, 2}. Equal totals give (0, 0); otherwise the deviations are
# +-|t_a - t_b| / 2 and the unbiased std of two values is |t_a - t_b| / sqrt(2), so the advantages are
# +-1/sqrt(2) = +-0.7071 whatever the gap: totals (0,1), (0,2) and (1,2) collapse. 3 distinct vectors.
#
# GDPO: per reward, two different values normalise to +-1/sqrt(2) and equal values to 0. The sum for the second
# completion is S / sqrt(2), S = sum_k sign(r_bk - r_ak) in {-2, ..., 2}: +-0.7071 when one reward differs,
# +-1.4142 when both differ in the same direction, 0 otherwise. 5 distinct vectors.
# Over the 16 groups S = 2, 1, 0, -1, -2 occurs 1, 4, 6, 4, 1 times. The batch normalisation of all 32 sums:
# mean 0 (every group sums to 0), sum of squares = sum over groups of 2 (S / sqrt(2))^2 = sum S^2 = 16,
# unbiased std = sqrt(16 / 31) = 4 / sqrt(31). Final values: 0.7071 -> sqrt(31) / (4 sqrt(2)) = sqrt(62) / 8 =
# 0.98425 and 1.4142 -> sqrt(62) / 4 = 1.96850. The affine batch step keeps the 5 classes apart.
# ---------------------------------------------------------------------------------------------------------------

BINARY_SCORES = list(itertools.product([0.0, 1.0], repeat=2))


def _all_binary_groups() -> torch.Tensor:
    """The 16 groups (completion a, completion b) stacked into one [32, 2] batch."""
    groups = [[first, second] for first in BINARY_SCORES for second in BINARY_SCORES]
    return torch.tensor(groups).reshape(32, 2)


def _distinct_group_vectors(advantages: torch.Tensor) -> set[tuple[float, float]]:
    return {tuple(round(value, 6) for value in pair) for pair in advantages.view(-1, 2).tolist()}


def test_grpo_collapses_binary_reward_groups_that_gdpo_separates():
    rewards = _all_binary_groups()
    half_sqrt2 = 1 / math.sqrt(2)

    grpo = grpo_advantages(rewards, group_size=2, eps=0.0)
    assert len(_distinct_group_vectors(grpo)) == 3
    assert _distinct_group_vectors(grpo) == {
        (0.0, 0.0),
        (round(-half_sqrt2, 6), round(half_sqrt2, 6)),
        (round(half_sqrt2, 6), round(-half_sqrt2, 6)),
    }

    gdpo_sums = decoupled_advantages(rewards, group_size=2, eps=0.0).sum(dim=1)
    sum_values = {0.0, half_sqrt2, -half_sqrt2, math.sqrt(2), -math.sqrt(2)}
    assert {round(value, 6) for value in gdpo_sums.tolist()} == {round(value, 6) for value in sum_values}

    gdpo = gdpo_advantages(rewards, group_size=2, eps=0.0)
    one_reward, both_rewards = math.sqrt(62) / 8, math.sqrt(62) / 4
    assert len(_distinct_group_vectors(gdpo)) == 5
    assert _distinct_group_vectors(gdpo) == {
        (0.0, 0.0),
        (round(-one_reward, 6), round(one_reward, 6)),
        (round(one_reward, 6), round(-one_reward, 6)),
        (round(-both_rewards, 6), round(both_rewards, 6)),
        (round(both_rewards, 6), round(-both_rewards, 6)),
    }
    assert_equal_values(gdpo, gdpo_sums / (4 / math.sqrt(31)))


def test_paper_example_totals_0_1_and_0_2_and_1_2():
    # Groups with totals (0,1), (0,2), (1,2): a=(0,0) b=(0,1); a=(0,0) b=(1,1); a=(1,0) b=(1,1).
    rewards = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    half_sqrt2 = 1 / math.sqrt(2)

    grpo = grpo_advantages(rewards, group_size=2, eps=0.0)
    assert_equal_values(grpo, [-half_sqrt2, half_sqrt2] * 3)

    # Before the batch step: (0,1) -> +-0.7071, (0,2) -> +-1.4142, (1,2) -> +-0.7071.
    sums = decoupled_advantages(rewards, group_size=2, eps=0.0).sum(dim=1)
    assert_equal_values(sums, [-half_sqrt2, half_sqrt2, -math.sqrt(2), math.sqrt(2), -half_sqrt2, half_sqrt2])

    # Batch step: mean 0, sum of squares 1/2 * 4 + 2 * 2 = 6, unbiased std sqrt(6 / 5).
    assert_equal_values(gdpo_advantages(rewards, group_size=2, eps=0.0), sums / math.sqrt(6 / 5))


def test_distinct_per_group_shows_the_gdpo_collapse():
    # Liu et al. 2026, Sec. 3: two binary rewards, groups of two, all 16 ways to score a group.
    scores = [(a, b) for a in (0.0, 1.0) for b in (0.0, 1.0)]
    rewards = torch.tensor([[first, second] for first in scores for second in scores]).reshape(32, 2)
    grpo, gdpo = grpo_advantages(rewards, 2), gdpo_advantages(rewards, 2)
    assert distinct_per_group(grpo, 32) == 3  # 0 and +-0.7071, whatever the totals
    assert distinct_per_group(gdpo, 32) == 5  # 0, +-0.98, +-1.97: one or both rewards differ
    # Within a group: 6 constant groups (1 value), 10 others (2 values).
    assert distinct_per_group(grpo, 2) == distinct_per_group(gdpo, 2) == (6 * 1 + 10 * 2) / 16
    assert distinct_per_group(rewards, 2) == (4 * 1 + 12 * 2) / 16


# ---------------------------------------------------------------------------------------------------------------
# 3. Hand-computed cases.
# ---------------------------------------------------------------------------------------------------------------

# Two groups of two, two rewards. Totals r = [1, 0, 2, 1]; group means 0.5, 1.5; group stds sqrt(0.5).
SMALL = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def test_grpo_group_scale_by_hand():
    half = 0.5 / (math.sqrt(0.5) + EPS)
    assert_equal_values(grpo_advantages(SMALL, group_size=2), [half, -half, half, -half])


def test_grpo_batch_scale_by_hand():
    # Batch std of [1, 0, 2, 1]: mean 1, squared deviations 0, 1, 1, 0 -> sqrt(2 / 3).
    half = 0.5 / (math.sqrt(2 / 3) + EPS)
    assert_equal_values(grpo_advantages(SMALL, group_size=2, scale="batch"), [half, -half, half, -half])


def test_grpo_no_scale_by_hand():
    assert_equal_values(grpo_advantages(SMALL, group_size=2, scale="none"), [0.5, -0.5, 0.5, -0.5])


def test_grpo_weights_are_used_as_given():
    # r = 3 R_1 - R_2 = [3, 0, 2, -1]; deviations +-1.5; group stds 1.5 sqrt(2).
    expected = 1.5 / (1.5 * math.sqrt(2) + EPS)
    advantages = grpo_advantages(SMALL, group_size=2, weights=[3.0, -1.0])
    assert_equal_values(advantages, [expected, -expected, expected, -expected])
    assert_equal_values(grpo_advantages(SMALL, group_size=2, weights=torch.tensor([3.0, -1.0])), advantages)


def test_grpo_nan_reward_counts_as_nothing_in_the_sum():
    # r = [1 + 0, 0 + 1] = [1, 1]: a constant group.
    rewards = torch.tensor([[1.0, NAN], [0.0, 1.0]])
    assert_equal_values(grpo_advantages(rewards, group_size=2), [0.0, 0.0])


def test_grpo_unscorable_row_is_left_out_of_the_statistics():
    # r = [NaN, 1, 0]: mean over the scored rows 0.5 (not 1/3), std of (1, 0) = sqrt(0.5).
    rewards = torch.tensor([[NAN, NAN], [1.0, 0.0], [0.0, 0.0]])
    half = 0.5 / (math.sqrt(0.5) + EPS)
    for scale, expected in [("group", [0.0, half, -half]), ("none", [0.0, 0.5, -0.5])]:
        assert_equal_values(grpo_advantages(rewards, group_size=3, scale=scale), expected)


def test_group_with_a_single_scored_completion_gets_zero():
    rewards = torch.tensor([[NAN, NAN], [3.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    half = 0.5 / (math.sqrt(0.5) + EPS)
    assert_equal_values(grpo_advantages(rewards, group_size=2), [0.0, 0.0, half, -half])
    for scale in ("group", "batch", "none"):
        assert grpo_advantages(rewards, group_size=2, scale=scale)[:2].tolist() == [0.0, 0.0]


def test_constant_group_gets_zero():
    rewards = torch.tensor([[0.2, 5.0], [0.2, 5.0], [0.2, 5.0], [1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    for scale in ("group", "batch", "none"):
        assert grpo_advantages(rewards, group_size=3, scale=scale)[:3].tolist() == [0.0, 0.0, 0.0]
    assert decoupled_advantages(rewards, group_size=3)[:3].abs().sum() == 0
    gdpo = gdpo_advantages(rewards, group_size=3)
    # The constant group's sums are 0, but the batch step subtracts the batch mean of the sums, which is 0 here:
    # every group's normalised rewards sum to 0.
    assert_equal_values(gdpo[:3], [0.0, 0.0, 0.0])


def test_group_size_one_gives_zero():
    rewards = torch.tensor([[1.0, 2.0], [NAN, NAN], [-3.0, 0.5]])
    for scale in ("group", "batch", "none"):
        assert grpo_advantages(rewards, group_size=1, scale=scale).tolist() == [0.0, 0.0, 0.0]
    assert gdpo_advantages(rewards, group_size=1).tolist() == [0.0, 0.0, 0.0]
    assert decoupled_advantages(rewards, group_size=1).tolist() == [[0.0, 0.0]] * 3


def test_decoupled_by_hand():
    # Group 1: reward 1 (1, 0) -> +-a, reward 2 (0, 0) -> 0. Group 2: both rewards (1, 0) -> +-a.
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    a = 0.5 / (math.sqrt(0.5) + EPS)
    assert_equal_values(decoupled_advantages(rewards, group_size=2), [[a, 0.0], [-a, 0.0], [a, a], [-a, -a]])


def test_decoupled_nan_handling_by_hand():
    # Reward 1: NaN left out, (1, 3) -> mean 2, std sqrt(2). Reward 2: only one scored value -> 0.
    rewards = torch.tensor([[1.0, NAN], [NAN, 7.0], [3.0, NAN]])
    a = 1.0 / (math.sqrt(2) + EPS)
    assert_equal_values(decoupled_advantages(rewards, group_size=3), [[-a, 0.0], [0.0, 0.0], [a, 0.0]])


def test_gdpo_by_hand():
    # Per-reward advantages as in test_decoupled_by_hand; sums s = [a, -a, 2a, -2a], batch mean 0,
    # unbiased batch std a sqrt((1 + 1 + 4 + 4) / 3) = a sqrt(10 / 3).
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    a = 0.5 / (math.sqrt(0.5) + EPS)
    scale = a * math.sqrt(10 / 3) + EPS
    assert_equal_values(gdpo_advantages(rewards, group_size=2), [a / scale, -a / scale, 2 * a / scale, -2 * a / scale])


def test_gdpo_weights_apply_after_normalisation():
    # Same matrix, weights (2, 0.5): s = [2a, -2a, 2.5a, -2.5a]; std a sqrt((4 + 4 + 6.25 + 6.25) / 3).
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    a = 0.5 / (math.sqrt(0.5) + EPS)
    scale = a * math.sqrt(20.5 / 3) + EPS
    expected = [2 * a / scale, -2 * a / scale, 2.5 * a / scale, -2.5 * a / scale]
    assert_equal_values(gdpo_advantages(rewards, group_size=2, weights=[2.0, 0.5]), expected)


def test_gdpo_unscorable_row_is_left_out_of_the_batch_statistics():
    # One reward, groups of 3. Group 1: row 0 unscorable, (1, 0) -> +-a with a = 0.5 / (sqrt(0.5) + eps).
    # Group 2: (2, 0, 1), mean 1, std 1 -> (b, -b, 0) with b = 1 / (1 + eps).
    # Batch over the 5 scored rows: mean 0, unbiased std sqrt((2 a^2 + 2 b^2) / 4) (not / 5 as with row 0 as 0).
    rewards = torch.tensor([[NAN], [1.0], [0.0], [2.0], [0.0], [1.0]])
    a = 0.5 / (math.sqrt(0.5) + EPS)
    b = 1.0 / (1.0 + EPS)
    scale = math.sqrt((2 * a**2 + 2 * b**2) / 4) + EPS
    expected = [0.0, a / scale, -a / scale, b / scale, -b / scale, 0.0]
    assert_equal_values(gdpo_advantages(rewards, group_size=3), expected)


def test_conditional_rewards_zeroes_exactly_the_targets_below_threshold():
    rewards = torch.tensor(
        [
            [1.0, 5.0, 7.0, 9.0],  # condition reached: unchanged
            [0.0, 5.0, 7.0, 9.0],  # below: targets 1 and 3 -> 0
            [NAN, 5.0, 7.0, 9.0],  # unscored condition counts as below
            [0.5, NAN, 7.0, 9.0],  # exactly the threshold counts as reached
            [0.0, NAN, 7.0, 9.0],  # below, but an unscored target stays unscored
            [NAN, NAN, NAN, NAN],  # unscorable row stays unscorable
        ]
    )
    original = rewards.clone()
    conditioned = conditional_rewards(rewards, condition_index=0, threshold=0.5, targets=[1, 3])
    expected = torch.tensor(
        [
            [1.0, 5.0, 7.0, 9.0],
            [0.0, 0.0, 7.0, 0.0],
            [NAN, 0.0, 7.0, 0.0],
            [0.5, NAN, 7.0, 9.0],
            [0.0, NAN, 7.0, 0.0],
            [NAN, NAN, NAN, NAN],
        ]
    )
    torch.testing.assert_close(conditioned, expected, rtol=0.0, atol=0.0, equal_nan=True)
    torch.testing.assert_close(rewards, original, rtol=0.0, atol=0.0, equal_nan=True)
    assert conditioned.data_ptr() != rewards.data_ptr()


def test_conditional_rewards_single_target_index():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 2.0, 3.0]])
    conditioned = conditional_rewards(rewards, condition_index=0, threshold=1.0, targets=2)
    assert conditioned.tolist() == [[1.0, 2.0, 3.0], [0.0, 2.0, 0.0]]


def test_conditional_rewards_on_hand_made_matrices():
    names = ["answer", "length", "format"]
    rewards = torch.tensor(
        [
            [1.0, 0.7, 1.0],  # correct and formatted: length counts
            [0.0, 0.9, 1.0],  # wrong: length -> 0
            [1.0, 0.4, 0.0],  # correct, unformatted: length -> 0 (second condition)
            [NAN, 0.5, 1.0],  # answer unscored: condition not reached
            [1.0, NAN, 1.0],  # length unscored stays unscored
        ]
    )
    specs = [
        {"reward": "length", "condition": "answer", "threshold": 1.0},
        {"reward": 1, "condition": 2, "threshold": 0.5},
    ]
    conditions = resolve_conditions(specs, names)
    conditioned = apply_conditions(rewards, conditions)
    expected = rewards.clone()
    expected[:, 1] = torch.tensor([0.7, 0.0, 0.0, 0.0, NAN])
    torch.testing.assert_close(conditioned, expected, rtol=0, atol=0, equal_nan=True)
    # A single condition is exactly paretoalign.advantages.conditional_rewards.
    torch.testing.assert_close(
        apply_conditions(rewards, conditions[:1]), conditional_rewards(rewards, 0, 1.0, [1]), equal_nan=True
    )
    with pytest.raises(ValueError, match=r"conditional_rewards\[0\].reward: unknown reward 'size'"):
        resolve_conditions([{"reward": "size", "condition": "answer", "threshold": 1}], names)
    with pytest.raises(ValueError, match="cannot be its own condition"):
        resolve_conditions([{"reward": 0, "condition": "answer", "threshold": 1}], names)


# ---------------------------------------------------------------------------------------------------------------
# dtype, device and input validation.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_keep_the_rewards_dtype_and_device(dtype):
    rewards = SMALL.to(dtype)
    for advantages in (
        grpo_advantages(rewards, 2),
        gdpo_advantages(rewards, 2),
        decoupled_advantages(rewards, 2),
        conditional_rewards(rewards, 0, 0.5, [1]),
    ):
        assert advantages.dtype == dtype
        assert advantages.device == rewards.device


def test_integer_rewards_become_floats():
    advantages = grpo_advantages(SMALL.long(), 2, scale="none")
    assert advantages.dtype == torch.get_default_dtype()
    assert advantages.tolist() == [0.5, -0.5, 0.5, -0.5]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: grpo_advantages(torch.zeros(4), 2), "2-D"),
        (lambda: grpo_advantages(torch.zeros(4, 2, 1), 2), "2-D"),
        (lambda: grpo_advantages([[1.0, 2.0]], 1), "torch.Tensor"),
        (lambda: grpo_advantages(torch.zeros(4, 0), 2), "at least one column"),
        (lambda: grpo_advantages(torch.zeros(5, 2), 2), "multiple of group_size"),
        (lambda: gdpo_advantages(torch.zeros(4, 2), 0), "group_size"),
        (lambda: decoupled_advantages(torch.zeros(4, 2), 1.5), "group_size"),
        (lambda: grpo_advantages(torch.zeros(4, 2), 2, weights=[1.0]), "one value per reward"),
        (lambda: gdpo_advantages(torch.zeros(4, 2), 2, weights=[[1.0, 1.0]]), "one value per reward"),
        (lambda: grpo_advantages(torch.zeros(4, 2), 2, weights=[1.0, NAN]), "finite"),
        (lambda: gdpo_advantages(torch.zeros(4, 2), 2, weights=[math.inf, 1.0]), "finite"),
        (lambda: grpo_advantages(torch.zeros(4, 2), 2, scale="std"), "scale"),
        (lambda: conditional_rewards(torch.zeros(4, 2), 2, 0.5, [0]), "condition_index"),
        (lambda: conditional_rewards(torch.zeros(4, 2), -1, 0.5, [0]), "condition_index"),
        (lambda: conditional_rewards(torch.zeros(4, 2), 0, 0.5, [2]), "target"),
        (lambda: conditional_rewards(torch.zeros(4, 2), 0, 0.5, []), "at least one"),
        (lambda: conditional_rewards(torch.zeros(4, 2), 0, 0.5, [0]), "cannot also be a target"),
        (lambda: conditional_rewards(torch.zeros(4, 2), 0, NAN, [1]), "threshold"),
        (lambda: conditional_rewards(torch.zeros(4), 0, 0.5, [1]), "2-D"),
    ],
)
def test_invalid_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
