r"""Numbers about a policy without training it: per-objective metrics on preference pairs, reward summaries, win rates.

For a policy ``pi`` and reference ``pi_ref`` the implicit reward margin of pair i is
``h_i = beta * ((log pi(y_a) - log pi_ref(y_a)) - (log pi(y_b) - log pi_ref(y_b)))``. Per objective k, over the
pairs labelled for k:

* preference accuracy: the share of pairs with ``S_ik h_i > 0`` (the policy moved towards the preferred
  response relative to the reference), a tie ``h_i = 0`` counting 1/2, so the reference itself scores 0.5; it is
  the mean of the per-pair outcomes ``o_i = 1`` if ``S_ik h_i > 0``, ``1/2`` if ``h_i = 0``, ``0`` otherwise
  (:func:`preference_outcomes`), which a bootstrap over pairs resamples;
* mean margin ``mean_i S_ik h_i``;
* the objective's preference loss ``L_k`` (:func:`paretoalign.losses.preference_losses`).

Generation-based scores (optional): each policy writes one completion ``y_i`` per held-out prompt ``x_i``
(:func:`paretoalign.generation.generate_completions`, greedy by default), and every reward function ``r`` is called on them as the RL
trainer calls it, ``r(prompts=[x_i], completions=[y_i], completion_ids=..., **columns)`` (one number or None per
completion). Per reward: the mean over the scored completions, its standard error and the share scored
(:func:`reward_summary`). A
judge ``J`` (one reward function) compares the trained policy's completion ``y_i`` with the reference's ``y'_i``:
``win rate = mean_i w_i``, ``w_i = 1`` if ``J(x_i, y_i) > J(x_i, y'_i)``, ``1/2`` if equal, ``0`` if lower, over the
prompts where both got a score (:func:`win_rate`); the reference against itself scores exactly 1/2.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import statistics
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import torch
from rich.progress import track
from torch import nn

from paretoalign.data.tokenize import PreferenceCollator
from paretoalign.io import write_bytes_atomic
from paretoalign.losses import preference_losses, preference_metrics
from paretoalign.models import sequence_logps
from paretoalign.rewards.specs import checked_reward_function

__all__ = [
    "cached_dataset_logps",
    "dataset_logps", "generation_report", "preference_outcomes", "preference_report", "reward_completions",
    "reward_summary", "score_rewards", "win_counts", "win_rate",
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

    ``dataset`` holds tokenised pairs (:func:`paretoalign.data.tokenize.tokenize_preferences`). The model runs in eval mode
    and is returned to its previous mode.
    """
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
    delta, labels = _logratio_differences(policy_logps, reference_logps, labels, objective_names)
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


def _logratio_differences(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, labels: torch.Tensor, objective_names: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``delta_i`` [N] (float64) of [N, 2] policy and reference log-probabilities, and the checked [N, K] labels."""
    if policy_logps.shape != reference_logps.shape or policy_logps.ndim != 2 or policy_logps.shape[1] != 2:
        raise ValueError(
            f"policy and reference log-probabilities must both be [N, 2], got {tuple(policy_logps.shape)} "
            f"and {tuple(reference_logps.shape)}."
        )
    labels = torch.as_tensor(labels)
    if labels.shape != (policy_logps.shape[0], len(objective_names)):
        raise ValueError(f"labels must be [N, K] = [{policy_logps.shape[0]}, {len(objective_names)}].")
    logratios = policy_logps.double() - reference_logps.double()
    return logratios[:, 0] - logratios[:, 1], labels


def preference_outcomes(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    objective_names: list[str],
    beta: float,
) -> dict[str, list[float]]:
    """Per objective k, the outcome of every pair labelled for k, in pair order: ``o_i = 1`` if ``S_ik h_i > 0``
    (the implicit reward prefers the labelled winner), ``1/2`` if ``h_i = 0`` (a tie), ``0`` otherwise.

    ``mean_i o_i`` is :func:`preference_report`'s accuracy (for the reference policy every ``o_i`` is 1/2); the
    arguments are :func:`preference_report`'s.
    """
    delta, labels = _logratio_differences(policy_logps, reference_logps, labels, objective_names)
    if not (beta > 0):
        raise ValueError(f"beta must be positive, got {beta}.")
    signed_margin = labels.to(delta.dtype) * (beta * delta)[:, None]
    outcome = (signed_margin > 0).to(delta.dtype) + 0.5 * (signed_margin == 0).to(delta.dtype)
    return {name: outcome[labels[:, k] != 0, k].tolist() for k, name in enumerate(objective_names)}


def cached_dataset_logps(
    model: nn.Module,
    dataset,
    pad_token_id: int,
    cache_dir: str | Path | None,
    model_key: dict[str, Any],
    batch_size: int = 8,
    average: bool = False,
    description: str = "scoring pairs",
) -> torch.Tensor:
    """:func:`dataset_logps`, kept in ``cache_dir`` (when given) under a key of everything they depend on: the
    ``model_key`` (the model's name, revision, dtype, ...), ``average`` and the token ids of every pair. A second call
    with the same key (another run of a sweep: the same base model and pairs) reads the file instead of running the
    model; a different key is a different file. Files are written atomically."""
    if cache_dir is None:
        return dataset_logps(model, dataset, pad_token_id, batch_size, average, description)
    digest = hashlib.sha256(json.dumps({**model_key, "average": average}, sort_keys=True, default=str).encode())
    for column in ("prompt_input_ids", "response_a_input_ids", "response_b_input_ids"):
        for ids in dataset[column]:
            digest.update(json.dumps(ids).encode())
    path = Path(cache_dir) / f"reference-logps-{digest.hexdigest()[:32]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    logps = dataset_logps(model, dataset, pad_token_id, batch_size, average, description)
    buffer = io.BytesIO()
    torch.save(logps, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return logps


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
    (:func:`paretoalign.rewards.specs.checked_reward_function`: an exception or a malformed result names it)."""
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
    """``mean`` = (sum of the scored values) / (their number n), NaN when none is scored; ``stderr`` = s / sqrt(n),
    the standard error of that mean with s the sample standard deviation ``sqrt(sum_i (v_i - mean)^2 / (n - 1))``,
    NaN when n < 2; ``scored`` = n / (number of values), 0 for no values. A value is scored when it is a finite
    number (None, NaN and infinities are not)."""
    scored = [float(value) for value in scores if _scored(value)]
    return {
        "mean": sum(scored) / len(scored) if scored else math.nan,
        "stderr": statistics.stdev(scored) / math.sqrt(len(scored)) if len(scored) >= 2 else math.nan,
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
    "scores": {name: {"trained": [...], "reference": [...]}},
    "win_rate_vs_reference": {"judge", "win_rate", "prompts", "wins", "ties", "losses"} (with a judge),
    "completions": [{"prompt", "trained", "reference"}, ...]}`` (summaries from :func:`reward_summary`; ``scores``:
    every completion's score in order, None where the reward gave none or a non-finite number; the win rate and its
    counts as in :func:`win_rate`, over the prompts the judge scored for both policies).
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
        "scores": {
            name: {policy: [float(value) if _scored(value) else None for value in scores[policy][name]]
                   for policy in completions}
            for name in rewards
        },
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
