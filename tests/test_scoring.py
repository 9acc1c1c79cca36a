"""Numbers about a policy without training it (paretoalign.scoring): preference metrics and per-pair outcomes on known
margins, win rates, reward summaries and generation reports on hand-made scores."""

from __future__ import annotations

import math

import pytest
import torch

from paretoalign.scoring import (
    generation_report,
    preference_outcomes,
    preference_report,
    reward_summary,
    win_counts,
    win_rate,
)

NAN, INF = math.nan, math.inf


def test_preference_report_on_known_margins():
    # Log-ratios: pair 0 (a: -1 - -2 = +1, b: -3 - -3 = 0) -> delta = 1; pair 1 (a: 0, b: +2) -> delta = -2;
    # pair 2: delta = 0. beta = 0.5 -> h = (0.5, -1, 0).
    policy = torch.tensor([[-1.0, -3.0], [-4.0, -1.0], [-2.0, -2.0]])
    reference = torch.tensor([[-2.0, -3.0], [-4.0, -3.0], [-2.0, -2.0]])
    labels = torch.tensor([[1, -1], [-1, 0], [1, 1]])
    report = preference_report(policy, reference, labels, ["a", "b"], beta=0.5)
    # Objective a: signed margins 0.5, 1.0, 0 -> accuracy (2 + 1/2) / 3, margin 0.5,
    # loss mean(-log sigmoid(0.5), -log sigmoid(1), log 2).
    expected_loss_a = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.0)) + math.log(2)) / 3
    assert report["a"] == pytest.approx({"accuracy": 2.5 / 3, "margin": 0.5, "loss": expected_loss_a, "pairs": 3})
    # Objective b: pairs 0 (label -1: -0.5) and 2 (0) -> accuracy 1/4, margin -0.25.
    expected_loss_b = (math.log1p(math.exp(0.5)) + math.log(2)) / 2
    assert report["b"] == pytest.approx({"accuracy": 0.25, "margin": -0.25, "loss": expected_loss_b, "pairs": 2})


def test_win_rate_counts_wins_ties_and_losses_over_prompts_both_scored():
    candidate = [3.0, 1.0, None, 2.0, 5.0, NAN, 7.0, 0.0]
    baseline = [1.0, 2.0, 4.0, 2.0, None, 0.0, INF, 0.0]
    # scored by both: positions 0 (win), 1 (loss), 3 (tie), 7 (tie); None, NaN and inf are not scores
    assert win_counts(candidate, baseline) == (1, 2, 1)
    assert win_rate(candidate, baseline) == (1 + 0.5 * 2) / 4
    assert win_rate(baseline, candidate) == (1 + 0.5 * 2) / 4  # symmetric here: one win, one loss
    assert win_rate([2.0, 3.0, 1.0], [1.0, 1.0, 0.5]) == 1.0
    assert win_rate([0.0, -1.0], [1.0, 0.0]) == 0.0
    assert win_rate([4.0, 2.5, None], [4.0, 2.5, 1.0]) == 0.5  # a policy against itself


def test_win_rate_without_a_common_score_is_none_and_lengths_must_match():
    assert win_rate([None, 1.0], [2.0, None]) is None
    assert win_rate([], []) is None
    with pytest.raises(ValueError, match="3 candidate scores against 2 baseline scores"):
        win_rate([1.0, 2.0, 3.0], [1.0, 2.0])


def test_reward_summary_means_the_scored_values_and_counts_their_share():
    # scored 1 and 3: sample standard deviation sqrt(((1 - 2)^2 + (3 - 2)^2) / 1) = sqrt(2), stderr sqrt(2) / sqrt(2)
    assert reward_summary([1.0, None, 3.0, NAN, INF]) == {"mean": 2.0, "stderr": pytest.approx(1.0), "scored": 0.4}
    # squared deviations 0, 1/16, 1/16, 1/4: variance (3/8) / 3 = 1/8, stderr sqrt(1/8) / sqrt(4)
    assert reward_summary([0.5, 0.25, 0.25, 1]) == {"mean": 0.5, "stderr": pytest.approx(math.sqrt(1 / 8) / 2),
                                                    "scored": 1.0}
    empty = reward_summary([])
    assert math.isnan(empty["mean"]) and empty["scored"] == 0.0 and math.isnan(empty["stderr"])
    unscored = reward_summary([None, NAN])
    assert math.isnan(unscored["mean"]) and unscored["scored"] == 0.0
    single = reward_summary([4.0, None])  # one scored value: a mean, no standard error
    assert single["mean"] == 4.0 and math.isnan(single["stderr"])


