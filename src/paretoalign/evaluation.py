r"""Per-objective metrics on held-out preference pairs, and generation-based scores of a trained policy.

For a policy ``pi`` and reference ``pi_ref`` the implicit reward margin of pair i is
``h_i = beta * ((log pi(y_a) - log pi_ref(y_a)) - (log pi(y_b) - log pi_ref(y_b)))``. Per objective k, over the
pairs labelled for k:

* preference accuracy: the share of pairs with ``S_ik h_i > 0`` (the policy moved towards the preferred
  response relative to the reference), a tie ``h_i = 0`` counting 1/2, so the reference itself scores 0.5;
* mean margin ``mean_i S_ik h_i``;
* the objective's preference loss ``L_k`` (:func:`paretoalign.losses.preference_losses`).

Generation-based scores (optional): each policy writes one completion ``y_i`` per held-out prompt ``x_i``
(:func:`generate_completion_ids`, greedy by default), and every reward function ``r`` is called on them as the RL
trainer calls it, ``r(prompts=[x_i], completions=[y_i], completion_ids=..., **columns)`` (one number or None per
completion). Per reward: the mean over the scored completions and the share scored (:func:`reward_summary`). A
judge ``J`` (one reward function) compares the trained policy's completion ``y_i`` with the reference's ``y'_i``:
``win rate = mean_i w_i``, ``w_i = 1`` if ``J(x_i, y_i) > J(x_i, y'_i)``, ``1/2`` if equal, ``0`` if lower, over the
prompts where both got a score (:func:`win_rate`); the reference against itself scores exactly 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.progress import track
from torch import nn

from paretoalign.data import PreferenceCollator, prompt_token_ids
from paretoalign.losses import preference_losses, preference_metrics

__all__ = [
    "build_generation_rewards",
    "dataset_logps",
    "encode_prompts",
    "evaluate_trained",
    "evaluation_prompts",
    "generate_completion_ids",
    "generation_report",
    "load_prompt_rows",
    "preference_report",
    "reward_completions",
    "reward_spec",
    "reward_summary",
    "score_rewards",
    "win_counts",
    "win_rate",
]


@torch.no_grad()
def dataset_logps(
    model: nn.Module,
    dataset,
    pad_token_id: int,
    batch_size: int = 8,
    average: bool = False,
    description: str = "scoring pairs",
) -> torch.Tensor:
    """Sequence log-probabilities of every pair's two responses under ``model``, shape [N, 2] (a, b), float64.

    ``dataset`` holds tokenised pairs (:func:`paretoalign.data.tokenize_preferences`). The model runs in eval mode
    and is returned to its previous mode.
    """
    from paretoalign.models import sequence_logps

    collator = PreferenceCollator(pad_token_id)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns = ["prompt_input_ids", "response_a_input_ids", "response_b_input_ids", "labels"]
    rows = dataset.select_columns(columns)
    results = []
    try:
        for start in track(range(0, len(rows), batch_size), description=description, transient=True):
            batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            logps = sequence_logps(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["response_mask"].to(device),
                average=average,
            )
            results.append(logps.double().cpu().view(2, -1).T)
    finally:
        model.train(was_training)
    return torch.cat(results) if results else torch.zeros(0, 2, dtype=torch.float64)


def preference_report(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    objective_names: list[str],
    beta: float,
    loss_type: str = "sigmoid",
) -> dict[str, dict[str, float]]:
    """Accuracy (ties count 1/2), mean margin, loss and pair count per objective (see the module docstring).

    ``policy_logps`` and ``reference_logps`` are [N, 2] (response a, response b); ``labels`` is the [N, K] matrix.
    """
    if policy_logps.shape != reference_logps.shape or policy_logps.ndim != 2 or policy_logps.shape[1] != 2:
        raise ValueError(
            f"policy and reference log-probabilities must both be [N, 2], got {tuple(policy_logps.shape)} "
            f"and {tuple(reference_logps.shape)}."
        )
    labels = torch.as_tensor(labels)
    if labels.shape != (policy_logps.shape[0], len(objective_names)):
        raise ValueError(f"labels must be [N, K] = [{policy_logps.shape[0]}, {len(objective_names)}].")
    logratios = policy_logps.double() - reference_logps.double()
    delta = logratios[:, 0] - logratios[:, 1]
    losses = preference_losses(delta, labels, beta, loss_type)
    metrics = preference_metrics(delta, labels, beta)
    report = {
        name: {
            "accuracy": float(metrics.accuracy[k]),
            "margin": float(metrics.margin[k]),
            "loss": float(losses[k]),
            "pairs": int(metrics.count[k]),
        }
        for k, name in enumerate(objective_names)
    }
    return report


# --- generation-based scores --------------------------------------------------------------------------------------


def encode_prompts(tokenizer, prompts: Sequence[str | list[dict]], add_special_tokens: bool) -> list[list[int]]:
    """Token ids of prompts; a message list is first rendered with the chat template and the generation prompt.

    With ``add_special_tokens`` the texts are tokenised as the preference trainer tokenises its prompts
    (:func:`paretoalign.data.prompt_token_ids`: the tokenizer's BOS, not doubled); without, no special token is
    added (TRL's ``GRPOTrainer``, whose chat-template texts carry their own).
    """
    texts = [
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if isinstance(prompt, list) else prompt
        for prompt in prompts
    ]
    if not texts:
        return []
    if add_special_tokens:
        return prompt_token_ids(tokenizer, texts)
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate_completion_ids(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str | list[dict]],
    max_new_tokens: int,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    add_special_tokens: bool = False,
) -> list[list[int]]:
    """One completion per prompt: its token ids up to and including the first EOS, padding dropped.

    Prompts are encoded by :func:`encode_prompts` and generated in batches of ``batch_size``, left padded; decoding
    is greedy, or sampling at ``temperature`` with ``do_sample``. The model runs in eval mode and is returned to its
    previous mode.
    """
    device = next(model.parameters()).device
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    was_training = model.training
    model.eval()
    results: list[list[int]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = encode_prompts(tokenizer, prompts[start : start + batch_size], add_special_tokens)
            width = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for index, row in enumerate(rows):
                input_ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                attention_mask[index, width - len(row) :] = 1
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                do_sample=do_sample,
                **({"temperature": temperature} if do_sample else {}),
            )
            for row in generated[:, width:].tolist():
                if eos_id in row:
                    row = row[: row.index(eos_id) + 1]
                results.append([token for token in row if token != pad_id])
    finally:
        model.train(was_training)
    return results


def reward_completions(prompts: Sequence[str | list[dict]], texts: Sequence[str]) -> list:
    """What a reward function gets as ``completions`` (TRL's protocol): the text, or for a message-list prompt
    one assistant message ``[{"role": "assistant", "content": text}]``."""
    return [
        [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text
        for prompt, text in zip(prompts, texts)
    ]


def score_rewards(
    rewards: dict[str, Callable],
    prompts: Sequence[str | list[dict]],
    texts: Sequence[str],
    completion_ids: Sequence[Sequence[int]],
    columns: dict[str, list] | None = None,
) -> dict[str, list[float | None]]:
    """Per reward name, one score (a number or None) per completion: each function called as the RL trainer calls
    it, ``f(prompts=..., completions=..., completion_ids=..., **columns)``, and checked
    (:func:`paretoalign.trainers.grpo.checked_reward_function`: an exception or a malformed result names it)."""
    from paretoalign.trainers.grpo import checked_reward_function

    completions = reward_completions(prompts, texts)
    return {
        name: checked_reward_function(function)(
            prompts=list(prompts), completions=completions, completion_ids=[list(ids) for ids in completion_ids],
            **(columns or {}),
        )
        for name, function in rewards.items()
    }


def _scored(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def reward_summary(scores: Sequence[float | None]) -> dict[str, float]:
    """``mean`` = (sum of the scored values) / (their number), NaN when none is scored; ``scored`` = (number of
    scored values) / (number of values), 0 for no values. A value is scored when it is a finite number (None, NaN
    and infinities are not)."""
    scored = [float(value) for value in scores if _scored(value)]
    return {
        "mean": sum(scored) / len(scored) if scored else math.nan,
        "scored": len(scored) / len(scores) if len(scores) else 0.0,
    }


def win_counts(
    candidate_scores: Sequence[float | None], baseline_scores: Sequence[float | None]
) -> tuple[int, int, int]:
    """(wins, ties, losses) of the candidate over the positions where both scores are finite numbers."""
    if len(candidate_scores) != len(baseline_scores):
        raise ValueError(f"{len(candidate_scores)} candidate scores against {len(baseline_scores)} baseline scores.")
    both = [(c, b) for c, b in zip(candidate_scores, baseline_scores) if _scored(c) and _scored(b)]
    wins = sum(1 for c, b in both if c > b)
    ties = sum(1 for c, b in both if c == b)
    return wins, ties, len(both) - wins - ties


def win_rate(candidate_scores: Sequence[float | None], baseline_scores: Sequence[float | None]) -> float | None:
    """``(wins + ties / 2) / n``: per prompt 1 when the candidate scores higher, 1/2 on a tie, 0 when lower, averaged
    over the n prompts where both scores are finite numbers; None when there is no such prompt."""
    return _win_rate_of_counts(*win_counts(candidate_scores, baseline_scores))


def _win_rate_of_counts(wins: int, ties: int, losses: int) -> float | None:
    total = wins + ties + losses
    return (wins + 0.5 * ties) / total if total else None


def generation_report(
    prompts: Sequence[str | list[dict]],
    completions: dict[str, tuple[list[list[int]], list[str]]],
    rewards: dict[str, Callable],
    judge: tuple[str, Callable] | None = None,
    columns: dict[str, list] | None = None,
) -> dict[str, Any]:
    """Scores of the ``trained`` and ``reference`` completions (``completions[policy] = (ids, texts)``).

    Returns ``{"prompts": n, "rewards": {name: {"trained": summary, "reference": summary}},
    "win_rate_vs_reference": {"judge", "win_rate", "prompts", "wins", "ties", "losses"} (with a judge),
    "completions": [{"prompt", "trained", "reference"}, ...]}`` (summaries from :func:`reward_summary`, the win rate
    and its counts as in :func:`win_rate`, over the prompts the judge scored for both policies).
    """
    functions = dict(rewards)
    if judge is not None:
        functions[("judge", judge[0])] = judge[1]
    scores = {
        policy: score_rewards(functions, prompts, texts, ids, columns) for policy, (ids, texts) in completions.items()
    }
    report: dict[str, Any] = {
        "prompts": len(prompts),
        "rewards": {name: {policy: reward_summary(scores[policy][name]) for policy in completions} for name in rewards},
    }
    if judge is not None:
        trained, reference = (scores[policy][("judge", judge[0])] for policy in ("trained", "reference"))
        wins, ties, losses = win_counts(trained, reference)
        report["win_rate_vs_reference"] = {
            "judge": judge[0], "win_rate": _win_rate_of_counts(wins, ties, losses), "prompts": wins + ties + losses,
            "wins": wins, "ties": ties, "losses": losses,
        }
    report["completions"] = [
        {"prompt": prompt, **{policy: texts[index] for policy, (_, texts) in completions.items()}}
        for index, prompt in enumerate(prompts)
    ]
    return report


# --- reward specs and prompts of the eval config -------------------------------------------------------------------


def reward_spec(item: Any, where: str) -> dict[str, Any]:
    """One reward spec of ``eval_rewards`` / ``eval_judge`` as a mapping, checked without building it.

    The syntax of the rl config's ``rewards`` (and the transfer config's reward specs): ``{name: NAME, ...params}``
    (:func:`paretoalign.rewards.get_reward`), ``{function: 'module:callable' | 'file.py:callable', ...keyword
    arguments}``, ``{sum: [{weight: w, <spec>}, ...]}``, each with an optional ``label``; the command-line forms
    ``'NAME'`` / ``'NAME:key=value,key=value'``, or a mapping written as YAML text (``'{name: length, target: 40}'``).
    Errors name ``where``.
    """
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("{"):
            try:
                item = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ValueError(f"{where}: not valid YAML ({error}).") from error
        else:
            from paretoalign.trainers.grpo import reward_spec_from_text

            item = reward_spec_from_text(text, where)
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a reward spec is a mapping such as {{name: length}} or a name, got {item!r}.")
    kinds = [key for key in ("name", "function", "sum") if key in item]
    if len(kinds) != 1:
        raise ValueError(
            f"{where}: a reward spec needs exactly one of 'name', 'function' or 'sum', got keys {sorted(item)}."
        )
    if "name" in item:
        from paretoalign.rewards import REWARDS

        if item["name"] not in REWARDS:
            raise ValueError(f"{where}: unknown reward {item['name']!r}; valid rewards: {', '.join(REWARDS)}.")
    return dict(item)


def build_generation_rewards(config) -> tuple[dict[str, Callable], tuple[str, Callable] | None]:
    """The reward functions of ``config.eval_rewards`` by display name, and ``(name, function)`` of
    ``config.eval_judge`` (names: the spec's ``label``, else its ``name``, else the function's name)."""
    from paretoalign.trainers.transfer import build_reward, reward_label

    rewards = {
        reward_label(spec, index): build_reward(spec, f"eval_rewards[{index}]")
        for index, spec in enumerate(config.eval_rewards or [])
    }
    judge = None
    if config.eval_judge is not None:
        judge = (reward_label(config.eval_judge, 0), build_reward(config.eval_judge, "eval_judge"))
    return rewards, judge


def load_prompt_rows(source: str):
    """Prompt rows (a :class:`datasets.Dataset` with ``prompt`` and any other columns) from ``builtin:NAME`` (shipped
    data), a ``.txt`` file with one prompt per line, or a file :func:`paretoalign.data.load_prompts` reads (JSONL /
    JSON / Parquet / saved dataset with a ``prompt`` column, string or message-list prompts)."""
    import datasets

    from paretoalign.data import load_prompts
    from paretoalign.trainers.preference import resolve_data_source

    path = Path(resolve_data_source(source))
    if not path.exists():
        raise FileNotFoundError(f"prompts file not found: {path}")
    if path.suffix == ".txt":
        rows = datasets.Dataset.from_dict(
            {"prompt": [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]}
        )
    else:
        rows = load_prompts(path)
    if not len(rows):
        raise ValueError(f"{path}: no prompts.")
    return rows


def evaluation_prompts(config, tokenizer) -> tuple[list, dict[str, list]]:
    """The first ``max_eval_prompts`` prompts of ``config.eval_prompts`` with their other columns (passed to the
    reward functions), else of the distinct prompts of ``config.eval_data``'s pairs in file order (no columns)."""
    from paretoalign.data import load_preferences
    from paretoalign.trainers.preference import resolve_data_source

    limit = config.max_eval_prompts
    if config.eval_prompts is not None:
        rows = load_prompt_rows(config.eval_prompts)
        rows = rows.select(range(min(limit, len(rows))))
        return list(rows["prompt"]), {name: list(rows[name]) for name in rows.column_names if name != "prompt"}
    if config.eval_data is None:
        raise ValueError("eval_rewards / eval_judge score completions of prompts: set eval_prompts or eval_data.")
    source = resolve_data_source(config.eval_data)
    pairs, _ = load_preferences(source, objectives=config.objectives, tokenizer=tokenizer)
    return list(dict.fromkeys(pairs["prompt"]))[:limit], {}


# --- the eval command ----------------------------------------------------------------------------------------------


def evaluate_trained(model_dir, config) -> dict[str, Any]:
    """Held-out metrics of a policy written by a run (``<run>/model``).

    Returns ``{"metrics": {objective: {accuracy, margin, loss, pairs}}}`` on ``config.eval_data`` (empty without
    eval_data) and, when ``config.eval_rewards`` or ``config.eval_judge`` is set, ``"generation"``: the
    :func:`generation_report` of greedy completions (``eval_max_new_tokens``) of the trained and the reference policy
    on :func:`evaluation_prompts`, with ``max_new_tokens`` and ``decoding`` added. The reference is the same weights
    with the adapter disabled for a LoRA adapter, else the base model named by ``config.model_name_or_path``.
    """
    from peft import PeftModel

    from paretoalign.models import load_policy, load_trained
    from paretoalign.trainers.preference import resolve_model_path

    generation = config.eval_rewards is not None or config.eval_judge is not None
    if config.eval_data is None and not generation:
        raise ValueError("eval_data is not set: give the held-out pairs to evaluate on.")
    rewards, judge = build_generation_rewards(config) if generation else ({}, None)
    policy, tokenizer = load_trained(model_dir, cache_dir=config.model_cache_dir)
    base = None
    if not isinstance(policy, PeftModel):
        base, _ = load_policy(resolve_model_path(config.model_name_or_path), cache_dir=config.model_cache_dir)

    @contextmanager
    def reference() -> Iterator[nn.Module]:
        if base is not None:
            yield base
        else:
            with policy.disable_adapter():
                yield policy

    report: dict[str, Any] = {"metrics": {}}
    if config.eval_data is not None:
        report["metrics"] = _preference_metrics(policy, reference, tokenizer, config)
    if generation:
        prompts, columns = evaluation_prompts(config, tokenizer)
        options = {"max_new_tokens": config.eval_max_new_tokens, "batch_size": config.per_device_eval_batch_size,
                   "add_special_tokens": True}
        trained = generate_completion_ids(policy, tokenizer, prompts, **options)
        with reference() as model:
            untrained = generate_completion_ids(model, tokenizer, prompts, **options)
        completions = {
            name: (ids, tokenizer.batch_decode(ids, skip_special_tokens=True))
            for name, ids in (("trained", trained), ("reference", untrained))
        }
        report["generation"] = {
            "max_new_tokens": config.eval_max_new_tokens, "decoding": "greedy",
            **generation_report(prompts, completions, rewards, judge, columns),
        }
    return report


def _preference_metrics(policy, reference, tokenizer, config) -> dict[str, dict[str, float]]:
    """:func:`preference_report` of ``policy`` against the ``reference()`` context on ``config.eval_data``."""
    from paretoalign.trainers.preference import prepare_preference_data

    dataset, names = prepare_preference_data(
        config, config.eval_data, tokenizer, config.objectives, config.max_eval_pairs, "eval"
    )
    average = config.loss_type == "ipo"
    batch = config.per_device_eval_batch_size
    trained = dataset_logps(policy, dataset, tokenizer.pad_token_id, batch, average, "held-out pairs (trained)")
    with reference() as model:
        reference_logps = dataset_logps(model, dataset, tokenizer.pad_token_id, batch, average,
                                        "held-out pairs (reference)")
    labels = torch.tensor(dataset["labels"])
    return preference_report(trained, reference_logps, labels, names, config.beta, config.loss_type)
