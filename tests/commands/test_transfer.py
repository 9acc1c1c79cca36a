"""Tests for ``paretoalign transfer`` (paretoalign.commands.transfer): a run, its checkpoint and resume, bad configs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from paretoalign.cli import main
from paretoalign.commands.transfer import preference_update
from paretoalign.config import parse_config
from paretoalign.scoring import dataset_logps
from paretoalign.tpo import SELF_SOURCE
from paretoalign.trainers.transfer import TransferConfig, TransferTrainer

REWARDS_MODULE = """\
def gold(prompts, completions, **kwargs):
    return [float(len(set(text))) for text in completions]


def longest(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]


def noisy(prompts, completions, **kwargs):
    return [float(hash(text) % 7) for text in completions]
"""


def _write_run(tmp_path, tiny_model_dir, **extra) -> str:
    (tmp_path / "rewards.py").write_text(REWARDS_MODULE)
    (tmp_path / "prompts.txt").write_text("How do I bake bread?\nSay something kind.\nWhat is a fox?\n")
    config = {
        "model_name_or_path": str(tiny_model_dir),
        "prompts": "prompts.txt",
        "eval_prompts": "prompts.txt",
        "max_eval_prompts": 2,
        "prompts_per_iteration": 3,
        "n": 3,
        "m": 4,
        "num_replaced": 1,
        "ucb_refresh_prompts": 2,
        "label_budget": 5,
        "oracle": {"type": "reward", "function": "rewards.py:gold"},
        "sources": [{"function": "rewards.py:longest", "label": "long"}, {"function": "rewards.py:noisy"}],
        "iterations": 1,
        "epochs_per_iteration": 1,
        "batch_size": 2,
        "max_new_tokens": 4,
        "learning_rate": 1e-3,
        "lora_r": 2,
        "lora_alpha": 4,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_transfer_runs_checkpoints_and_resumes(tmp_path, tiny_model_dir):
    config_file = _write_run(tmp_path, tiny_model_dir)
    assert main(["transfer", "--config", config_file]) == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    first = rows[0]
    assert first["prompts"] == 3 and first["labels_spent"] == 3 and first["label_budget"] == 5
    assert sum(first["picks_this_iteration"].values()) == 3
    assert set(first["sources"]) == {"long", "noisy", SELF_SOURCE}
    assert 0.0 <= first["eval_win_rate_vs_initial"] <= 1.0 and first["eval_prompts"] == 2
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["ledger"] == {"budget": 5, "spent": 3} and state["iterations_done"] == 1
    assert state["selector"]["prompts_seen"] == 3
    assert (run / "checkpoint" / "model" / "adapter_config.json").is_file()
    assert any((run / "tensorboard").iterdir()) and (run / "model" / "adapter_config.json").is_file()

    # resume for two more iterations: the ledger continues from 3 and stops at the budget of 5
    assert main(["transfer", "--config", config_file, "--iterations", "3"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["labels_spent"] for row in rows] == [3, 5]
    assert rows[1]["prompts"] == 2 and rows[1]["budget_exhausted"] is True
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["ledger"]["spent"] == 5 and state["selector"]["prompts_seen"] == 5 and state["prompt_cursor"] == 5


def test_resume_continues_bit_for_bit(tmp_path, tiny_model_dir):
    """Two iterations in one run equal one iteration, a stop, and a resumed second iteration."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = _write_run(tmp_path / "a", tiny_model_dir, iterations=2, label_budget=20)
    assert main(["transfer", "--config", straight]) == 0
    split = _write_run(tmp_path / "b", tiny_model_dir, iterations=1, label_budget=20)
    assert main(["transfer", "--config", split]) == 0
    assert main(["transfer", "--config", split, "--iterations", "2"]) == 0
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_a) == len(rows_b) == 2
    for row_a, row_b in zip(rows_a, rows_b):
        for key in ("labels_spent", "pairs", "picks_this_iteration", "wins_this_iteration", "train_loss"):
            assert row_a[key] == row_b[key], key
        assert row_a["pairs"] > 0 and row_a["train_steps"] > 0 and row_a["skipped_steps"] == 0
    weights_a = load_file(tmp_path / "a" / "run" / "model" / "adapter_model.safetensors")
    weights_b = load_file(tmp_path / "b" / "run" / "model" / "adapter_model.safetensors")
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    # The adapter learned: LoRA's B matrices start at zero.
    assert any(weights_a[name].abs().max() > 0 for name in weights_a if "lora_B" in name)


