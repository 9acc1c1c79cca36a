r"""What every trainer built on ``transformers.Trainer`` shares: the skip guard, per-objective logs, atomic checkpoints.

:class:`ObjectiveTrainerMixin` goes first in the bases of a trainer (``class T(ObjectiveTrainerMixin, Trainer)``):

* :meth:`~ObjectiveTrainerMixin.finish_update` ends an accumulation window: it keeps the combined update, or, when
  the window had a fault (a non-finite loss, reward or gradient), drops every ``.grad`` so the optimizer step changes
  nothing, logs the skip and counts it in :class:`paretoalign.engine.SkipGuard`, which stops the run after
  ``max_consecutive_skipped_steps`` skips in a row;
* :meth:`~ObjectiveTrainerMixin.collective_fault` makes the decision to skip collective: with several processes a
  fault on any one of them (one all-reduce of a flag, before the per-objective gradients are all-reduced) skips the
  step on every process, so no process waits in a collective that another one skipped, and the processes keep
  identical parameters;
* per objective k it logs ``alpha/<k>``, ``grad_norm/<k>`` (``||g_k||``), ``cosine/<k>__<l>`` and, for RACO,
  ``clip_active``; ``skipped_steps`` is 1 for a skipped step and 0 otherwise;
* ``checkpoint-<step>`` is written into a hidden staging folder and renamed into place, so a crash never leaves a
  half-written checkpoint that ``resume_from_checkpoint`` could pick up.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from paretoalign.engine import EngineStep, SkipGuard
from paretoalign.weighting import ClippedCAGradWeighting

__all__ = ["ObjectiveTrainerMixin", "refuse_sharded_gradients"]


def refuse_sharded_gradients(distributed_type, gradients: str, advice: str, fsdp_version: int | None = None) -> None:
    """Raise ValueError where the per-objective gradients (``gradients`` names them in the message) cannot be formed;
    ``advice`` ends the message.

    DeepSpeed ZeRO reduces and partitions gradients inside its own backward hooks, and FSDP1 keeps them in flat
    buffers of whole layers, both out of reach of per-objective gradients: always refused. FSDP2 (``fully_shard``)
    leaves each process a ``DTensor`` shard of every gradient, from which :mod:`paretoalign.sharding` forms the Gram
    matrix: accepted when the caller passes ``fsdp_version`` (its trainer's exact engine handles sharded parameters),
    refused otherwise.
    """
    if distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(
            f"DeepSpeed ZeRO reduces and partitions gradients inside its own backward hooks, which the {gradients} "
            f"bypass; {advice}"
        )
    if distributed_type == DistributedType.FSDP and fsdp_version == 1:
        raise ValueError(
            f"FSDP1 reduces gradients into flat per-layer buffers inside its own backward hooks, which the "
            f"{gradients} bypass; {advice}"
        )
    if distributed_type == DistributedType.FSDP and fsdp_version != 2:
        raise ValueError(f"FSDP shards and reduces gradients inside its own backward hooks, which the {gradients} "
                         f"bypass; {advice}")


class ObjectiveTrainerMixin:
    """Skip guard, per-objective logging and atomic checkpoints for a ``transformers.Trainer`` subclass.

    The trainer sets ``objective_names``, ``weighting``, ``skip_guard`` and ``engine`` (an
    :class:`paretoalign.engine.ObjectiveGradients` or None) in its ``__init__``. Within an accumulation window it
    reports what went wrong with :meth:`note_fault`, asks :meth:`window_may_step` before the per-objective
    all-reduce, and closes the window with :meth:`end_window`.
    """

    objective_names: list[str]
    skip_guard: SkipGuard
    _window_fault: str | None = None

    def note_fault(self, fault: str | None) -> None:
        """Keep the first fault of the accumulation window (None: nothing went wrong)."""
        if fault is not None and self._window_fault is None:
            self._window_fault = fault

    def window_may_step(self) -> bool:
        """Whether no process had a fault in this window; collective: every process calls it at the window's end."""
        self._window_fault = self.collective_fault(self._window_fault)
        return self._window_fault is None

    def end_window(self, model: nn.Module, step: EngineStep | None, metrics: dict) -> None:
        """Close the accumulation window: drop the engine's per-objective gradients, keep or skip the update."""
        fault, self._window_fault = self._window_fault, None
        if self.engine is not None:
            self.engine.discard()
        self.finish_update(model, fault, step, metrics)

    def collective_fault(self, fault: str | None) -> str | None:
        """This process's ``fault``; with several processes, also a fault on another process (every process must
        call this at the same point of the window)."""
        if self.accelerator.num_processes == 1:
            return fault
        flag = torch.tensor([0.0 if fault is None else 1.0], device=self.accelerator.device)
        faulty = int(self.accelerator.reduce(flag, reduction="sum").item())
        if fault is None and faulty:
            return f"a non-finite loss, reward or gradient on {faulty} other process(es)"
        return fault

    def finish_update(self, model: nn.Module, fault: str | None, step: EngineStep | None, metrics: dict) -> None:
        """End of an accumulation window: keep the update (``fault`` None) or drop it; ``metrics`` collects the logs."""
        if fault is not None:
            for param in model.parameters():
                param.grad = None
        metrics["skipped_steps"].append(0.0 if fault is None else 1.0)
        if fault is None and step is not None:
            self.record_engine_step(step, metrics)
        self.skip_guard.record(fault, self.state.global_step + 1)

    def record_engine_step(self, step: EngineStep, metrics: dict) -> None:
        """``alpha``, gradient norms, pairwise cosines (and RACO's clip) of one combined update."""
        norms, cosines, names = step.gradient_norms, step.cosines, self.objective_names
        for k, name in enumerate(names):
            metrics[f"alpha/{name}"].append(float(step.alpha[k]))
            metrics[f"grad_norm/{name}"].append(float(norms[k]))
            for j in range(k + 1, len(names)):
                metrics[f"cosine/{name}__{names[j]}"].append(float(cosines[k, j]))
        if isinstance(self.weighting, ClippedCAGradWeighting):
            metrics["clip_active"].append(float(self.weighting.last_stats.clip_active))

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        """Write ``checkpoint-<step>`` atomically: into a hidden staging folder first, then renamed into place.

        Hugging Face's ``_save_checkpoint`` writes the weights, optimizer, scheduler, RNG states and trainer state
        one file after another; a crash in between would leave a folder that ``resume_from_checkpoint`` picks up
        and fails on (or, worse, half-restores). Here a crash leaves only ``.staging-checkpoint-<step>``, which
        resume ignores, and the newest complete checkpoint is used instead.
        """
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = Path(run_dir) / f".staging-{name}"
        if self.args.should_save and staging_root.exists():
            shutil.rmtree(staging_root)
        self._wait_for_every_process()  # no process writes into the staging folder before it is emptied
        output_dir, limit = self.args.output_dir, self.args.save_total_limit
        self.args.output_dir, self.args.save_total_limit = str(staging_root), None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir, self.args.save_total_limit = output_dir, limit
        # Every process writes files of its own (its RNG state; under FSDP its shards): all must be written before
        # the main process moves the folder.
        self._wait_for_every_process()
        if self.args.should_save:
            final = Path(run_dir) / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging_root / name, final)
            shutil.rmtree(staging_root)
            if self.state.best_model_checkpoint is not None and str(staging_root) in self.state.best_model_checkpoint:
                self.state.best_model_checkpoint = str(final)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self._wait_for_every_process()

    def _wait_for_every_process(self) -> None:
        if self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()
