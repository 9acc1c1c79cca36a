r"""Per-objective gradients -> Gram matrix -> weighting -> one combined gradient in ``.grad``.

Given the K objective losses of one forward pass, :class:`ObjectiveGradients` forms the Gram matrix
``G_kl = <g_k, g_l>`` of their gradients over the trainable parameters, asks a weighting for the coefficients
``alpha`` and leaves ``d = sum_k alpha_k g_k`` in each parameter's ``.grad``, ready for any torch optimizer.

Modes:

* ``exact``: K backward passes (``torch.autograd.grad`` with a retained graph); the per-objective gradients are
  kept, so they can be accumulated over micro-batches (:meth:`ObjectiveGradients.accumulate`) and all-reduced
  across processes before the Gram is formed (the Gram of summed gradients is not the sum of local Grams).
* ``autogram``: ``torchjd.autogram.Engine`` computes ``G`` without materialising the K gradients, then one
  backward of ``sum_k alpha_k L_k`` (Quinton & Rey 2024, arXiv 2406.16232, Algorithm 3). It needs the whole
  batch in one forward (no accumulation of micro-batches).
* ``fused``: for losses that depend on the parameters only through N per-pair values ``v_i`` (the preference
  trainer's log-ratio differences), ``g_k = sum_i (dL_k / dv_i) grad v_i``: layer hooks turn ONE backward pass of
  ``sum_i v_i`` into the K per-objective gradients (:mod:`paretoalign.fused`), which then go through the same
  buffers as ``exact``: micro-batch accumulation and the all-reduce across processes work as there. Pass the values
  as ``pair_values``; batch row b of the forward pass belongs to pair ``b mod N``. ``pair_values`` may also be
  [N, T] (the RL trainer's per-token log-probabilities): one backward pass per rank of a row's T x K coefficients,
  one for on-policy GRPO.

Under FSDP2 (``fully_shard``) the parameters are sharded: ``exact`` runs each objective's backward pass through
FSDP2's own reduce-scatter, keeps this process's shard of each gradient, forms the Gram from per-shard dot products
summed over the shard group (K x K numbers, :mod:`paretoalign.sharding`) and writes alpha's combination into the local
shards.

Faults: an optimizer step whose loss, reward or gradient is not finite is skipped (no parameter changes);
:class:`SkipGuard` counts the skips and stops the run with :class:`NonFiniteTrainingError` after
``limit`` skipped steps in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchjd.aggregation import Weighting
from torchjd.autogram import Engine

from paretoalign.fused import FusedObjectiveGradients
from paretoalign.sharding import (
    add_local_gradients,
    backward_local_gradients,
    combine_shards,
    gram_from_shards,
    is_sharded,
    local_shard,
    sum_over_shard_group,
)

__all__ = [
    "ENGINE_MODES", "EngineStep", "NonFiniteTrainingError", "ObjectiveGradients", "SkipGuard", "mean_across_processes",
]

logger = logging.getLogger(__name__)

ENGINE_MODES = ("exact", "autogram", "fused")


class NonFiniteTrainingError(RuntimeError):
    """Raised after too many consecutive optimizer steps were skipped for a non-finite loss, reward or gradient."""


@dataclass
class SkipGuard:
    """Bookkeeping of skipped optimizer steps: ``consecutive`` skips in a row, ``total`` skips in the run.

    :meth:`record` takes the outcome of one optimizer step (``fault`` is None for a step that was taken, else why it
    was skipped), logs a skip with its step number, and raises :class:`NonFiniteTrainingError` once ``limit`` steps
    in a row were skipped.
    """

    limit: int
    consecutive: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"max_consecutive_skipped_steps must be at least 1, got {self.limit}.")

    def record(self, fault: str | None, step_number: int) -> None:
        if fault is None:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        logger.warning("step %d skipped: %s", step_number, fault)
        if self.consecutive >= self.limit:
            raise NonFiniteTrainingError(
                f"{self.consecutive} consecutive steps were skipped (last at step {step_number}: {fault}); stopping. "
                "Check the data and the reward functions, lower the learning rate, or raise "
                "max_consecutive_skipped_steps. Checkpoints already written are intact."
            )


@dataclass
class EngineStep:
    """What one combined update used: the Gram matrix (float64), alpha, and whether everything was finite.

    When ``finite`` is False nothing was written to ``.grad`` and ``alpha`` is NaN: the caller skips the step.
    """

    gram: Tensor
    alpha: Tensor
    finite: bool

    @property
    def gradient_norms(self) -> Tensor:
        """``||g_k||`` for each objective."""
        return self.gram.diagonal().clamp_min(0.0).sqrt()

    @property
    def cosines(self) -> Tensor:
        """``cos(g_k, g_l)``; 0 where either gradient is zero."""
        norms = self.gradient_norms
        outer = norms[:, None] * norms[None, :]
        return torch.where(outer > 0, self.gram / outer.clamp_min(1e-300), torch.zeros_like(self.gram))


def mean_across_processes(num_processes: int) -> Callable[[Tensor], None] | None:
    """The ``reduce_gradients`` hook of data-parallel training: an in-place all-reduce mean over the
    ``num_processes`` processes of the default process group; None for one process (nothing to reduce)."""
    if num_processes == 1:
        return None

    def all_reduce_mean(tensor: Tensor) -> None:
        torch.distributed.all_reduce(tensor)
        tensor.div_(num_processes)

    return all_reduce_mean


def _trainable_parameters(source: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    params = source.parameters() if isinstance(source, nn.Module) else source
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False.")
    return trainable


class ObjectiveGradients:
    """Combine the gradients of K objective losses with a Gram-matrix weighting.

    Args:
        model: the module being trained (required for ``autogram`` and ``fused``), or an iterable of parameters
            (``exact``).
        weighting: a :class:`torchjd.aggregation.Weighting` mapping the K x K Gram matrix to alpha [K].
        mode: ``exact``, ``autogram`` or ``fused``.
        reduce_gradients: optional in-place all-reduce (sum or mean across processes) applied to each accumulated
            per-objective gradient before the Gram is formed (``exact`` and ``fused``), so that multi-process training
            combines the gradients of the global batch, not of each shard.
    """

    def __init__(
        self,
        model: nn.Module | Iterable[Tensor],
        weighting: Weighting,
        mode: str = "exact",
        reduce_gradients: Callable[[Tensor], None] | None = None,
    ) -> None:
        if mode not in ENGINE_MODES:
            raise ValueError(f"unknown engine mode {mode!r}; choose one of {ENGINE_MODES}.")
        if mode in ("autogram", "fused") and not isinstance(model, nn.Module):
            raise ValueError(f"the {mode} engine needs the model (an nn.Module), not a list of parameters.")
        self.params = _trainable_parameters(model)
        self.weighting = weighting
        self.mode = mode
        self.reduce_gradients = reduce_gradients
        self.sharded = any(is_sharded(param) for param in self.params)
        if self.sharded and (mode != "exact" or reduce_gradients is not None):
            raise ValueError(
                "FSDP2-sharded parameters need mode='exact' and no reduce_gradients (FSDP2 reduce-scatters each "
                f"gradient itself); got mode={mode!r}{' and reduce_gradients' if reduce_gradients else ''}."
            )
        self._reduce_gram = sum_over_shard_group(self.params)
        self._buffers: list[list[Tensor]] | None = None
        self._autogram = None
        self._fused = None
        if mode == "fused":
            self._fused = FusedObjectiveGradients(model, self.params)
        if mode == "autogram":
            self._autogram = Engine(model, batch_dim=None)

    @staticmethod
    def _check_losses(losses: Tensor) -> None:
        if losses.ndim != 1 or losses.numel() == 0:
            raise ValueError(f"losses must be a non-empty vector [K], got shape {tuple(losses.shape)}.")

    def accumulate(self, losses: Tensor, scale: float = 1.0, pair_values: Tensor | None = None) -> None:
        """Add ``scale * grad L_k`` to objective k's gradient buffer.

        ``exact`` runs one backward pass per objective. ``fused`` runs one backward pass of `pair_values`, the values
        through which alone the losses depend on the parameters: [N], one per pair (batch row b of the forward pass
        belongs to pair ``b mod N``), or [N, T], T per row (per-token log-probabilities; one backward pass per rank
        of a row's T x K coefficients ``dL_k/dv_nt``, one for on-policy GRPO losses); see :mod:`paretoalign.fused`.
        ``exact`` ignores `pair_values`.
        """
        if self.mode == "autogram":
            raise RuntimeError("the autogram engine does not accumulate per-objective gradients over micro-batches.")
        self._check_losses(losses)
        num_objectives = losses.numel()
        if self._buffers is None:
            self._buffers = [[torch.zeros_like(local_shard(p)) for p in self.params] for _ in range(num_objectives)]
        elif len(self._buffers) != num_objectives:
            raise ValueError(f"got {num_objectives} losses, but earlier micro-batches had {len(self._buffers)}.")
        if self.mode == "fused":
            self._fused.accumulate(losses, pair_values, self._buffers, scale)
            return
        if self.sharded:
            for buffers, shards in zip(self._buffers, backward_local_gradients(losses, self.params)):
                for buffer, shard in zip(buffers, shards or ()):
                    buffer.add_(shard, alpha=scale)
            return
        for k in range(num_objectives):
            if not losses[k].requires_grad:
                continue
            grads = torch.autograd.grad(
                losses[k], self.params, retain_graph=k < num_objectives - 1, allow_unused=True
            )
            for buffer, grad in zip(self._buffers[k], grads):
                if grad is not None:
                    buffer.add_(grad, alpha=scale)

    def use_exact(self) -> None:
        """Switch a ``fused`` engine to ``exact``: the layer hooks come off, gradients accumulated so far are kept."""
        if self.mode != "fused":
            raise RuntimeError(f"use_exact() switches the fused engine to exact; this engine is {self.mode!r}.")
        self._fused.remove_hooks()
        self._fused = None
        self.mode = "exact"

    def discard(self) -> None:
        """Drop the accumulated per-objective gradients (a skipped update)."""
        self._buffers = None

    def step(self, scale: float = 1.0) -> EngineStep:
        """Form the Gram of the accumulated gradients, weight them, add ``scale * sum_k alpha_k g_k`` to ``.grad``.

        ``.grad`` is added to, never overwritten, so several steps in one optimizer step sum their updates: one step
        per micro-batch with ``scale = 1 / accumulation steps`` is the RACO authors' per-micro-batch rule.
        """
        if self._buffers is None:
            raise RuntimeError("step() called before any accumulate().")
        buffers, self._buffers = self._buffers, None
        if self.reduce_gradients is not None:
            for objective in buffers:
                for buffer in objective:
                    self.reduce_gradients(buffer)
        num_objectives = len(buffers)
        gram = gram_from_shards(buffers, self._reduce_gram)
        if not torch.isfinite(gram).all():
            return EngineStep(gram=gram, alpha=torch.full((num_objectives,), float("nan")), finite=False)
        alpha = self.weighting(gram)
        add_local_gradients(self.params, combine_shards(buffers, scale * alpha))
        return EngineStep(gram=gram, alpha=alpha.detach().double().cpu(), finite=True)

    def backward(self, losses: Tensor, pair_values: Tensor | None = None) -> EngineStep:
        """One combined update from the K losses of one forward pass; returns its Gram matrix and alpha.

        ``fused`` needs `pair_values` (see :meth:`accumulate`); the other modes ignore it.
        """
        self._check_losses(losses)
        if self.mode in ("exact", "fused"):
            self.accumulate(losses, pair_values=pair_values)
            return self.step()
        if not torch.isfinite(losses).all():
            num_objectives = losses.numel()
            nan = torch.full((num_objectives, num_objectives), float("nan"), dtype=torch.float64)
            return EngineStep(gram=nan, alpha=torch.full((num_objectives,), float("nan")), finite=False)
        gram = self._autogram.compute_gramian(losses).detach().double().cpu()
        gram = 0.5 * (gram + gram.T)
        if not torch.isfinite(gram).all():
            return EngineStep(gram=gram, alpha=torch.full((losses.numel(),), float("nan")), finite=False)
        alpha = self.weighting(gram)
        losses.backward(alpha.to(device=losses.device, dtype=losses.dtype))
        return EngineStep(gram=gram, alpha=alpha.detach().double().cpu(), finite=True)
