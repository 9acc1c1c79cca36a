"""The preference trainer end to end on a tiny random Llama: learning, outputs, save/load, accumulation, and the
one-dataset-per-objective example (paretoalign.trainers.preference through paretoalign.commands.train.train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from paretoalign.commands.train import train
from paretoalign.config import parse_config
from paretoalign.models import load_trained, sequence_logps
from paretoalign.trainers.preference import ParetoPreferenceConfig

REPO = Path(__file__).resolve().parents[2]

#: The first long reply of the ``make_multi_label_pairs`` data (the pair of its first prompt).
FIRST_LONG_REPLY = "I cannot help with that request, but here is a safe and kind answer."


@pytest.mark.parametrize("weighting", ["raco", "weighted_sum", "mgda"])
def test_training_reduces_every_objective_loss(tmp_path, tiny_model_dir, make_preference_config, weighting):
    metrics = train(make_preference_config(tmp_path, tiny_model_dir, weighting=weighting, learning_rate=1e-3))
    for name in ("concise", "safe"):
        assert metrics["before"][name]["loss"] == pytest.approx(0.6931472, abs=1e-6)  # log 2 at the reference
        assert metrics["after"][name]["loss"] < metrics["before"][name]["loss"] - 0.01, (name, metrics["after"])
    logged = [entry for entry in metrics["log_history"] if "alpha/concise" in entry]
    assert len(logged) == 12 and all("cosine/concise__safe" in entry for entry in logged)


def test_lora_run_writes_a_loadable_adapter_config_metrics_and_tensorboard_logs(
    tmp_path, tiny_model_dir, make_preference_config, pair_prompts
):
    config = make_preference_config(tmp_path, tiny_model_dir, use_lora=True, lora_r=4, lora_alpha=8, max_steps=3,
                                    report_to="tensorboard", learning_rate=1e-2)
    metrics = train(config)
    run = Path(config.output_dir)
    assert (run / "model" / "adapter_config.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["weighting"] == "raco"
    saved_metrics = json.loads((run / "metrics.json").read_text())
    assert saved_metrics["objectives"] == ["concise", "safe"] and saved_metrics["train"]["steps"] == 3
    assert list(run.rglob("events.out.tfevents.*")), "no TensorBoard event file"

    # The adapter loads back with peft and scores exactly like the trained policy, and it generates a reply.
    policy, tokenizer = load_trained(run / "model")
    batch = tokenizer([pair_prompts[0] + " " + FIRST_LONG_REPLY], return_tensors="pt")
    mask = batch["attention_mask"].clone()
    mask[:, :5] = 0
    reloaded = sequence_logps(policy, batch["input_ids"], batch["attention_mask"], mask)
    assert reloaded.item() != 0.0
    prompt = tokenizer([pair_prompts[1]], return_tensors="pt")
    generated = policy.generate(**prompt, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 5
    base, _ = load_trained(run / "model")
    assert torch.equal(sequence_logps(base, batch["input_ids"], batch["attention_mask"], mask), reloaded)
    assert metrics["after"]["concise"]["loss"] != metrics["before"]["concise"]["loss"]


def test_gradient_accumulation_equals_one_large_batch(tmp_path, tiny_model_dir, make_preference_config):
    def final_weights(batch_size, accumulation, folder):
        (tmp_path / folder).mkdir()
        config = make_preference_config(tmp_path / folder, tiny_model_dir, per_device_train_batch_size=batch_size,
                                        gradient_accumulation_steps=accumulation, max_steps=2, optim="sgd",
                                        learning_rate=0.1, eval_data=None)
        train(config)
        policy, _ = load_trained(Path(config.output_dir) / "model")
        return torch.cat([p.flatten() for p in policy.parameters()])

    assert torch.allclose(final_weights(4, 1, "one"), final_weights(2, 2, "two"), atol=1e-6)


def test_one_dataset_per_objective_example_runs_on_a_tiny_model(tmp_path, tiny_model_dir, shipped_data):
    config = parse_config(
        ParetoPreferenceConfig,
        REPO / "examples" / "hh_helpful_harmless.yaml",
        ["--model_name_or_path", str(tiny_model_dir), "--max_steps", "2", "--max_train_pairs", "16",
         "--max_eval_pairs", "8", "--max_length", "64", "--output_dir", str(tmp_path / "hh"), "--report_to", "none",
         "--save_strategy", "no", "--use_lora", "false", "--use_cpu", "true"],
    )
    metrics = train(config)
    assert metrics["objectives"] == ["helpful", "harmless"] and metrics["weights"] == [0.7, 0.3]
    assert metrics["train"]["steps"] == 2
    assert metrics["after"]["helpful"]["pairs"] + metrics["after"]["harmless"]["pairs"] == 8
