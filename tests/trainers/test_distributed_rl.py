"""Several processes must not change the RL trainer's maths: ``paretoalign rl`` on 2 gloo processes with batch 8
equals 1 process with batch 16, for TRL's own loss (weighted_sum) and for per-reward gradients (raco).

Generation is the one thing made deterministic (``distributed_rl_worker.py``: completions are a function of the
prompt and the completion's index in its group); rewards, their gathering across processes, advantages, TRL's loss,
DDP and the per-reward engine run unchanged.

Settings under which one process and two are the same computation:

* ``loss_type: dapo`` (TRL's default) divides the summed token losses by the token count of the *global* batch
  divided by the number of processes, so the DDP mean of the local gradients is the gradient of the global loss
  even though the completions of the two processes have different lengths (``grpo`` averages per sequence and is
  equivalent only with equal sequence counts per process; ``bnpo`` divides by the *local* token count and is not
  equivalent);
* ``scale_rewards`` / GDPO's batch normalisation read the rewards gathered from all processes, so they see the
  global batch;
* ``optim: sgd``: Adam is invariant to the scale of the gradient, so it would hide a wrong normalisation across
  processes (for example summing instead of averaging the per-reward gradients); SGD does not;
* float32 (``bf16: false``, the default on CPU; TRL's ``GRPOConfig`` would turn bf16 autocast on): bf16 rounding
  differs with the per-process batch shapes (1 vs 2 processes then differ by ~1e-4 after one step; in float32
  by ~1e-8);
* no dropout, whole groups of ``num_generations`` per process (per-process batch a multiple of 4).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

WORKER = Path(__file__).resolve().parent / "distributed_rl_worker.py"
TOLERANCE = 1e-5
STEPS = 2
GLOBAL_BATCH = 16  # 4 prompts x 4 completions per step
REWARDS = ("characters", "letters", "digest")
PROMPTS = [f"{question} {noun}?" for question in ("How do I bake", "Is it safe to eat") for noun in (
    "bread", "the fox", "salt", "water", "the dog", "yeast"
)]


def write_config(tmp_path: Path, model_dir: Path, weighting: str, name: str | None = None, **overrides) -> None:
    """``<name>.yaml`` (``name`` defaults to the weighting) with ``overrides`` on the settings below."""
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": prompt}) + "\n" for prompt in PROMPTS))
    config = {
        "model_name_or_path": str(model_dir),
        "prompts": "prompts.jsonl",
        "num_problems": 8,  # two steps of 4 prompts x 4 completions
        "num_eval_prompts": 0,
        "rewards": [{"function": f"distributed_rl_worker:{name}"} for name in REWARDS],
        "reward_weights": [0.5, 0.3, 0.2],
        "weighting": weighting,
        # GDPO: per-reward group normalisation, then a batch normalisation over the gathered global batch.
        "multi_objective_aggregation": "normalize_then_sum",
        "loss_type": "dapo",
        "num_generations": 4,
        "max_completion_length": 6,
        "max_steps": STEPS,
        "optim": "sgd",
        "learning_rate": 0.5,
        "lr_scheduler_type": "constant",
        "use_lora": False,
        "bf16": False,  # TRL defaults to bf16 autocast; float32 for a 1e-5 comparison
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }
    (tmp_path / f"{name or weighting}.yaml").write_text(yaml.safe_dump(config))


def launch(run_processes, run_dir: Path, processes: int, specs: list[str], port: int) -> None:
    """One launch of the worker with ``processes`` processes for the runs ``specs`` (global batch 16)."""
    run_processes([str(WORKER), str(run_dir), str(GLOBAL_BATCH // processes), *specs], processes, port, run_dir, 600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, free_port, run_processes):
    """``{"<processes>p-<spec>": (final parameters, metrics)}`` for 1 process (batch 16) and 2 processes (batch 8)."""
    if not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed without gloo")
    run_dir = tmp_path_factory.mktemp("rl-distributed")
    for weighting in ("weighted_sum", "raco"):
        write_config(run_dir, tiny_model_dir, weighting)
    for engine in ("exact", "fused"):
        # LoRA: TRL's fused LM head reads the (frozen) output head in its own kernel, out of the fused hooks' way.
        write_config(run_dir, tiny_model_dir, "raco", f"raco_lora_{engine}", engine=engine, use_lora=True, lora_r=4,
                     gradient_checkpointing=False)
    launch(run_processes, run_dir, 1, ["weighted_sum", "raco", "raco+poison0", "raco_lora_exact", "raco_lora_fused"], free_port())
    launch(run_processes, run_dir, 2, ["weighted_sum", "raco", "raco+local_gram", "raco+poison1", "raco_lora_fused"], free_port())
    results = {}
    for output in run_dir.glob("?p-*"):
        metrics = json.loads((output / "metrics.json").read_text())
        skipped = 1 if "poison" in output.name else 0
        assert metrics["train"]["steps"] == STEPS and metrics["train"]["skipped_steps"] == skipped, output.name
        weights = output / "model" / ("adapter_model.safetensors" if "lora" in output.name else "model.safetensors")
        results[output.name] = load_file(weights), metrics
    return results


def max_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.mark.parametrize("weighting", ["weighted_sum", "raco"])
def test_rl_two_processes_equal_one_process_with_the_same_global_batch(runs, tiny_model_dir, weighting):
    (single, single_metrics), (double, double_metrics) = runs[f"1p-{weighting}"], runs[f"2p-{weighting}"]

    # The runs trained on completions whose rewards differ within groups, and the parameters moved.
    history = [entry for entry in single_metrics["log_history"] if "advantages/distinct_per_group" in entry]
    assert len(history) == STEPS and all(entry["advantages/distinct_per_group"] > 1 for entry in history)
    assert max_difference(single, load_file(tiny_model_dir / "model.safetensors")) > 1000 * TOLERANCE
    # Both saw the same completions: TRL gathers the rewards across processes before logging them.
    for name in REWARDS:
        key = f"rewards/{name}/mean"
        assert [entry[key] for entry in history] == pytest.approx(
            [entry[key] for entry in double_metrics["log_history"] if key in entry], abs=1e-6
        )

    if weighting == "raco":
        assert all(f"alpha/{name}" in entry for entry in history for name in REWARDS)

    difference = max_difference(single, double)
    print(f"{weighting}: max |1 process - 2 processes| = {difference:.2e}")
    assert difference <= TOLERANCE


def test_rl_gram_of_local_gradients_would_differ(runs):
    # Each process forms the Gram and alpha from its own per-reward gradients and only the combined direction is
    # averaged: the alphas are not the global batch's, and neither are the parameters.
    single, naive = runs["1p-raco"][0], runs["2p-raco+local_gram"][0]
    difference = max_difference(single, naive)
    print(f"raco with local Grams: max |1 process - 2 processes| = {difference:.2e}")
    assert difference > 100 * TOLERANCE


def test_rl_a_poisoned_batch_on_one_process_skips_the_step_on_every_process(runs):
    # Rank 1's per-reward losses are NaN at step 1: both processes skip it (no hang in the per-reward all-reduce)
    # and end where one process that skips the same step ends; the skip changed the run.
    single, double = runs["1p-raco+poison0"][0], runs["2p-raco+poison1"][0]
    assert max_difference(single, double) <= TOLERANCE
    assert max_difference(single, runs["1p-raco"][0]) > 100 * TOLERANCE


def test_rl_fused_engine_on_two_processes_equals_exact_on_one(runs):
    """The fused engine's per-reward gradients go through the same all-reduce as the exact engine's."""
    exact, exact_metrics = runs["1p-raco_lora_exact"]
    assert max(float(tensor.abs().max()) for name, tensor in exact.items() if "lora_B" in name) > 1000 * TOLERANCE
    for run in ("1p-raco_lora_fused", "2p-raco_lora_fused"):
        fused, fused_metrics = runs[run]
        difference = max_difference(exact, fused)
        print(f"raco LoRA, {run} fused against 1 process exact: max difference {difference:.2e}")
        assert difference <= TOLERANCE
        for name in REWARDS:
            key = f"alpha/{name}"
            assert [entry[key] for entry in fused_metrics["log_history"] if key in entry] == pytest.approx(
                [entry[key] for entry in exact_metrics["log_history"] if key in entry], rel=1e-4
            )