def test_preference_outcomes_are_per_pair_and_their_mean_is_the_accuracy():
    # The margins of test_preference_report_on_known_margins: h = (0.5, -1, 0).
    policy = torch.tensor([[-1.0, -3.0], [-4.0, -1.0], [-2.0, -2.0]])
    reference = torch.tensor([[-2.0, -3.0], [-4.0, -3.0], [-2.0, -2.0]])
    labels = torch.tensor([[1, -1], [-1, 0], [1, 1]])
    outcomes = preference_outcomes(policy, reference, labels, ["a", "b"], beta=0.5)
    # a: signed margins 0.5, 1, 0 -> won, won, tie; b: only pairs 0 (-0.5: lost) and 2 (0: tie) are labelled.
    assert outcomes == {"a": [1.0, 1.0, 0.5], "b": [0.0, 0.5]}
    report = preference_report(policy, reference, labels, ["a", "b"], beta=0.5)
    for name, values in outcomes.items():
        assert sum(values) / len(values) == pytest.approx(report[name]["accuracy"])
        assert len(values) == report[name]["pairs"]
    assert preference_outcomes(reference, reference, labels, ["a", "b"], beta=0.5) == {"a": [0.5] * 3, "b": [0.5] * 2}
    with pytest.raises(ValueError, match=r"labels must be \[N, K\] = \[3, 1\]"):
        preference_outcomes(policy, reference, labels, ["a"], beta=0.5)


def test_generation_report_keeps_every_completion_score():
    def characters(prompts, completions, **kwargs):
        return [float(len(text)) for text in completions]

    def even_only(prompts, completions, **kwargs):
        return [float(len(text)) if len(text) % 2 == 0 else None for text in completions]

    completions = {"trained": ([[1], [2, 3], [4]], ["ab", "abc", "abcd"]),
                   "reference": ([[1], [2], [3]], ["a", "bb", "cccccc"])}
    report = generation_report(["p", "q", "r"], completions, {"chars": characters, "even": even_only})
    assert report["scores"] == {"chars": {"trained": [2.0, 3.0, 4.0], "reference": [1.0, 2.0, 6.0]},
                                "even": {"trained": [2.0, None, 4.0], "reference": [None, 2.0, 6.0]}}
    assert report["rewards"]["chars"]["trained"] == {"mean": 3.0, "stderr": pytest.approx(1 / math.sqrt(3)),
                                                     "scored": 1.0}
    assert report["rewards"]["even"]["reference"] == {"mean": 4.0, "stderr": pytest.approx(2.0), "scored": 2 / 3}


def test_reference_logps_are_cached_by_model_and_tokens(tmp_path, tiny_llama, tiny_tokenizer, monkeypatch):
    from datasets import Dataset

    from paretoalign import scoring
    from paretoalign.scoring import cached_dataset_logps, dataset_logps

    pairs = Dataset.from_dict({
        "prompt_input_ids": [[1, 2], [3]], "response_a_input_ids": [[4, 5], [6]],
        "response_b_input_ids": [[7], [8, 9]], "labels": [[1], [-1]],
    })
    direct = dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id)
    key = {"model": "tiny", "revision": None}
    first = cached_dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id, tmp_path, key)
    assert torch.equal(first, direct) and len(list(tmp_path.glob("reference-logps-*.pt"))) == 1
    calls = []
    monkeypatch.setattr(scoring, "dataset_logps", lambda *args, **kwargs: calls.append(args) or direct * 0)
    assert torch.equal(cached_dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id, tmp_path, key), direct)
    assert calls == []  # read from the file
    other_tokens = pairs.map(lambda row: {"response_b_input_ids": row["response_b_input_ids"] + [10]})
    cached_dataset_logps(tiny_llama, other_tokens, tiny_tokenizer.pad_token_id, tmp_path, key)
    cached_dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id, tmp_path, {"model": "other"})
    cached_dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id, tmp_path, key, average=True)
    assert len(calls) == 3 and len(list(tmp_path.glob("reference-logps-*.pt"))) == 4
    assert cached_dataset_logps(tiny_llama, pairs, tiny_tokenizer.pad_token_id, None, key).shape == (2, 2)
