"""The preference trainer end to end on a tiny random Llama: learning, YAML/CLI, outputs, save/load, accumulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from paretoalign.cli import main
from paretoalign.config import ParetoPreferenceConfig, parse_config
from paretoalign.models import load_trained, sequence_logps
from paretoalign.trainers.preference import run_preference_training

REPO = Path(__file__).resolve().parents[1]

PROMPTS = ["Human: How do I bake bread?\n\nAssistant:", "Human: Tell me a joke.\n\nAssistant:",
           "Human: Is it safe to swim after eating?\n\nAssistant:", "Human: Help me write a poem.\n\nAssistant:"]
SHORT = ["No.", "Sure.", "Yes.", "Fine."]
LONG = ["I cannot help with that request, but here is a safe and kind answer.",
        "The quick brown fox jumps over the lazy dog, and that is the joke.",
        "Please be kind and safe: wait a little while before you swim.",
        "Here is a short answer about bread, flour, water, salt and yeast."]


def write_multi_label_pairs(path: Path, copies: int = 4) -> Path:
    """Pairs where `concise` prefers the short reply everywhere and `safe` the long one on the first prompt."""
    rows = []
    for _ in range(copies):
        for i, prompt in enumerate(PROMPTS):
            rows.append({"prompt": prompt, "response_0": SHORT[i], "response_1": LONG[i],
                         "labels": {"concise": 0, "safe": 1 if i == 0 else 0}})
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def tiny_config(tmp_path: Path, model_dir: Path, **overrides) -> ParetoPreferenceConfig:
    data = write_multi_label_pairs(tmp_path / "pairs.jsonl")
    values = dict(
        model_name_or_path=str(model_dir), train_data=str(data), eval_data=str(data), weights=[0.5, 0.5],
        weighting="raco", use_lora=False, max_length=64, per_device_train_batch_size=4,
        per_device_eval_batch_size=8, max_steps=12, learning_rate=3e-3, lr_scheduler_type="constant",
        output_dir=str(tmp_path / "run"), save_strategy="no", report_to="none", seed=0, use_cpu=True,
        disable_tqdm=True,
    )
    values.update(overrides)
    return ParetoPreferenceConfig(**values)


@pytest.mark.parametrize("weighting", ["raco", "weighted_sum", "mgda"])
def test_training_reduces_every_objective_loss(tmp_path, tiny_model_dir, weighting):
    metrics = run_preference_training(tiny_config(tmp_path, tiny_model_dir, weighting=weighting, learning_rate=1e-3))
    for name in ("concise", "safe"):
        assert metrics["before"][name]["loss"] == pytest.approx(0.6931472, abs=1e-6)  # log 2 at the reference
        assert metrics["after"][name]["loss"] < metrics["before"][name]["loss"] - 0.01, (name, metrics["after"])
    logged = [entry for entry in metrics["log_history"] if "alpha/concise" in entry]
    assert len(logged) == 12 and all("cosine/concise__safe" in entry for entry in logged)


def test_lora_run_writes_a_loadable_adapter_config_metrics_and_tensorboard_logs(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, use_lora=True, lora_r=4, lora_alpha=8, max_steps=3,
                         report_to="tensorboard", learning_rate=1e-2)
    metrics = run_preference_training(config)
    run = Path(config.output_dir)
    assert (run / "model" / "adapter_config.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["weighting"] == "raco"
    saved_metrics = json.loads((run / "metrics.json").read_text())
    assert saved_metrics["objectives"] == ["concise", "safe"] and saved_metrics["train"]["steps"] == 3
    assert list(run.rglob("events.out.tfevents.*")), "no TensorBoard event file"

    # The adapter loads back with peft and scores exactly like the trained policy, and it generates a reply.
    policy, tokenizer = load_trained(run / "model")
    batch = tokenizer([PROMPTS[0] + " " + LONG[0]], return_tensors="pt")
    mask = batch["attention_mask"].clone()
    mask[:, :5] = 0
    reloaded = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], mask)
    assert reloaded.item() != 0.0
    prompt = tokenizer([PROMPTS[1]], return_tensors="pt")
    generated = policy.generate(**prompt, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 5
    base, _ = load_trained(run / "model")
    assert torch.equal(sequence_logps(base, batch["input_ids"], batch["attention_mask"], mask), reloaded)
    assert metrics["after"]["concise"]["loss"] != metrics["before"]["concise"]["loss"]


def test_gradient_accumulation_equals_one_large_batch(tmp_path, tiny_model_dir):
    def final_weights(batch_size, accumulation, folder):
        (tmp_path / folder).mkdir()
        config = tiny_config(tmp_path / folder, tiny_model_dir, per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, max_steps=2, optim="sgd", learning_rate=0.1,
                             eval_data=None)
        run_preference_training(config)
        policy, _ = load_trained(Path(config.output_dir) / "model")
        return torch.cat([p.flatten() for p in policy.parameters()])

    assert torch.allclose(final_weights(4, 1, "one"), final_weights(2, 2, "two"), atol=1e-6)


def test_train_command_from_yaml_with_overrides(tmp_path, tiny_model_dir, capsys):
    data = write_multi_label_pairs(tmp_path / "pairs.jsonl")
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
    printed = capsys.readouterr().out
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
        ({"weights": [0.2, 0.3, 0.5]}, "3 weights were given for 2 objectives"),
    ],
)
def test_bad_configs_fail_with_a_named_error_and_write_nothing(tmp_path, tiny_model_dir, capsys, content, message):
    write_multi_label_pairs(tmp_path / "pairs.jsonl")
    values = {"model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "use_lora": False,
              "max_steps": 1, "output_dir": str(tmp_path / "out"), "report_to": "none", "use_cpu": True}
    values.update(content)
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(config_file)]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
    assert not (tmp_path / "out").exists()


def test_one_dataset_per_objective_example_runs_on_a_tiny_model(tmp_path, tiny_model_dir, shipped_data):
    config = parse_config(
        ParetoPreferenceConfig,
        REPO / "examples" / "hh_helpful_harmless.yaml",
        ["--model_name_or_path", str(tiny_model_dir), "--max_steps", "2", "--max_train_pairs", "16",
         "--max_eval_pairs", "8", "--max_length", "64", "--output_dir", str(tmp_path / "hh"), "--report_to", "none",
         "--save_strategy", "no", "--use_lora", "false", "--use_cpu", "true"],
    )
    metrics = run_preference_training(config)
    assert metrics["objectives"] == ["helpful", "harmless"] and metrics["weights"] == [0.7, 0.3]
    assert metrics["train"]["steps"] == 2
    assert metrics["after"]["helpful"]["pairs"] + metrics["after"]["harmless"]["pairs"] == 8
