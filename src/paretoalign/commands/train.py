"""``paretoalign train``: one multi-objective preference run, top to bottom.

Build (policy, LoRA, training and held-out pairs) -> held-out metrics before training -> train
(:class:`paretoalign.trainers.preference.ParetoPreferenceTrainer`) -> held-out metrics after -> write ``model/``
(adapter or full weights with the tokenizer, loadable with ``from_pretrained``), ``config.yaml``, TensorBoard logs
and ``metrics.json`` -> print the before / after table.

``metrics.json`` holds ``objectives``, ``weights``, ``train`` (steps, loss, timings), ``log_history`` and, with
``eval_data``, ``before`` and ``after`` (:func:`paretoalign.scoring.preference_report` per objective) and
``after_outcomes``: per objective the trained policy's outcome 1, 1/2 or 0 on each held-out pair labelled for it, in
pair order (:func:`paretoalign.scoring.preference_outcomes`; their mean is ``after``'s accuracy; before training
every outcome is 1/2).

At initialisation the policy is the reference (a fresh LoRA adapter is zero; full fine-tuning copies the weights),
so the held-out log-probabilities scored before training are the reference's, and are reused after training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from transformers import set_seed

from paretoalign.config import config_to_dict, parse_config
from paretoalign.data.tokenize import with_reference_logps
from paretoalign.io import write_json_atomic, write_yaml_atomic
from paretoalign.models import place_on, save_policy
from paretoalign.scoring import cached_dataset_logps, dataset_logps, preference_outcomes, preference_report
from paretoalign.trainers.preference import (
    ParetoPreferenceConfig,
    ParetoPreferenceTrainer,
    prepare_preference_data,
)

__all__ = ["main", "print_before_after", "resume_argument", "train"]


def resume_argument(value: str | None) -> str | bool | None:
    """``resume_from_checkpoint``: a checkpoint folder, or ``last`` / ``true`` for the newest in output_dir."""
    if isinstance(value, str) and value.strip().lower() in ("last", "true"):
        return True
    return value


def train(config: ParetoPreferenceConfig) -> dict[str, Any]:
    """Train one model end to end into ``config.output_dir`` (see the module docstring); returns ``metrics.json``."""
    if config.train_data is None:
        raise ValueError("train_data is not set: give a file of multi-labelled pairs or a mapping objective -> file.")
    set_seed(config.seed)
    model, tokenizer = config.load_model()
    train_set, names = prepare_preference_data(
        config, config.train_data, tokenizer, config.objectives, config.max_train_pairs, "train"
    )
    weights = config.resolved_weights(names)
    eval_set = None
    if config.eval_data is not None:
        eval_set, _ = prepare_preference_data(config, config.eval_data, tokenizer, names, config.max_eval_pairs, "eval")
    model = place_on(config.with_lora(model), config.device)
    average = config.average_logps
    batch_size = config.per_device_eval_batch_size
    metrics: dict[str, Any] = {"objectives": names, "weights": weights}

    # What the reference log-probabilities depend on besides the pairs' tokens (the initial policy: a fresh LoRA
    # adapter changes nothing until it trains).
    reference_key = {"model": str(config.model_name_or_path), "revision": config.model_revision,
                     "torch_dtype": config.torch_dtype, "quantized": config.load_in_4bit or config.load_in_8bit}
    eval_reference = None
    if eval_set is not None:
        eval_labels = torch.tensor(eval_set["labels"])
        eval_reference = cached_dataset_logps(model, eval_set, tokenizer.pad_token_id, config.reference_cache_dir,
                                              reference_key, batch_size, average, "held-out pairs (reference)")
        metrics["before"] = preference_report(eval_reference, eval_reference, eval_labels, names, config.beta,
                                              config.loss_type)
    if config.precompute_ref_logps:
        train_reference = cached_dataset_logps(model, train_set, tokenizer.pad_token_id, config.reference_cache_dir,
                                               reference_key, batch_size, average, "training pairs (reference)")
        train_set = with_reference_logps(train_set, train_reference)

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
        after = dataset_logps(model, eval_set, tokenizer.pad_token_id, batch_size, average, "held-out pairs (trained)")
        metrics["after"] = preference_report(after, eval_reference, eval_labels, names, config.beta, config.loss_type)
        metrics["after_outcomes"] = preference_outcomes(after, eval_reference, eval_labels, names, config.beta)
    # Under FSDP every process holds a shard: gathering the full weights is a collective all of them enter.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if config.should_save:
        save_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output_dir / "model", state_dict)
        write_json_atomic(output_dir / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def print_before_after(metrics: dict, console: Console) -> None:
    """A table of each objective's held-out accuracy before and after training, margin and loss after (before
    training the policy is the reference: accuracy 1/2, margin 0, loss log 2 for every objective)."""
    if "before" not in metrics or "after" not in metrics:
        return
    table = Table(title="held-out preference metrics (implicit reward; a tie counts 1/2)")
    table.add_column("objective", min_width=max(len(name) for name in metrics["objectives"]))
    for column in ("weight", "pairs", "acc. before", "acc. after", "margin after", "loss after"):
        table.add_column(column, justify="right")
    for name, weight in zip(metrics["objectives"], metrics["weights"]):
        before, after = metrics["before"][name], metrics["after"][name]
        table.add_row(name, f"{weight:.2f}", str(after["pairs"]), f"{before['accuracy']:.3f}",
                      f"{after['accuracy']:.3f}", f"{after['margin']:+.4f}", f"{after['loss']:.4f}")
    console.print(table)


def main(config_file: str | None, overrides: list[str], console: Console) -> int:
    config = parse_config(ParetoPreferenceConfig, config_file, overrides)
    metrics = train(config)
    print_before_after(metrics, console)
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0
