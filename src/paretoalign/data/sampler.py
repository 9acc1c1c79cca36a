"""Objective-balanced sampling of preference rows: a fixed number of pairs of each objective per batch."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ObjectiveBalancedSampler"]


def _label_matrix(labels: Any) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        matrix = labels.detach().cpu().numpy()
    else:
        matrix = np.asarray(labels if isinstance(labels, np.ndarray) else [list(row) for row in labels])
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"labels must be a non-empty label matrix of shape [rows, objectives], got shape {matrix.shape}"
        )
    return matrix


def _largest_remainder_counts(proportions: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total`` closest to ``proportions * total``; ties go to the lower index."""
    exact = proportions * total
    counts = np.floor(exact).astype(np.int64)
    remainders = exact - counts
    order = sorted(range(len(proportions)), key=lambda index: (-remainders[index], index))
    for index in order[: total - int(counts.sum())]:
        counts[index] += 1
    return counts


class ObjectiveBalancedSampler(Sampler[int]):
    """Row indices in blocks of ``batch_size`` with a fixed number of pairs per objective.

    **One label per row** (one dataset per objective): every consecutive block of ``batch_size`` indices
    holds ``counts[k]`` rows of objective k, where ``counts`` is ``proportions * batch_size`` rounded by the
    largest-remainder method (ties to the lower objective index), rows grouped by objective in objective
    order inside a block. Each objective's rows are drawn from a seeded random permutation of its rows,
    re-permuted whenever they run out, so smaller objectives repeat within an epoch and larger ones may not
    be visited in full. ``len(sampler)`` is the number of rows rounded up to whole blocks,
    ``ceil(rows / batch_size) * batch_size``. ``batch_size`` should equal the batch size of the data loader
    that draws from the sampler, so that blocks and batches coincide.

    **Several labels per row** (multi-labelled pairs): every row counts for each of its objectives, so no
    balancing applies; the sampler yields a seeded random permutation of all rows (``len`` = rows) and
    ``proportions``, if given, are validated but unused (with a warning).

    The order depends only on ``seed`` and the epoch set with :meth:`set_epoch` (0 by default).

    Args:
        labels: the label matrix ``[rows, objectives]`` (nested lists, a numpy array, a tensor or a dataset's
            ``labels`` column).
        batch_size: rows per block.
        proportions: share of each objective in a block, non-negative and summing to 1; default equal.
        seed: seed of the permutations.
    """

    def __init__(self, labels: Any, batch_size: int, proportions: Sequence[float] | None = None, seed: int = 0):
        matrix = _label_matrix(labels)
        num_rows, num_objectives = matrix.shape
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.proportions = self._validated_proportions(proportions, num_objectives)
        labelled = matrix != 0
        self.balanced = bool((labelled.sum(axis=1) == 1).all())
        if not self.balanced:
            if proportions is not None:
                warnings.warn(
                    "rows carry several labels, so the sampler yields a permutation of all rows "
                    "and ignores proportions",
                    stacklevel=2,
                )
            return
        objective_of_row = labelled.argmax(axis=1)
        self.rows_by_objective = [np.flatnonzero(objective_of_row == k) for k in range(num_objectives)]
        self.block_counts = _largest_remainder_counts(self.proportions, batch_size)
        for k, (rows, count) in enumerate(zip(self.rows_by_objective, self.block_counts)):
            if count > 0 and len(rows) == 0:
                raise ValueError(f"objective {k} has proportion {self.proportions[k]:g} but no rows")

    @staticmethod
    def _validated_proportions(proportions: Sequence[float] | None, num_objectives: int) -> np.ndarray:
        if proportions is None:
            return np.full(num_objectives, 1.0 / num_objectives)
        values = np.asarray(proportions, dtype=np.float64)
        if values.shape != (num_objectives,):
            raise ValueError(
                f"proportions must hold one value per objective ({num_objectives}), got {list(proportions)}"
            )
        if not np.isfinite(values).all() or (values < 0).any() or abs(values.sum() - 1.0) > 1e-6:
            raise ValueError(f"proportions must be non-negative and sum to 1, got {list(proportions)}")
        return values

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (called by the Hugging Face Trainer at each epoch start)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if not self.balanced:
            return self.num_rows
        return math.ceil(self.num_rows / self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = np.random.default_rng([self.seed, self.epoch])
        if not self.balanced:
            yield from (int(index) for index in generator.permutation(self.num_rows))
            return
        streams = [generator.permutation(rows) for rows in self.rows_by_objective]
        positions = [0] * len(streams)
        for _ in range(len(self) // self.batch_size):
            for k, count in enumerate(self.block_counts):
                for _ in range(count):
                    if positions[k] == len(streams[k]):
                        streams[k] = generator.permutation(self.rows_by_objective[k])
                        positions[k] = 0
                    yield int(streams[k][positions[k]])
                    positions[k] += 1

