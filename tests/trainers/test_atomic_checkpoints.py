"""Atomic checkpoints and exact resume: a run killed while saving a checkpoint resumes to the same result."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

# Runs `paretoalign train`; with CRASH_AT_CHECKPOINT=N the process SIGKILLs itself in the middle of writing
# checkpoint N (after the weights and optimizer, before the RNG states and trainer state).
LAUNCHER = """
import os, signal, sys
from transformers import Trainer
from paretoalign.cli import main

crash_step = int(os.environ.get("CRASH_AT_CHECKPOINT", "0"))
original = Trainer._save_rng_state

def save_rng_state_or_crash(self, output_dir):
    if self.state.global_step == crash_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)

Trainer._save_rng_state = save_rng_state_or_crash
sys.exit(main(sys.argv[1:]))
"""


def train(tmp_path: Path, config_file: Path, output_dir: Path, crash_at: int = 0, resume: bool = False):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    command = [sys.executable, str(launcher), "train", "--config", str(config_file), "--output_dir", str(output_dir)]
    if resume:
        command += ["--resume_from_checkpoint", "last"]
    env = {"CRASH_AT_CHECKPOINT": str(crash_at), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def step_losses(output_dir: Path) -> list[tuple[int, float, float, float]]:
    history = json.loads((output_dir / "metrics.json").read_text())["log_history"]
    return [(e["step"], e["loss"], e["loss/concise"], e["loss/safe"]) for e in history if "loss/concise" in e]


def test_kill_during_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model_dir,
                                                                        make_multi_label_pairs):
    make_multi_label_pairs(tmp_path / "pairs.jsonl")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "weights": [0.6, 0.4],
        "use_lora": True, "lora_r": 4, "lora_alpha": 8, "max_length": 64, "per_device_train_batch_size": 4,
        "max_steps": 6, "num_train_epochs": 2, "learning_rate": 1e-2, "save_strategy": "steps", "save_steps": 2,
        "report_to": "none", "use_cpu": True, "seed": 3, "disable_tqdm": True,
    }))

    uninterrupted = tmp_path / "uninterrupted"
    result = train(tmp_path, config_file, uninterrupted)
    assert result.returncode == 0, result.stderr[-3000:]

    interrupted = tmp_path / "interrupted"
    crashed = train(tmp_path, config_file, interrupted, crash_at=4)
    assert crashed.returncode == -signal.SIGKILL
    assert (interrupted / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (interrupted / "checkpoint-4").exists(), "a half-written checkpoint is visible to resume"
    assert (interrupted / ".staging-checkpoint-4").exists()

    resumed = train(tmp_path, config_file, interrupted, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (interrupted / ".staging-checkpoint-4").exists()

    expected = load_file(uninterrupted / "model" / "adapter_model.safetensors")
    actual = load_file(interrupted / "model" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert step_losses(interrupted) == step_losses(uninterrupted)
    assert [step for step, *_ in step_losses(interrupted)] == [1, 2, 3, 4, 5, 6]


def test_resumed_amopo_run_draws_the_same_noise_as_an_uninterrupted_one(tmp_path, tiny_model_dir,
                                                                        make_multi_label_pairs):
    """AMoPO's adaptive alpha comes from Gaussian draws of a generator of its own; the checkpoint keeps its state.
    (`safe` is left unlabelled on some prompts so its score averages other draws than `concise`'s.)"""
    rows = [json.loads(line) for line in make_multi_label_pairs(tmp_path / "all.jsonl").read_text().splitlines()]
    for index, row in enumerate(rows):
        if index % 4 in (1, 2):
            del row["labels"]["safe"]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "weights": [0.6, 0.4],
        "weighting": "amopo", "use_lora": True, "lora_r": 4, "lora_alpha": 8, "max_length": 64,
        "per_device_train_batch_size": 4, "max_steps": 4, "learning_rate": 1e-2, "save_strategy": "steps",
        "save_steps": 2, "report_to": "none", "use_cpu": True, "seed": 3, "disable_tqdm": True,
    }))
    uninterrupted = tmp_path / "uninterrupted"
    result = train(tmp_path, config_file, uninterrupted)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (uninterrupted / "checkpoint-2" / "amopo_generator_0.pth").is_file()

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(uninterrupted / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = train(tmp_path, config_file, resumed_dir, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = load_file(uninterrupted / "model" / "adapter_model.safetensors")
    actual = load_file(resumed_dir / "model" / "adapter_model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    alphas = [entry["alpha/concise"] for entry in json.loads((uninterrupted / "metrics.json").read_text())["log_history"]
              if "alpha/concise" in entry]
    assert len(set(alphas)) > 1, "the adaptive alpha did not move: the test would not see the draws"