@pytest.mark.parametrize("use_lora", [True, False])
@pytest.mark.parametrize("reference", ["initial", "iteration_start"])
def test_reference_is_the_initial_policy_or_the_policy_at_the_iteration_start(
    tmp_path, tiny_model_dir, reference, use_lora, monkeypatch
):
    config = parse_config(TransferConfig, _write_run(tmp_path, tiny_model_dir, iterations=2, label_budget=20,
                                                     learning_rate=1e-2, reference=reference, use_lora=use_lora), [])
    train = preference_update(config)
    seen = {}

    def no_copy(model):
        raise AssertionError("the update made a copy of the policy to serve as reference")

    monkeypatch.setattr("paretoalign.trainers.preference.frozen_reference", no_copy)

    def recording_update(model, tokenizer, pairs, reference_model, iteration):
        """The pairs' log-probabilities under the policy now and under the iteration's reference, then train."""
        def logps(scorer):
            return dataset_logps(scorer, pairs, tokenizer.pad_token_id, config.batch_size)

        if reference == "iteration_start":
            assert reference_model is None
            reference_logps = torch.tensor([pairs["reference_logps_a"], pairs["reference_logps_b"]], dtype=torch.float64).T
        elif reference_model is not None:
            reference_logps = logps(reference_model)
        else:
            with model.disable_adapter():
                reference_logps = logps(model)
        seen[iteration] = (logps(model), reference_logps)
        return train(model, tokenizer, pairs, reference_model, iteration)

    TransferTrainer(config, recording_update).train()
    assert set(seen) == {1, 2}
    policy, reference_logps = seen[1]
    torch.testing.assert_close(reference_logps, policy, rtol=0, atol=1e-6)  # iteration 1 starts from the initial policy
    policy, reference_logps = seen[2]
    if reference == "iteration_start":
        # The authors' rule: the policy when iteration 2 starts, carried by the pairs as log-probabilities.
        torch.testing.assert_close(reference_logps, policy, rtol=0, atol=1e-6)
    else:
        # Ours: the initial policy throughout, which iteration 1's training left behind.
        assert (reference_logps - policy).abs().max() > 1e-3


def test_bad_reference_is_rejected(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="reference must be one of \\['initial', 'iteration_start'\\], got 'last'"):
        parse_config(TransferConfig, _write_run(tmp_path, tiny_model_dir, reference="last"), [])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--label_budget", "-1"], "label_budget must be >= 0"),
        (["--n", "1"], "n must be >= 2"),
        (["--num_replaced", "9"], "num_replaced must lie in"),
        (["--sources", "[{name: no_such_reward}]"], "sources[0]"),
        (["--sources", "[{function: 'rewards.py:missing'}]"], "no callable 'missing'"),
    ],
)
def test_cli_bad_configs_exit_with_code_2(tmp_path, tiny_model_dir, capsys, monkeypatch, flags, message):
    monkeypatch.setenv("COLUMNS", "40")  # errors are printed unwrapped, whatever the terminal's width
    config_file = _write_run(tmp_path, tiny_model_dir)
    if "rewards.py:missing" in flags[-1]:
        flags = [flags[0], flags[1].replace("rewards.py", str(tmp_path / "rewards.py"))]
    assert main(["transfer", "--config", config_file, *flags]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
    assert not (tmp_path / "run" / "checkpoint").exists()
