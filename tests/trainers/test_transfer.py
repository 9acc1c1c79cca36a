"""Tests for paretoalign.trainers.transfer: the config, and the TransferTrainer's iterations with a recording update."""

from __future__ import annotations

import textwrap

import pytest

from paretoalign.config import parse_config
from paretoalign.tpo import SELF_SOURCE
from paretoalign.trainers.transfer import TransferConfig, TransferTrainer

# --- the config -------------------------------------------------------------------------------------------------

ORACLE = {"type": "reward", "function": "x.py:f"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"label_budget": -1}, "label_budget must be >= 0"),
        ({"n": 1}, "n must be >= 2"),
        ({"n": 4, "num_replaced": 5}, r"num_replaced must lie in \[1, n - 1\] = \[1, 3\]"),
        ({"sources": [{"target": 3}]}, r"sources\[0\]: a reward spec needs exactly one of"),
        ({"sources": [{"name": "length"}, {"name": "length"}]}, "distinct 'label'"),
        ({"oracle": {"type": "crowd"}}, "oracle must be a mapping with type"),
        ({"loss_type": "hinge"}, "loss_type must be one of"),
    ],
)
def test_bad_configs_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        TransferConfig(**{"prompts": "p.txt", "oracle": ORACLE, **overrides})


def test_yaml_paths_are_relative_to_the_file_and_cli_overrides_parse(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "run.yaml").write_text(textwrap.dedent("""\
        prompts: prompts.txt
        oracle: {type: labels, path: labels.jsonl}
        sources: [{function: rewards.py:fn, label: mine}]
    """))
    config = parse_config(TransferConfig, folder / "run.yaml", ["--n", "5", "--eval_prompts", "held.txt"])
    assert config.prompts == str(folder / "prompts.txt")
    assert config.oracle == {"type": "labels", "path": str(folder / "labels.jsonl")}
    assert config.sources == [{"function": f"{folder / 'rewards.py'}:fn", "label": "mine"}]
    assert config.eval_prompts == "held.txt" and config.n == 5
    config = parse_config(TransferConfig, folder / "run.yaml", ["--oracle", "{type: human, answers: a.jsonl}"])
    assert config.oracle == {"type": "human", "answers": "a.jsonl"}


# --- the trainer with a recording update ------------------------------------------------------------------------

REWARDS_MODULE = """\
def gold(prompts, completions, **kwargs):
    return [float(len(set(text))) for text in completions]


def longest(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]
"""


def transfer_config(tmp_path, model_dir, **overrides) -> TransferConfig:
    """Three prompts per iteration, n = 3 responses ranked by the reward oracle `gold` (one label a prompt), one
    source; LoRA rank 2."""
    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARDS_MODULE)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("How do I bake bread?\nSay something kind.\nWhat is a fox?\n")
    values = dict(
        model_name_or_path=str(model_dir), prompts=str(prompts), prompts_per_iteration=3, n=3, m=4, num_replaced=1,
        ucb_refresh_prompts=2, label_budget=5, oracle={"type": "reward", "function": f"{rewards}:gold"},
        sources=[{"function": f"{rewards}:longest", "label": "long"}], iterations=3, max_new_tokens=4, lora_r=2,
        lora_alpha=4, output_dir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return TransferConfig(**values)


class RecordingUpdate:
    """An update that trains nothing and keeps what it was given."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, model, tokenizer, pairs, reference, iteration):
        self.calls.append({"pairs": pairs, "reference": reference, "iteration": iteration, "tokenizer": tokenizer})
        return {"train_loss": 0.25, "train_accuracy": 1.0, "train_steps": len(pairs), "skipped_steps": 0}


def gold_score(text: str) -> float:
    return float(len(set(text)))


def test_iterations_hand_the_oracle_pairs_to_the_update_and_stop_at_the_budget(tmp_path, tiny_model_dir):
    update = RecordingUpdate()
    result = TransferTrainer(transfer_config(tmp_path, tiny_model_dir), update).train()

    # Budget 5, one label a prompt: 3 prompts, then the 2 the budget still pays for, then no third iteration.
    assert [row["labels_spent"] for row in result["history"]] == [3, 5]
    assert [row["prompts"] for row in result["history"]] == [3, 2]
    assert result["labels_spent"] == 5 and result["budget_exhausted"] is True
    assert [call["iteration"] for call in update.calls] == [1, 2]
    for row, call in zip(result["history"], update.calls):
        assert row["pairs"] == len(call["pairs"]) and row["pairs"] + row["no_pair_prompts"] == row["prompts"]
        assert row["train_loss"] == 0.25 and row["train_steps"] == len(call["pairs"])
        assert sum(row["picks_this_iteration"].values()) == row["prompts"]
        assert set(row["picks_this_iteration"]) == {"long", SELF_SOURCE}
        assert call["reference"] is None  # LoRA: the reference is the policy with the adapter disabled

    pairs = update.calls[0]["pairs"]
    assert pairs.column_names == ["prompt_input_ids", "response_a_input_ids", "response_b_input_ids", "labels"]
    assert len(pairs) > 0 and all(labels == [1] for labels in pairs["labels"])
    tokenizer = update.calls[0]["tokenizer"]
    for chosen, rejected in zip(pairs["response_a_input_ids"], pairs["response_b_input_ids"]):
        # Response a is the oracle's best, response b its worst: the gold reward strictly prefers a.
        chosen_text = tokenizer.decode(chosen, skip_special_tokens=True)
        rejected_text = tokenizer.decode(rejected, skip_special_tokens=True)
        assert gold_score(chosen_text) > gold_score(rejected_text)


def test_a_budget_too_small_for_one_ranking_trains_nothing(tmp_path, tiny_model_dir):
    update = RecordingUpdate()
    result = TransferTrainer(transfer_config(tmp_path, tiny_model_dir, label_budget=0), update).train()
    assert result["history"] == [] and result["labels_spent"] == 0 and result["budget_exhausted"] is True
    assert update.calls == []
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()


def test_full_weight_training_gets_a_frozen_reference(tmp_path, tiny_model_dir):
    update = RecordingUpdate()
    TransferTrainer(transfer_config(tmp_path, tiny_model_dir, use_lora=False, iterations=1), update).train()
    (call,) = update.calls
    reference = call["reference"]
    assert reference is not None and not reference.training
    assert not any(parameter.requires_grad for parameter in reference.parameters())
