"""``paretoalign transfer``: online preference learning under a label budget, borrowing from imperfect reward models.

Build (oracle, sources, prompts, policy; or resume from ``output_dir/checkpoint``) -> iterate
(:class:`paretoalign.trainers.transfer.TransferTrainer`: collect pairs labelled by the oracle, then train on them with
:func:`preference_update`, the preference trainer with one objective) -> write the model, ``metrics.jsonl`` and the
checkpoint after every iteration -> print one row per iteration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paretoalign.config import parse_config
from paretoalign.oracles import OracleInterrupted
from paretoalign.trainers.preference import ParetoPreferenceConfig, ParetoPreferenceTrainer
from paretoalign.trainers.transfer import PairUpdate, TransferConfig, TransferTrainer

__all__ = ["main", "preference_update", "run_transfer"]

#: The single objective of the pairs an oracle labels.
ORACLE_OBJECTIVE = "oracle"


def preference_update(config: TransferConfig) -> PairUpdate:
    """The update of one transfer iteration: :class:`ParetoPreferenceTrainer` on the iteration's pairs, one
    objective, ``epochs_per_iteration`` epochs of AdamW at the constant ``learning_rate`` in batches of
    ``batch_size`` pairs, seeded per iteration (``seed * 1000 + iteration``), no gradient clipping, no checkpoints."""

    def update(model, tokenizer, pairs, reference, iteration: int) -> dict[str, Any]:
        args = ParetoPreferenceConfig(
            output_dir=str(Path(config.output_dir) / "iterations"),
            objectives=[ORACLE_OBJECTIVE],
            weighting="weighted_sum",
            loss_type=config.loss_type,
            length_normalized=config.average_logps,
            beta=config.beta,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            num_train_epochs=config.epochs_per_iteration,
            per_device_train_batch_size=config.batch_size,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=0.0,
            seed=config.seed * 1000 + iteration,
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            use_lora=config.use_lora,
        )
        trainer = ParetoPreferenceTrainer(
            model=model, args=args, objective_names=[ORACLE_OBJECTIVE], train_dataset=pairs,
            processing_class=tokenizer, ref_model=reference,
        )
        result = trainer.train()
        history = trainer.state.log_history
        losses = [entry[f"loss/{ORACLE_OBJECTIVE}"] for entry in history if f"loss/{ORACLE_OBJECTIVE}" in entry]
        accuracies = [entry[f"accuracy/{ORACLE_OBJECTIVE}"] for entry in history
                      if f"accuracy/{ORACLE_OBJECTIVE}" in entry]
        return {
            "train_loss": sum(losses) / len(losses) if losses else None,
            "train_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
            "train_steps": result.global_step,
            "skipped_steps": trainer.skip_guard.total,
        }

    return update


def run_transfer(config: TransferConfig, **trainer_arguments) -> dict[str, Any]:
    """Build a :class:`TransferTrainer` for ``config`` with :func:`preference_update` and run it."""
    return TransferTrainer(config, preference_update(config), **trainer_arguments).train()


def main(config_file: str | None, overrides: list[str], console: Console) -> int:
    config = parse_config(TransferConfig, config_file, overrides)
    try:
        result = run_transfer(config)
    except OracleInterrupted as stop:
        console.print(f"[bold yellow]stopped:[/bold yellow] {stop}")
        return 1
    table = Table(title=f"transfer: {result['labels_spent']} of {result['label_budget']} labels spent")
    for column in ("iteration", "labels", "pairs", "source", "est. win rate", "win rate vs initial"):
        table.add_column(column, justify="right")
    for row in result["history"]:
        win, evaluation = row["selected_win_rate"], row.get("eval_win_rate_vs_initial")
        table.add_row(str(row["iteration"]), str(row["labels_spent"]), str(row["pairs"]), row["selected_source"],
                      "-" if win is None else f"{win:.3f}", "-" if evaluation is None else f"{evaluation:.3f}")
    console.print(table)
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0
