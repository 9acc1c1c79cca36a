r"""``paretoalign eval``: held-out numbers of a trained policy against its reference, top to bottom.

Build (the trained policy from ``<run>/model``; its reference: the same weights with the adapter disabled for a LoRA
adapter, else the base model ``model_name_or_path``) -> per-objective preference metrics on ``eval_data``
(:func:`paretoalign.scoring.preference_report`) -> with ``eval_rewards`` or ``eval_judge``: completions of the held-out prompts
from each policy, greedy or sampled (``eval_do_sample``: temperature, top_p, ``eval_samples_per_prompt`` per prompt,
seeded; :func:`paretoalign.generation.generate_completions`), every reward's mean over all completions and the
judge's win rate of the trained policy against the reference, completion by completion
(:func:`paretoalign.scoring.generation_report`)
-> write ``eval.json`` -> print the tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from rich.console import Console
from rich.table import Table
from torch import nn

from paretoalign.config import parse_config
from paretoalign.data.preferences import load_preferences
from paretoalign.data.prompts import load_prompts
from paretoalign.generation import (
    Completion,
    encode_prompts,
    generate_completions,
    generate_with_vllm,
    generation_backend,
)
from paretoalign.io import write_json_atomic
from paretoalign.models import BUILTIN_PREFIX, GGUF_SUFFIX, load_trained, resolve_model
from paretoalign.rewards.specs import build_reward, build_rewards, reward_label
from paretoalign.scoring import dataset_logps, generation_report, preference_report
from paretoalign.trainers.preference import ParetoPreferenceConfig, prepare_preference_data

__all__ = ["evaluate_trained", "evaluation_prompts", "main", "print_generation_scores", "vllm_completions"]


def evaluation_prompts(config: ParetoPreferenceConfig, tokenizer) -> tuple[list, dict[str, list]]:
    """The first ``max_eval_prompts`` prompts of ``config.eval_prompts`` with their other columns (passed to the
    reward functions), else of the distinct prompts of ``config.eval_data``'s pairs in file order (no columns)."""
    limit = config.max_eval_prompts
    if config.eval_prompts is not None:
        rows = load_prompts(config.eval_prompts, limit=limit, seed=config.seed)
        return list(rows["prompt"]), {name: list(rows[name]) for name in rows.column_names if name != "prompt"}
    if config.eval_data is None:
        raise ValueError("eval_rewards / eval_judge score completions of prompts: set eval_prompts or eval_data.")
    pairs, _ = load_preferences(config.eval_data, objectives=config.objectives, tokenizer=tokenizer)
    return list(dict.fromkeys(pairs["prompt"]))[:limit], {}


def evaluate_trained(model_dir, config: ParetoPreferenceConfig) -> dict[str, Any]:
    """Held-out metrics of a policy written by a run (``<run>/model``), as the module docstring says.

    Returns ``{"metrics": {objective: {accuracy, margin, loss, pairs}}}`` (empty without eval_data) and, with
    ``eval_rewards`` or ``eval_judge``, ``"generation"``: the generation report with ``max_new_tokens`` and
    ``decoding`` added.
    """
    generation = config.eval_rewards is not None or config.eval_judge is not None
    if config.eval_data is None and not generation:
        raise ValueError("eval_data is not set: give the held-out pairs to evaluate on.")
    rewards = build_rewards(config.eval_rewards or [], "eval_rewards")
    judge = None
    if config.eval_judge is not None:
        judge = (reward_label(config.eval_judge), build_reward(config.eval_judge, "eval_judge"))
    policy, tokenizer = load_trained(model_dir, revision=config.model_revision, **config.model_options())
    base = None
    if not isinstance(policy, PeftModel):
        base, _ = config.load_model()

    @contextmanager
    def reference() -> Iterator[nn.Module]:
        if base is not None:
            yield base
        else:
            with policy.disable_adapter():
                yield policy

    report: dict[str, Any] = {"metrics": {}}
    if config.eval_data is not None:
        dataset, names = prepare_preference_data(
            config, config.eval_data, tokenizer, config.objectives, config.max_eval_pairs, "eval"
        )
        average, batch = config.average_logps, config.per_device_eval_batch_size
        trained = dataset_logps(policy, dataset, tokenizer.pad_token_id, batch, average, "held-out pairs (trained)")
        with reference() as model:
            untrained = dataset_logps(model, dataset, tokenizer.pad_token_id, batch, average,
                                      "held-out pairs (reference)")
        report["metrics"] = preference_report(trained, untrained, torch.tensor(dataset["labels"]), names,
                                              config.beta, config.loss_type)
    if generation:
        prompts, columns = evaluation_prompts(config, tokenizer)
        prompt_ids = encode_prompts(tokenizer, prompts, add_special_tokens=True)
        options = config.generation_options()
        backend = generation_backend(config.generation_backend)
        if backend == "vllm":
            for model in (policy, base):
                if model is not None:
                    model.to("cpu")  # the GPU's memory goes to vLLM
            torch.cuda.empty_cache()
            completions = vllm_completions(model_dir, isinstance(policy, PeftModel), prompt_ids, tokenizer, config)
        else:
            completions = {"trained": generate_completions(policy, tokenizer, prompt_ids, **options)}
            with reference() as model:
                completions["reference"] = generate_completions(model, tokenizer, prompt_ids, **options)
        # Every sampled completion is scored: a prompt (and its columns) is repeated once per sample, in order.
        samples = config.eval_samples_per_prompt
        completions = {
            name: ([row.token_ids for rows in outputs for row in rows], [row.text for rows in outputs for row in rows])
            for name, outputs in completions.items()
        }
        repeated = [prompt for prompt in prompts for _ in range(samples)]
        columns = {name: [value for value in values for _ in range(samples)] for name, values in columns.items()}
        report["generation"] = {
            "max_new_tokens": config.eval_max_new_tokens, "decoding": config.decoding, "backend": backend,
            "samples_per_prompt": samples,
            **generation_report(repeated, completions, rewards, judge, columns),
        }
    return report


