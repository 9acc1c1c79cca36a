"""The preference trainer under FSDP2 (accelerate's FSDP plugin, version 2) on 2 gloo CPU processes: the same
parameters as one unsharded process with the whole batch, sharded checkpoints, and a resume that continues exactly.

Accelerate switches to FSDP only on accelerators; ``fsdp_on_cpu.py`` lifts that one check so the code that runs on
GPUs (``Accelerator.prepare`` sharding the model with ``fully_shard``, the exact engine on ``DTensor`` gradient
shards, torch.distributed.checkpoint) runs here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

LAUNCHER = Path(__file__).resolve().parent / "fsdp_on_cpu.py"
FSDP = {
    "fsdp": "full_shard",
    "fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
                    "state_dict_type": "SHARDED_STATE_DICT"},
}

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch.distributed without gloo")


def write_config(data_parallel_config, name: str, weighting: str, variant: str, **extra) -> Path:
    """The multi-process tests' run (K = 2, weights 0.6 / 0.4, 3 steps of AdamW unless ``extra`` says otherwise)
    with this weighting, LoRA or full fine-tuning."""
    lora = {"use_lora": True, "lora_r": 4, "lora_alpha": 8} if variant == "lora" else {}
    return data_parallel_config("auto", name, weighting=weighting, **lora, **extra)


def train(run_processes, tmp_path: Path, config: Path, output: Path, processes: int, port: int, *extra: str) -> Path:
    """Train with ``processes`` processes sharing a global batch of 8 pairs; returns the run's output folder."""
    target = [str(LAUNCHER)] if processes > 1 else ["-m", "paretoalign.cli"]
    arguments = [*target, "train", "--config", str(config), "--output_dir", str(output),
                 "--per_device_train_batch_size", str(8 // processes), *extra]
    run_processes(arguments, processes, port, tmp_path, 600)
    return output


def trained_weights(output: Path) -> dict[str, torch.Tensor]:
    model = output / "model"
    return load_file(model / ("adapter_model.safetensors" if (model / "adapter_config.json").is_file()
                              else "model.safetensors"))


def largest_change(output: Path, model_dir: Path) -> float:
    """The largest change of a trained weight: from the model in ``model_dir``, or from a fresh adapter's zero B."""
    trained = trained_weights(output)
    if any("lora_B" in name for name in trained):
        return max(weight.abs().max().item() for name, weight in trained.items() if "lora_B" in name)
    initial = load_file(model_dir / "model.safetensors")
    return max((weight - initial[name]).abs().max().item() for name, weight in trained.items())


def alphas(output: Path) -> list[list[float]]:
    history = json.loads((output / "metrics.json").read_text())["log_history"]
    return [[entry["alpha/concise"], entry["alpha/safe"]] for entry in history if "alpha/concise" in entry]


def assert_same_weights(expected: dict, actual: dict, atol: float) -> None:
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.allclose(expected[name], actual[name], atol=atol), name


@pytest.mark.parametrize("variant", ["lora", "full"])
@pytest.mark.parametrize("weighting", ["raco", "weighted_sum"])
def test_two_fsdp2_processes_train_like_one_process_with_the_whole_batch(
    run_processes, tmp_path, data_parallel_config, tiny_model_dir, free_port, weighting, variant
):
    # Plain SGD: its update is linear in the gradient, so the processes' different float32 summation order stays at
    # rounding level (AdamW divides by sqrt(v), which turns it into ~1e-5 wherever the two losses' gradients cancel,
    # with or without sharding).
    sgd = {"max_steps": 2, "optim": "sgd", "learning_rate": 0.1}
    single_config = write_config(data_parallel_config, "single", weighting, variant, **sgd)
    single = train(run_processes, tmp_path, single_config, tmp_path / "single", 1, free_port())
    # The checkpoint shows the run was sharded: one file of the model per process.
    sharded_config = write_config(data_parallel_config, "sharded", weighting, variant, save_strategy="steps",
                                  save_steps=2, **sgd, **FSDP)
    sharded = train(run_processes, tmp_path, sharded_config, tmp_path / "sharded", 2, free_port())
    model_shards = sorted(path.name for path in (sharded / "checkpoint-2" / "pytorch_model_fsdp_0").glob("*.distcp"))
    assert model_shards == ["__0_0.distcp", "__1_0.distcp"]
    assert_same_weights(trained_weights(single), trained_weights(sharded), atol=1e-6)
    assert largest_change(single, tiny_model_dir) > 1e-3  # a thousand times the tolerance: training moved the weights
    assert len(alphas(single)) == 2
    assert torch.allclose(torch.tensor(alphas(single)), torch.tensor(alphas(sharded)), atol=1e-6)


def test_resuming_a_sharded_checkpoint_continues_the_run_exactly(run_processes, tmp_path, data_parallel_config,
                                                                free_port):
    config = write_config(data_parallel_config, "sharded", "raco", "full", save_strategy="steps", save_steps=2,
                          **FSDP)
    whole = train(run_processes, tmp_path, config, tmp_path / "whole", 2, free_port())
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")  # as if the run had stopped after step 2
    train(run_processes, tmp_path, config, resumed, 2, free_port(), "--resume_from_checkpoint", "true")
    steps = [entry["step"] for entry in json.loads((resumed / "metrics.json").read_text())["log_history"]
             if "loss" in entry]
    assert steps == [1, 2, 3]  # steps 1 and 2 come from the checkpoint's history, step 3 was trained after resuming
    assert_same_weights(trained_weights(whole), trained_weights(resumed), atol=0.0)
