"""Tests for ``paretoalign rl`` (paretoalign.commands.rl): a run end to end, bad configs, YAML paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from paretoalign.cli import main
from paretoalign.config import parse_config
from paretoalign.trainers.grpo import MultiRewardGRPOConfig

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

REWARD_MODULE = '''
def exact_answer(completions, answer, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if a in t else 0.0 for t, a in zip(texts, answer)]


def short(completions, limit=10, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [max(0.0, 1.0 - len(t) / limit) for t in texts]
'''


def write_rl_config(tmp_path, tiny_model_dir, **extra) -> str:
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}], "answer": str(2 * i)} for i in range(12)
    ]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "rl_test_rewards.py").write_text(REWARD_MODULE)
    values = {
        "model_name_or_path": str(tiny_model_dir),
        "prompts": "prompts.jsonl",
        "num_problems": 8,
        "num_eval_prompts": 4,
        "rewards": [{"function": "rl_test_rewards:exact_answer"}, {"function": "rl_test_rewards:short", "limit": 12}],
        "reward_weights": [0.5, 0.5],
        "weighting": "raco",
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_completion_length": 4,
        "max_steps": 2,
        "learning_rate": 0.01,
        "use_lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_rl_command_end_to_end(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    config = write_rl_config(tmp_path, tiny_model_dir)
    assert main(["rl", "--config", config, "--multi_objective_aggregation", "normalize_then_sum"]) == 0
    run = tmp_path / "run"
    assert (run / "model" / "adapter_config.json").is_file()
    assert (run / "model" / "tokenizer_config.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rewards"] == ["exact_answer", "short"]
    assert metrics["multi_objective_aggregation"] == "normalize_then_sum"
    assert metrics["train"]["steps"] == 2
    assert metrics["train"]["skipped_steps"] == 0
    assert 1.0 <= metrics["train"]["advantages/distinct_per_group"] <= 2.0
    for phase in ("before", "after"):
        assert metrics[phase]["short"]["scored"] == 1.0
        assert 0.0 <= metrics[phase]["short"]["mean"] <= 1.0
    assert "held-out mean reward" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--reward_weights", "0.9", "0.9"], "reward_weights must be on the simplex"),
        (["--weighting", "sharpness"], "weighting must be one of"),
        (["--rewards", "answer", "no_such_reward"], r"rewards\[1\]: unknown reward 'no_such_reward'"),
    ],
)
def test_rl_command_bad_config_exits_2(tmp_path, tiny_model_dir, capsys, override, message):
    config = write_rl_config(tmp_path, tiny_model_dir)
    assert main(["rl", "--config", config, *override]) == 2
    output = " ".join(capsys.readouterr().out.split())
    assert "error:" in output
    assert re.search(message, output)


def test_rl_command_unknown_reward_function_exits_2(tmp_path, tiny_model_dir, capsys):
    config = write_rl_config(
        tmp_path, tiny_model_dir, rewards=[{"function": "rl_test_rewards_missing:score"}], reward_weights=[1.0]
    )
    assert main(["rl", "--config", config]) == 2
    output = " ".join(capsys.readouterr().out.split())
    assert "rewards[0]: cannot import module 'rl_test_rewards_missing'" in output


def test_yaml_paths_are_relative_to_the_config_file(tmp_path, tiny_model_dir):
    config = parse_config(MultiRewardGRPOConfig, write_rl_config(tmp_path, tiny_model_dir), [])
    assert config.prompts == str(tmp_path / "prompts.jsonl")
    assert config.rewards[1] == {"function": "rl_test_rewards:short", "limit": 12}
    assert config.model_name_or_path == str(tiny_model_dir)


def test_the_older_field_name_model_is_read_with_a_future_warning(tmp_path, tiny_model_dir):
    config_file = Path(write_rl_config(tmp_path, tiny_model_dir))
    values = yaml.safe_load(config_file.read_text())
    values["model"] = values.pop("model_name_or_path")
    config_file.write_text(yaml.safe_dump(values))
    with pytest.warns(FutureWarning, match="'model' is now called 'model_name_or_path'"):
        config = parse_config(MultiRewardGRPOConfig, config_file, [])
    assert config.model_name_or_path == str(tiny_model_dir)
    with pytest.warns(FutureWarning, match="--model is now called --model_name_or_path"):
        config = parse_config(MultiRewardGRPOConfig, None, ["--model", str(tmp_path)])
    assert config.model_name_or_path == str(tmp_path)