def vllm_completions(
    model_dir, is_adapter: bool, prompt_ids: list[list[int]], tokenizer, config: ParetoPreferenceConfig
) -> dict[str, list[list[Completion]]]:
    """The trained and the reference policy's completions from vLLM (:func:`paretoalign.generation.generate_with_vllm`):
    an adapter and its base model from one engine (the adapter applied per request), full weights from two engines
    one after the other.

    Raises:
        ValueError: the base model is a GGUF file, which vLLM does not serve here.
    """
    name = str(config.model_name_or_path)
    base = None if name.startswith(BUILTIN_PREFIX) else resolve_model(name)
    if base is None or (base.hub_id is None and base.path.suffix.lower() == GGUF_SUFFIX):
        raise ValueError(
            f"generation_backend: vllm serves Hugging Face model folders and Hub ids, not the GGUF model "
            f"{config.model_name_or_path!r}; use generation_backend: hf."
        )
    options = {key: value for key, value in config.generation_options().items() if key != "batch_size"}
    settings = {"dtype": config.torch_dtype, "trust_remote_code": config.trust_remote_code, **options}
    location = base.location
    if is_adapter:
        trained, reference = generate_with_vllm(location, tokenizer, prompt_ids, adapters=(model_dir, None),
                                                revision=config.model_revision, **settings)
        return {"trained": trained, "reference": reference}
    (trained,) = generate_with_vllm(model_dir, tokenizer, prompt_ids, **settings)
    (reference,) = generate_with_vllm(location, tokenizer, prompt_ids, revision=config.model_revision, **settings)
    return {"trained": trained, "reference": reference}


def print_generation_scores(generation: dict, console: Console) -> None:
    """A table of each reward's mean and share scored on the trained and the reference policy's completions, with
    the judge's win rate of the trained policy against the reference below it."""
    table = Table(title=f"generation scores on {generation['prompts']} completions of held-out prompts "
                        f"({generation['decoding']}, at most {generation['max_new_tokens']} new tokens)")
    for column in ("reward", "trained\nmean", "reference\nmean", "trained -\nreference", "scored\ntrained",
                   "scored\nreference"):
        table.add_column(column, justify="left" if column == "reward" else "right", no_wrap=True)
    for name, values in generation["rewards"].items():
        trained, reference = values["trained"], values["reference"]
        table.add_row(name, f"{trained['mean']:.4f}", f"{reference['mean']:.4f}",
                      f"{trained['mean'] - reference['mean']:+.4f}", f"{trained['scored']:.2f}",
                      f"{reference['scored']:.2f}")
    judged = generation.get("win_rate_vs_reference")
    if judged is not None:
        rate = "-" if judged["win_rate"] is None else f"{judged['win_rate']:.3f}"
        table.caption = (f"win rate vs reference under judge {judged['judge']!r}: {rate} over {judged['prompts']} "
                         f"prompts ({judged['wins']} won, {judged['ties']} tied, {judged['losses']} lost; "
                         "a tie counts 1/2)")
    console.print(table)


def main(model_dir: str, config_file: str, output: str | None, overrides: list[str], console: Console) -> int:
    config = parse_config(ParetoPreferenceConfig, config_file, overrides)
    report = evaluate_trained(model_dir, config)
    if report["metrics"]:
        table = Table(title=f"held-out preference metrics of {model_dir}")
        for column in ("objective", "pairs", "accuracy", "margin", "loss"):
            table.add_column(column, justify="left" if column == "objective" else "right")
        for name, values in report["metrics"].items():
            table.add_row(name, str(values["pairs"]), f"{values['accuracy']:.3f}", f"{values['margin']:+.4f}",
                          f"{values['loss']:.4f}")
        console.print(table)
    if "generation" in report:
        print_generation_scores(report["generation"], console)
    destination = Path(output) if output else Path(model_dir).resolve().parent / "eval.json"
    write_json_atomic(destination, {"model": str(model_dir), **report})
    console.print(f"[bold]written[/bold] {destination}")
    return 0
