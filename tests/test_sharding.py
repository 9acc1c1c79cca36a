"""The Gram matrix and the combined gradient from gradient shards equal those of the whole gradients."""

from __future__ import annotations

import pytest
import torch

from paretoalign.sharding import add_local_gradients, combine_shards, gram_from_shards, local_shard

#: Sizes of three parameters' gradients and where each is cut between two processes (uneven, one empty part).
PARAMETER_SIZES = [7, 12, 5]
CUTS = [3, 12, 1]


def split_between_two_processes(gradients: list[list[torch.Tensor]]) -> list[list[list[torch.Tensor]]]:
    """``gradients[k][p]`` -> ``shards[process][k][p]``: parameter p cut at ``CUTS[p]``."""
    return [
        [[gradient[:cut] if process == 0 else gradient[cut:] for gradient, cut in zip(objective, CUTS)]
         for objective in gradients]
        for process in (0, 1)
    ]


def random_gradients(num_objectives: int, seed: int) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(size, generator=generator, dtype=torch.float64) for size in PARAMETER_SIZES]
            for _ in range(num_objectives)]


@pytest.mark.parametrize("num_objectives", [1, 2, 3, 4])
def test_the_gram_of_two_processes_shards_equals_the_unsharded_gram(num_objectives):
    gradients = random_gradients(num_objectives, seed=num_objectives)
    whole = torch.stack([torch.cat(objective) for objective in gradients])
    expected = whole @ whole.T
    shards = split_between_two_processes(gradients)
    partial = [gram_from_shards(process) for process in shards]

    def all_reduce_sum(gram: torch.Tensor) -> None:  # what process 0 receives from the all-reduce
        gram.copy_(partial[0] + partial[1])

    assert torch.allclose(gram_from_shards(shards[0], all_reduce_sum), expected, atol=1e-12)
    assert torch.allclose(gram_from_shards(gradients), expected, atol=1e-12)  # one process holds every shard
    assert not torch.allclose(partial[0], expected)  # one process's shards alone are not enough


@pytest.mark.parametrize("num_objectives", [1, 2, 3, 4])
def test_the_combined_shards_are_the_shards_of_the_combined_gradient(num_objectives):
    gradients = random_gradients(num_objectives, seed=10 + num_objectives)
    alpha = torch.linspace(0.1, 0.9, num_objectives, dtype=torch.float64)
    expected = sum(alpha[k] * torch.cat(gradients[k]) for k in range(num_objectives))
    shards = split_between_two_processes(gradients)
    combined = [torch.cat(pieces) for pieces in zip(*(combine_shards(process, alpha) for process in shards))]
    assert torch.allclose(torch.cat(combined), expected, atol=1e-12)


def test_float32_shards_give_a_float64_gram():
    gradients = [[torch.tensor([1.0, 2.0]), torch.tensor([3.0])], [torch.tensor([0.0, 1.0]), torch.tensor([-1.0])]]
    gram = gram_from_shards(gradients)
    assert gram.dtype == torch.float64
    assert gram.tolist() == [[14.0, -1.0], [-1.0, 2.0]]


def test_objectives_with_different_numbers_of_shards_are_refused():
    with pytest.raises(ValueError, match=r"every objective needs 2 gradient shards, got \[2, 1\]"):
        gram_from_shards([[torch.ones(2), torch.ones(1)], [torch.ones(2)]])
    with pytest.raises(ValueError, match="alpha has 3 entries for 2 objectives"):
        combine_shards([[torch.ones(2)], [torch.ones(2)]], torch.ones(3))


def test_plain_parameters_receive_plain_gradients_added_to_what_they_hold():
    first, second = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    first.grad = torch.tensor([1.0, 1.0])
    add_local_gradients([first, second], [torch.tensor([2.0, 3.0]), torch.tensor([4.0])])
    assert first.grad.tolist() == [3.0, 4.0]
    assert second.grad.tolist() == [4.0]
    assert local_shard(first) is first
