"""``paretoalign train`` and ``paretoalign demo`` (paretoalign.commands.train, paretoalign.commands.demo): a YAML
config with command-line overrides, the help text, and bad configs named before anything is written."""

from __future__ import annotations

import pytest
import yaml

from paretoalign.cli import main
from paretoalign.commands.demo import DEMO_CONFIG
from paretoalign.commands.train import resume_argument
from paretoalign.config import parse_config
from paretoalign.trainers.preference import ParetoPreferenceConfig


def test_train_command_from_yaml_with_overrides(tmp_path, tiny_model_dir, make_multi_label_pairs, capsys):
    data = make_multi_label_pairs(tmp_path / "pairs.jsonl")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "eval_data": "pairs.jsonl",
        "weights": [0.8, 0.2], "use_lora": False, "max_length": 64, "per_device_train_batch_size": 4,
        "max_steps": 2, "output_dir": str(tmp_path / "cli-run"), "report_to": "none", "save_strategy": "no",
        "use_cpu": True,
    }))
    assert main(["train", "--config", str(config_file), "--weighting", "cagrad", "--beta", "0.1"]) == 0
    saved = yaml.safe_load((tmp_path / "cli-run" / "config.yaml").read_text())
    assert saved["weighting"] == "cagrad" and saved["beta"] == 0.1 and saved["weights"] == [0.8, 0.2]
    assert saved["train_data"] == str(data)
    printed = " ".join(capsys.readouterr().out.split())
    assert "held-out preference metrics" in printed and "concise" in printed and "safe" in printed


def test_train_help_lists_every_multi_objective_field(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag, words in [("--weighting", "combined"), ("--beta", "KL"), ("--loss_type", "sigmoid"),
                        ("--engine", "auto"), ("--weights", "simplex"), ("--train_data", "pairs")]:
        assert flag in text and words in text


@pytest.mark.parametrize(
    "content, message",
    [
        ({"weights": [0.7, 0.7]}, "sum to 1"),
        ({"wieghts": [0.5, 0.5]}, "unknown config field"),
        ({"weighting": "nash"}, "weighting must be one of"),
        ({"engine": "autogram", "gradient_accumulation_steps": 2}, "gradient_accumulation_steps=1"),
        ({"model_name_or_path": "/nonexistent/model"}, "not found"),
        ({"train_data": "missing.jsonl"}, "missing.jsonl"),
        ({"weights": [0.2, 0.3, 0.5]}, "weights: 3 weights were given for 2 objectives"),
    ],
)
def test_bad_configs_fail_with_a_named_error_and_write_nothing(
    tmp_path, tiny_model_dir, make_multi_label_pairs, capsys, content, message
):
    make_multi_label_pairs(tmp_path / "pairs.jsonl")
    values = {"model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "use_lora": False,
              "max_steps": 1, "output_dir": str(tmp_path / "out"), "report_to": "none", "use_cpu": True}
    values.update(content)
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(config_file)]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
    assert not (tmp_path / "out").exists()


def test_resume_argument_reads_last_and_true_as_the_newest_checkpoint():
    assert resume_argument("last") is True and resume_argument(" True ") is True
    assert resume_argument("runs/x/checkpoint-4") == "runs/x/checkpoint-4"
    assert resume_argument(None) is None


def test_demo_config_is_the_documented_default_run(shipped_data):
    config = parse_config(ParetoPreferenceConfig, DEMO_CONFIG, ["--use_cpu", "true", "--report_to", "none"])
    assert config.objectives == ["harmless", "concise"] and config.weights == [0.5, 0.5]
    assert config.weighting == "raco" and config.use_lora and config.engine == "auto"
    for data in (config.train_data, config.eval_data):
        assert data.startswith("builtin:hh-rlhf/harmless-concise/")
        assert (shipped_data / data.removeprefix("builtin:")).is_file()


def test_demo_help_lists_the_config_fields(capsys):
    assert main(["demo", "--help"]) == 0
    assert "--max_steps" in capsys.readouterr().out


def test_train_reads_its_pairs_from_a_hugging_face_dataset(tmp_path, tiny_model_dir, datasets_cache, write_hub_dataset,
                                                          capsys):
    rows = [
        {"prompt": f"Question {index}?", "response_0": "Yes.", "response_1": "Yes, and here is a long answer.",
         "labels": {"concise": 0, "safe": 1 if index == 0 else 0}}
        for index in range(4)
    ]
    folder = tmp_path / "prefs-clone"
    write_hub_dataset(folder, {"train": rows, "test": rows})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": {"dataset": "prefs-clone", "split": "train"},
        "eval_data": {"dataset": "prefs-clone", "split": "test"}, "use_lora": False, "max_length": 64,
        "per_device_train_batch_size": 4, "max_steps": 1, "output_dir": str(tmp_path / "run"), "report_to": "none",
        "save_strategy": "no", "use_cpu": True,
    }))
    assert main(["train", "--config", str(config_file)]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train_data"] == {"dataset": str(folder), "split": "train"}
    printed = " ".join(capsys.readouterr().out.split())
    assert "held-out preference metrics" in printed and "concise" in printed and "safe" in printed
