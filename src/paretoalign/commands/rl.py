"""``paretoalign rl``: one multi-reward RL run (GRPO, GDPO or per-reward gradients), top to bottom.

Build (the reward functions first, so a bad spec fails before anything loads; the policy with LoRA; training and
held-out prompts) -> score one completion per held-out prompt with every reward -> train
(:class:`paretoalign.trainers.grpo.MultiRewardGRPOTrainer`) -> score again -> write ``model/``, ``config.yaml`` and
``metrics.json`` (per-reward held-out means before and after, the collapse metrics of the training batches, TRL's log
history) -> print the before / after table.

Held-out scores: one completion per prompt (greedy, or sampled at the training temperature with
``eval_do_sample``; :func:`paretoalign.generation.generate_completions`), every reward called on it as the trainer
calls it; per reward the mean over the scored completions and the share scored (rewards unconditioned).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from transformers import set_seed

from paretoalign.config import config_to_dict, parse_config
from paretoalign.data.prompts import BUILTIN_PROMPT_SETS, load_prompts
from paretoalign.generation import encode_prompts, generate_completions
from paretoalign.io import write_json_atomic, write_yaml_atomic
from paretoalign.models import save_policy
from paretoalign.rewards.specs import build_rewards
from paretoalign.scoring import reward_summary, score_rewards
from paretoalign.trainers.grpo import MultiRewardGRPOConfig, MultiRewardGRPOTrainer, resolve_conditions

__all__ = ["main", "prompt_datasets", "score_completions", "train_rl"]


def prompt_datasets(config: MultiRewardGRPOConfig):
    """(training prompts, held-out prompts or None) from ``config.prompts``: the last ``num_eval_prompts`` rows are
    held out; a file is shuffled with ``config.seed`` first."""
    wanted = config.num_problems + config.num_eval_prompts
    if config.prompts in [f"builtin:{name}" for name in BUILTIN_PROMPT_SETS]:
        dataset = load_prompts(config.prompts, limit=wanted, seed=config.seed)
    else:
        dataset = load_prompts(config.prompts).shuffle(seed=config.seed)
        if len(dataset) <= config.num_eval_prompts:
            raise ValueError(
                f"prompts: {config.prompts} has {len(dataset)} prompts; num_eval_prompts={config.num_eval_prompts} "
                "leaves none to train on."
            )
    num_train = min(config.num_problems, len(dataset) - config.num_eval_prompts)
    train = dataset.select(range(num_train))
    if not config.num_eval_prompts:
        return train, None
    return train, dataset.select(range(len(dataset) - config.num_eval_prompts, len(dataset)))


def score_completions(model, tokenizer, dataset, rewards: dict, config: MultiRewardGRPOConfig) -> dict[str, dict]:
    """Per reward, :func:`paretoalign.scoring.reward_summary` of one completion per held-out prompt."""
    prompts = list(dataset["prompt"])
    completions = generate_completions(
        model, tokenizer, encode_prompts(tokenizer, prompts, add_special_tokens=False),
        max_new_tokens=config.max_completion_length, do_sample=config.eval_do_sample,
        temperature=config.temperature, batch_size=16,
    )
    texts = [rows[0].text for rows in completions]
    ids = [rows[0].token_ids for rows in completions]
    columns = {key: list(dataset[key]) for key in dataset.column_names if key != "prompt"}
    scores = score_rewards(rewards, prompts, texts, ids, columns)
    return {name: reward_summary(values) for name, values in scores.items()}


def _training_summary(log_history: list[dict]) -> dict[str, float]:
    """Means over the logged training steps of the collapse metrics (every ``*distinct_*`` key)."""
    summary = {}
    for key in sorted({key for entry in log_history for key in entry if "distinct_" in key}):
        values = [entry[key] for entry in log_history if isinstance(entry.get(key), (int, float))]
        if values:
            summary[key] = sum(values) / len(values)
    return summary


def train_rl(config: MultiRewardGRPOConfig) -> dict[str, Any]:
    """Train one policy with K rewards end to end into ``config.output_dir``; returns ``metrics.json``."""
    if not config.rewards:
        raise ValueError("rewards is not set: list the reward functions, e.g. [{name: answer}, {name: format}].")
    rewards = build_rewards(config.rewards, "rewards")
    names = list(rewards)
    config.reward_weights = config.validated_reward_weights(names)
    if config.per_reward_gradients:
        config.build_weighting(names)
    resolve_conditions(config.conditional_rewards, names)

    set_seed(config.seed)
    model, tokenizer = config.load_model()
    train_set, held_out = prompt_datasets(config)
    model = config.with_lora(model)
    metrics: dict[str, Any] = {
        "rewards": names,
        "reward_weights": config.reward_weights,
        "multi_objective_aggregation": config.multi_objective_aggregation,
        "weighting": config.weighting,
    }
    if held_out is not None:
        metrics["before"] = score_completions(model, tokenizer, held_out, rewards, config)

    trainer = MultiRewardGRPOTrainer(
        model=model, reward_funcs=list(rewards.values()), args=config, train_dataset=train_set,
        processing_class=tokenizer,
    )
    output_dir = Path(config.output_dir)
    if config.should_save:  # the main process writes the run's files; every process trains
        output_dir.mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(output_dir / "config.yaml", config_to_dict(config))
    started = time.perf_counter()
    result = trainer.train()
    metrics["train"] = {
        "steps": result.global_step,
        "loss": result.training_loss,
        "seconds": time.perf_counter() - started,
        "skipped_steps": trainer.skip_guard.total,
        **_training_summary(trainer.state.log_history),
    }
    if held_out is not None:
        metrics["after"] = score_completions(trainer.model, tokenizer, held_out, rewards, config)
    metrics["log_history"] = trainer.state.log_history
    if config.should_save:
        save_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output_dir / "model")
        write_json_atomic(output_dir / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def main(config_file: str | None, overrides: list[str], console: Console) -> int:
    config = parse_config(MultiRewardGRPOConfig, config_file, overrides)
    metrics = train_rl(config)
    if "before" in metrics and "after" in metrics:
        sampling = "sampled" if config.eval_do_sample else "greedy"
        table = Table(title=f"held-out mean reward per reward function ({sampling} completions)")
        for column in ("reward", "weight", "before", "after", "scored after"):
            table.add_column(column, justify="left" if column == "reward" else "right", no_wrap=column == "reward")
        for name, weight in zip(metrics["rewards"], metrics["reward_weights"]):
            before, after = metrics["before"][name], metrics["after"][name]
            table.add_row(name, f"{weight:.2f}", f"{before['mean']:.3f}", f"{after['mean']:.3f}",
                          f"{after['scored']:.2f}")
        console.print(table)
    train = metrics["train"]
    console.print(
        f"{train['steps']} steps, {train['skipped_steps']} skipped; distinct advantages per group "
        f"{train.get('advantages/distinct_per_group', float('nan')):.2f} "
        f"(rewards: {train.get('rewards/distinct_per_group', float('nan')):.2f})"
    )
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0
