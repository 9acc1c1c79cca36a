"""Tests of paretoalign.data.sampler: objective-balanced blocks, permutations, epochs, and real batches end to end."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from paretoalign.data.preferences import load_preferences
from paretoalign.data.sampler import ObjectiveBalancedSampler
from paretoalign.data.tokenize import PreferenceCollator, tokenize_preferences


def one_label_matrix(rows_per_objective):
    """Rows of objective 0, then objective 1, ...: each row has a single non-zero label."""
    num_objectives = len(rows_per_objective)
    labels = []
    for k, count in enumerate(rows_per_objective):
        labels += [[1 if j == k else 0 for j in range(num_objectives)] for _ in range(count)]
    return labels


def objective_of(labels, index):
    return next(k for k, value in enumerate(labels[index]) if value != 0)


def blocks(sampler):
    indices = list(sampler)
    return [indices[start : start + sampler.batch_size] for start in range(0, len(indices), sampler.batch_size)]


@pytest.mark.parametrize(
    ("rows_per_objective", "batch_size", "proportions", "composition"),
    [
        ((10, 30), 4, None, [0, 0, 1, 1]),
        ((10, 30), 4, (0.75, 0.25), [0, 0, 0, 1]),
        ((12, 5, 7), 4, (0.5, 0.3, 0.2), [0, 0, 1, 2]),  # 2.0, 1.2, 0.8 -> 2, 1, 1
        ((12, 5, 7), 4, None, [0, 0, 1, 2]),  # 1.33 each -> the tie goes to objective 0
        ((12, 5, 7), 5, (0.6, 0.4, 0.0), [0, 0, 0, 1, 1]),
    ],
)
def test_every_block_has_the_requested_composition(rows_per_objective, batch_size, proportions, composition):
    labels = one_label_matrix(rows_per_objective)
    sampler = ObjectiveBalancedSampler(labels, batch_size, proportions, seed=3)
    assert sampler.balanced
    assert len(sampler) == -(-len(labels) // batch_size) * batch_size
    sampled_blocks = blocks(sampler)
    assert len(sampled_blocks) * batch_size == len(sampler)
    for block in sampled_blocks:
        assert [objective_of(labels, index) for index in block] == composition


def test_objectives_are_drawn_without_repeats_until_exhausted():
    labels = one_label_matrix((40, 3))
    sampler = ObjectiveBalancedSampler(labels, batch_size=4, seed=1)
    indices = list(sampler)
    small = [index for index in indices if objective_of(labels, index) == 1]
    large = [index for index in indices if objective_of(labels, index) == 0]
    assert len(small) == 22 and len(large) == 22
    for start in range(0, 21, 3):  # each run of 3 draws is a fresh permutation of the 3 rows
        assert sorted(small[start : start + 3]) == [40, 41, 42]
    assert len(set(large)) == 22


def test_sampler_is_deterministic_and_set_epoch_changes_the_order():
    labels = one_label_matrix((20, 20))
    first, second = ObjectiveBalancedSampler(labels, 4, seed=7), ObjectiveBalancedSampler(labels, 4, seed=7)
    epoch_0 = list(first)
    assert epoch_0 == list(second) == list(first)
    first.set_epoch(1)
    epoch_1 = list(first)
    assert epoch_1 != epoch_0 and sorted(epoch_1) == sorted(epoch_0) == list(range(40))
    second.set_epoch(1)
    assert list(second) == epoch_1
    first.set_epoch(0)
    assert list(first) == epoch_0
    assert list(ObjectiveBalancedSampler(labels, 4, seed=8)) != epoch_0


def test_multi_labelled_rows_are_permuted_as_a_whole():
    labels = [[1, -1], [1, 0], [-1, 1], [0, 1], [1, 1]]
    sampler = ObjectiveBalancedSampler(torch.tensor(labels), batch_size=2, seed=0)
    assert not sampler.balanced and len(sampler) == 5
    order = list(sampler)
    assert sorted(order) == [0, 1, 2, 3, 4] and order == list(ObjectiveBalancedSampler(labels, 2, seed=0))
    sampler.set_epoch(1)
    assert sorted(sampler) == [0, 1, 2, 3, 4]
    with pytest.warns(UserWarning, match="ignores proportions"):
        ObjectiveBalancedSampler(labels, 2, proportions=(0.5, 0.5))


@pytest.mark.parametrize(
    ("proportions", "problem"),
    [
        ((0.5, 0.6), "sum to 1"),
        ((1.5, -0.5), "non-negative"),
        ((1.0,), "one value per objective"),
        ((0.0, 1.0), "objective 1 has proportion 1 but no rows"),
    ],
)
def test_sampler_rejects_proportions_off_the_simplex(proportions, problem):
    labels = one_label_matrix((4, 0)) if problem.startswith("objective") else one_label_matrix((4, 4))
    with pytest.raises(ValueError, match=problem):
        ObjectiveBalancedSampler(labels, 4, proportions)


def test_balanced_batches_from_real_data_end_to_end(shipped_data, tiny_tokenizer, hh_rlhf):
    paths = {
        "helpful": shipped_data / hh_rlhf / "helpful" / "test.jsonl",
        "harmless": shipped_data / hh_rlhf / "harmless" / "test.jsonl",
    }
    dataset, names = load_preferences(paths)
    subset = dataset.select(list(range(12)) + list(range(300, 320)))
    tokenised, _ = tokenize_preferences(subset, tiny_tokenizer, max_length=96)
    sampler = ObjectiveBalancedSampler(tokenised["labels"], batch_size=4, proportions=(0.75, 0.25))
    loader = DataLoader(
        tokenised, batch_size=4, sampler=sampler, collate_fn=PreferenceCollator(tiny_tokenizer.pad_token_id)
    )
    batches = list(loader)
    assert len(batches) == 8
    for batch in batches:
        assert batch["labels"].tolist() == [[1, 0], [1, 0], [1, 0], [0, 1]]
        assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 96
        assert (batch["response_mask"] <= batch["attention_mask"]).all()
