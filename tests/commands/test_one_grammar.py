"""rl, eval and transfer read reward specs, prompt sources and model names the same way: each form through each command.

Every run is a tiny random Llama with a budget of one step / one iteration; what is checked is that each command
accepted the form and used it (the reward's label in its outputs, the model it loaded, the prompts it read).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from paretoalign.cli import main

COMMANDS = ("rl", "eval", "transfer")

REWARDS_MODULE = """\
def brevity(prompts, completions, **kwargs):
    return [-float(len(str(completion))) for completion in completions]
"""

#: Reward-spec forms -> (the spec as written in YAML, the label the command reports).
REWARD_FORMS = {
    "built-in name": ({"name": "length", "target": 3}, "length"),
    "command-line text": ("length:target=3", "length"),
    "function in a file beside the YAML": ({"function": "rewards.py:brevity"}, "brevity"),
    "function in an importable module": ({"function": "grammar_rewards:brevity"}, "brevity"),
    "weighted sum with a label": (
        {"sum": [{"weight": 1.0, "name": "length", "target": 3}, {"weight": 0.5, "function": "rewards.py:brevity"}],
         "label": "mixed"},
        "mixed",
    ),
}

#: Prompt sources -> how many prompts they hold at least.
PROMPT_FORMS = ("builtin:arithmetic", "builtin:hh-rlhf/helpful/test.jsonl", "prompts.txt", "messages.jsonl")


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """A config folder with a rewards file, an importable reward module and two prompt files."""
    (tmp_path / "rewards.py").write_text(REWARDS_MODULE)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "grammar_rewards.py").write_text(REWARDS_MODULE)
    monkeypatch.syspath_prepend(str(modules))
    (tmp_path / "prompts.txt").write_text("How do I bake bread?\nSay something kind.\nWhat is a fox?\nName a colour.\n")
    rows = [{"prompt": [{"role": "user", "content": f"Count to {i}."}]} for i in range(1, 6)]
    (tmp_path / "messages.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return tmp_path


def write_config(folder: Path, command: str, model: str, prompts: str, reward, trained: Path) -> list[str]:
    """The argument list of one tiny run of ``command`` with this model, prompt source and reward spec
    (``paretoalign eval`` evaluates the full weights in ``trained`` against the reference ``model``)."""
    output = folder / f"run-{command}"
    if command == "rl":
        values = {
            "model_name_or_path": model, "prompts": prompts, "num_problems": 2, "num_eval_prompts": 2,
            "rewards": [reward], "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 3,
            "max_steps": 1, "use_lora": True, "lora_r": 2, "lora_alpha": 4, "use_cpu": True, "report_to": "none",
            "save_strategy": "no", "output_dir": str(output),
        }
    elif command == "eval":
        values = {
            "model_name_or_path": model, "eval_prompts": prompts, "max_eval_prompts": 2, "eval_rewards": [reward],
            "eval_judge": reward, "eval_max_new_tokens": 3, "use_cpu": True, "output_dir": str(output),
        }
    else:
        values = {
            "model_name_or_path": model, "prompts": prompts, "max_prompts": 2, "prompts_per_iteration": 2, "n": 2,
            "m": 2, "num_replaced": 1, "label_budget": 2, "oracle": {"type": "reward", "name": "length",
                                                                       "target": 2},
            "sources": [reward], "eval_prompts": prompts, "max_eval_prompts": 2, "eval_reward": reward,
            "iterations": 1, "epochs_per_iteration": 1, "batch_size": 2, "max_new_tokens": 3, "lora_r": 2,
            "lora_alpha": 4, "output_dir": str(output),
        }
    path = folder / f"{command}.yaml"
    path.write_text(yaml.safe_dump(values))
    arguments = [command, "--config", str(path)]
    if command == "eval":
        arguments += ["--model", str(trained), "--output", str(output / "eval.json")]
    return arguments


def reported_rewards(folder: Path, command: str) -> list[str]:
    """The reward labels a finished run reports."""
    output = folder / f"run-{command}"
    if command == "rl":
        return json.loads((output / "metrics.json").read_text())["rewards"]
    if command == "eval":
        generation = json.loads((output / "eval.json").read_text())["generation"]
        return [*generation["rewards"], generation["win_rate_vs_reference"]["judge"]]
    row = json.loads((output / "metrics.jsonl").read_text().splitlines()[0])
    return [name for name in row["sources"] if name != "self"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("form", sorted(REWARD_FORMS))
def test_every_reward_spec_form_through_every_command(folder, tiny_model_dir, command, form):
    spec, label = REWARD_FORMS[form]
    arguments = write_config(folder, command, str(tiny_model_dir), "prompts.txt", spec, tiny_model_dir)
    assert main(arguments) == 0
    assert set(reported_rewards(folder, command)) == {label}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("prompts", PROMPT_FORMS)
def test_every_prompt_source_through_every_command(folder, tiny_model_dir, command, prompts):
    arguments = write_config(folder, command, str(tiny_model_dir), prompts, {"name": "length", "target": 3}, tiny_model_dir)
    assert main(arguments) == 0
    output = folder / f"run-{command}"
    if command == "eval":
        assert json.loads((output / "eval.json").read_text())["generation"]["prompts"] == 2
    elif command == "transfer":
        assert json.loads((output / "metrics.jsonl").read_text().splitlines()[0])["prompts"] == 2
    else:
        assert json.loads((output / "metrics.json").read_text())["after"]["length"]["scored"] == 1.0


@pytest.mark.parametrize("command", COMMANDS)
def test_a_model_folder_beside_the_yaml_through_every_command(folder, tiny_model_dir, command):
    (folder / "tiny-model").symlink_to(tiny_model_dir, target_is_directory=True)
    arguments = write_config(folder, command, "tiny-model", "prompts.txt", {"name": "length", "target": 3},
                             tiny_model_dir)
    assert main(arguments) == 0
    written = yaml.safe_load((folder / f"run-{command}" / "config.yaml").read_text()) if command != "eval" else None
    if written is not None:
        assert written["model_name_or_path"] == str(folder / "tiny-model")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_builtin_model_is_the_same_error_in_every_command(folder, tiny_model_dir, command, capsys):
    arguments = write_config(folder, command, "builtin:nope", "prompts.txt", {"name": "length", "target": 3},
                             tiny_model_dir)
    assert main(arguments) == 2
    assert "unknown built-in model 'builtin:nope'; choose one of ['builtin:smollm2']" in capsys.readouterr().out
