r"""Cost of one GRPO optimizer step with K rewards: TRL's weighted-sum GDPO loss against per-reward RACO gradients.

    python benchmarks/rl_step_cost.py --quick      # tiny random Llama with LoRA, seconds
    python benchmarks/rl_step_cost.py              # SmolLM2-135M-Instruct + LoRA r=16 on q/k/v/o
    python benchmarks/rl_step_cost.py --output BENCHMARKS.md   # also append the table under "## RL step cost"

Configurations, each at K = 1, 2, 3 rewards and each KL coefficient of ``--betas`` (TRL's default 0, and 0.04):

* ``weighted-sum GDPO``: :class:`paretoalign.trainers.grpo.MultiRewardGRPOTrainer` with ``weighting:
  weighted_sum`` and ``multi_objective_aggregation: normalize_then_sum``: TRL's own loss on the aggregated
  advantage, one backward pass;
* ``raco exact`` / ``raco fused``: ``weighting: raco`` (w_k = 1/K), ``engine: exact`` (K backward passes) or
  ``engine: fused`` (one backward pass of the per-token log-probabilities, two with the KL term;
  :mod:`paretoalign.fused`).

What is timed: generation and reward scoring are excluded. The completions are generated once, before any timing,
by the trainer's own ``_generate_and_score_completions`` (sampling with ``min_new_tokens`` = ``max_new_tokens`` =
the completion length, so every completion has exactly that many tokens). The model is the base model with a LoRA
adapter whose B matrices are small seeded random values (:func:`lora_policy`), and the reference log-probabilities
of the KL term are the base model's (adapter disabled), as in a run some steps after its adapter started at zero
(TRL's reference is a copy of the initial adapter), so the KL term's gradient is not zero. The rewards are a fixed
seeded uniform table: their values change the advantages, not the cost; the configuration with K rewards takes the
table's first K columns (GDPO: :func:`paretoalign.advantages.gdpo_advantages`, per reward:
:func:`paretoalign.advantages.decoupled_advantages`). Every configuration gets a fresh copy of the same model and
trains on these same inputs. One step is the trainer's ``training_step`` on that micro-batch (policy forward pass,
the loss or the K losses, the backward pass(es), with a per-reward weighting the Gram matrix, the weighting and the
combined gradient written into ``.grad``), then the update of the trainer's optimizer (``optim``, AdamW) and
``zero_grad``: one optimizer step without gradient accumulation. Times are wall-clock seconds, the median of
``--repeats`` timed steps after ``--warmup`` untimed ones per configuration. "passes" counts the backward passes
through the model's final norm in the first step.

The first step's gradients (before the optimizer's update) of ``raco exact`` and ``raco fused`` start from the same
weights on the same inputs; the line ``fused == exact: max |diff| ...`` gives their largest absolute difference over
every K and beta. The last line is ``ratio K=3: X.XX``: the fused RACO step over the weighted-sum GDPO step at K = 3
and the first beta.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import datasets
import torch
from peft import PeftModel
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import append_to_markdown, machine_description  # noqa: E402

from paretoalign.advantages import decoupled_advantages, gdpo_advantages  # noqa: E402
from paretoalign.data.prompts import arithmetic_word_problems  # noqa: E402
from paretoalign.models import (  # noqa: E402
    CHATML_TEMPLATE,
    apply_lora,
    load_policy,
    token_logps,
    train_byte_level_tokenizer,
)
from paretoalign.trainers.grpo import MultiRewardGRPOConfig, MultiRewardGRPOTrainer  # noqa: E402

SECTION = "## RL step cost"
MODES = ("weighted-sum GDPO", "raco exact", "raco fused")
OBJECTIVES = (1, 2, 3)
LORA_B_STD = 0.02


@dataclass(frozen=True)
class Configuration:
    """One timed configuration: a mode of `MODES`, K rewards and the KL coefficient beta."""

    mode: str
    num_rewards: int
    beta: float

    @property
    def engine(self) -> str | None:
        """The per-reward engine (``exact`` or ``fused``); None for the weighted sum, which has one loss."""
        return None if self.mode == MODES[0] else self.mode.removeprefix("raco ")

    def label(self) -> str:
        return f"{self.mode:<18} beta={self.beta:<5g} K={self.num_rewards}"


@dataclass
class Measurement:
    """The timed steps' seconds, the backward passes of the first step and, for a per-reward engine, the gradients
    the first step applied."""

    seconds: list[float]
    passes: int
    first_gradients: list[torch.Tensor] | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process on a few sentences (no downloads), with a chat template."""
    corpus = [
        "Solve the arithmetic word problem. Ana has 5 apples. Ben gives her 3 apples. How many apples now?",
        "Emma has 3 shelves with 4 books in each shelf. <think>3 times 4</think> <answer>12</answer>",
    ] * 20
    return train_byte_level_tokenizer(corpus, vocab_size=320, chat_template=CHATML_TEMPLATE)


def tiny_llama(tokenizer: PreTrainedTokenizerFast) -> nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)


def lora_policy(quick: bool) -> tuple[PeftModel, PreTrainedTokenizerFast, str]:
    """The benchmarked model with LoRA r=16 on q/k/v/o (:func:`paretoalign.models.apply_lora`), its tokenizer and
    its description. The adapter's B matrices get small seeded random values (``N(0, LORA_B_STD^2)``) instead of
    PEFT's zeros, so that every adapter weight has a non-zero gradient, as after some training."""
    if quick:
        tokenizer = tiny_tokenizer()
        model, description = tiny_llama(tokenizer), "tiny random Llama (2 layers, hidden 64, tied head)"
    else:
        model, tokenizer = load_policy("builtin:smollm2")
        description = "SmolLM2-135M-Instruct"
    torch.manual_seed(1)
    policy = apply_lora(model)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * LORA_B_STD)
    return policy, tokenizer, f"{description}, LoRA r=16 on q/k/v/o"


def reward_table(num_completions: int, seed: int = 0) -> torch.Tensor:
    """``[N, max K]`` seeded uniform rewards."""
    return torch.rand(num_completions, max(OBJECTIVES), generator=torch.Generator().manual_seed(seed))


def table_rewards(table: torch.Tensor, num_rewards: int) -> list:
    """K reward functions: completion i of a batch gets ``table[i, k]``."""

    def reward_for(column: int):
        def reward(completions, **kwargs):
            return [float(value) for value in table[: len(completions), column]]

        reward.__name__ = f"reward_{column}"
        return reward

    return [reward_for(column) for column in range(num_rewards)]


def trainer_for(
    configuration: Configuration, policy: PeftModel, tokenizer, prompts: datasets.Dataset, rewards: torch.Tensor, args
) -> MultiRewardGRPOTrainer:
    """A trainer of a fresh copy of `policy` in `configuration`, ready for ``training_step`` outside ``train()``."""
    num_rewards = configuration.num_rewards
    weighting = "weighted_sum" if configuration.engine is None else "raco"
    config = MultiRewardGRPOConfig(
        output_dir=str(args.scratch / "run"),
        num_generations=args.group_size,
        per_device_train_batch_size=args.group_size * args.prompts,
        max_completion_length=args.completion_tokens,
        generation_kwargs={"min_new_tokens": args.completion_tokens},
        reward_weights=[1.0 / num_rewards] * num_rewards,
        beta=configuration.beta,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        weighting=weighting,
        multi_objective_aggregation="normalize_then_sum",
        engine=configuration.engine or "auto",
    )
    trainer = MultiRewardGRPOTrainer(
        model=copy.deepcopy(policy),
        reward_funcs=table_rewards(rewards, num_rewards),
        args=config,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer._prepare_inputs = lambda batch: batch
    return trainer


def generate_completions(policy, tokenizer, prompts, rewards, args) -> dict:
    """One generation batch, made by the trainer's own sampling and scoring, with the reference log-probabilities
    of the base model (adapter disabled); the advantages are replaced per configuration."""
    configuration = Configuration("raco exact", max(OBJECTIVES), 0.0)
    trainer = trainer_for(configuration, policy, tokenizer, prompts, rewards, args)
    trainer.model.train()
    rows = [{"prompt": row["prompt"]} for row in prompts for _ in range(args.group_size)]
    torch.manual_seed(3)
    generated = trainer._generate_and_score_completions(rows)
    input_ids = torch.cat([generated["prompt_ids"], generated["completion_ids"]], dim=1)
    attention_mask = torch.cat([generated["prompt_mask"], generated["completion_mask"]], dim=1)
    with torch.no_grad(), trainer.model.disable_adapter():
        reference = token_logps(trainer.model, input_ids, attention_mask)[:, -generated["completion_ids"].shape[1]:]
    del trainer
    gc.collect()
    kept = {key: value for key, value in generated.items() if key not in ("advantages", "reward_advantages")}
    return {**kept, "ref_per_token_logps": reference}


def inputs_for(configuration: Configuration, generated: dict, rewards: torch.Tensor, group_size: int) -> dict:
    """The micro-batch of `configuration`: the generated completions with the advantages of its first K rewards."""
    table = rewards[:, : configuration.num_rewards]
    weights = [1.0 / configuration.num_rewards] * configuration.num_rewards
    device = generated["completion_ids"].device
    inputs = {**generated, "advantages": gdpo_advantages(table, group_size, weights=weights).to(device)}
    if configuration.engine is not None:
        inputs["reward_advantages"] = decoupled_advantages(table, group_size).to(device)
    return inputs


def count_backward_passes(model: PeftModel) -> dict:
    """``{"passes": n}``, counting the backward passes through the final norm of `model` (a Llama in PEFT)."""
    counts = {"passes": 0}

    def hook(module, args, output):
        if output.requires_grad:
            output.register_hook(lambda grad: counts.__setitem__("passes", counts["passes"] + 1))

    model.get_base_model().model.norm.register_forward_hook(hook)
    return counts


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_step(trainer: MultiRewardGRPOTrainer, optimizer: torch.optim.Optimizer, inputs: dict, keep_gradients: bool):
    """Seconds of one optimizer step, and the gradients it applied when `keep_gradients`."""
    device = trainer.accelerator.device
    synchronize(device)
    started = time.perf_counter()
    trainer.training_step(trainer.model, inputs)
    gradients = None
    if keep_gradients:
        gradients = [p.grad.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return time.perf_counter() - started, gradients


def measure(configuration: Configuration, policy, tokenizer, prompts, rewards, generated, args) -> Measurement:
    trainer = trainer_for(configuration, policy, tokenizer, prompts, rewards, args)
    optimizer = trainer.create_optimizer()
    inputs = inputs_for(configuration, generated, rewards, args.group_size)
    counts = count_backward_passes(trainer.model)
    _, first_gradients = one_step(trainer, optimizer, inputs, keep_gradients=configuration.engine is not None)
    passes = counts["passes"]
    if configuration.engine is not None and trainer.engine.mode != configuration.engine:
        raise RuntimeError(
            f"{configuration.label()}: the trainer ran engine {trainer.engine.mode}, not {configuration.engine}."
        )
    for _ in range(args.warmup - 1):
        one_step(trainer, optimizer, inputs, keep_gradients=False)
    seconds = [one_step(trainer, optimizer, inputs, keep_gradients=False)[0] for _ in range(args.repeats)]
    del trainer, optimizer
    gc.collect()
    return Measurement(seconds, passes, first_gradients)


def largest_difference(results: dict[Configuration, Measurement], args) -> tuple[float, float]:
    """The largest ``|fused - exact|`` over every gradient entry, K and beta, and the largest ``|exact|``."""
    difference = scale = 0.0
    for beta in args.betas:
        for num_rewards in args.objectives:
            exact = results[Configuration("raco exact", num_rewards, beta)].first_gradients
            fused = results[Configuration("raco fused", num_rewards, beta)].first_gradients
            for ours, theirs in zip(fused, exact, strict=True):
                difference = max(difference, float((ours - theirs).abs().max()))
                scale = max(scale, float(theirs.abs().max()))
    return difference, scale


def markdown_table(results: dict[Configuration, Measurement], args) -> list[str]:
    lines = [
        "| configuration | beta | " + " | ".join(f"K={k}" for k in args.objectives) + " |",
        "|---|---:|" + "---:|" * len(args.objectives),
    ]
    for beta in args.betas:
        for mode in MODES:
            cells = []
            for num_rewards in args.objectives:
                result = results[Configuration(mode, num_rewards, beta)]
                baseline = results[Configuration(MODES[0], num_rewards, beta)].median
                passes = f"{result.passes} pass" + ("" if result.passes == 1 else "es")
                cells.append(f"{result.median:.3f} s, {result.median / baseline:.2f}x ({passes})")
            lines.append(f"| {mode} | {beta:g} | " + " | ".join(cells) + " |")
    return lines


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny random Llama instead of SmolLM2-135M")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4; 2 with --quick)")
    parser.add_argument("--group-size", type=int, default=4, help="completions per prompt (default 4)")
    parser.add_argument("--completion-tokens", type=int, default=None,
                        help="new tokens per completion (default 32; 8 with --quick)")
    parser.add_argument("--objectives", type=int, nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                        help="values of K (default 1 2 3)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.04],
                        help="KL coefficients (default 0, TRL's default, and 0.04)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per configuration (default 5; 3 with "
                        "--quick)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps per configuration before the timed ones (default 1, at least 1: the first "
                        "step's gradients are the ones compared)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's default; 1 with --quick)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"append the report (with its markdown table) to this file under '{SECTION}'")
    args = parser.parse_args(argv)
    args.prompts = args.prompts or (2 if args.quick else 4)
    args.completion_tokens = args.completion_tokens or (8 if args.quick else 32)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.threads = args.threads or (1 if args.quick else None)
    args.objectives = sorted(set(args.objectives))
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step's gradients are compared between the engines.")
    if args.group_size < 2:
        parser.error("--group-size must be at least 2: GRPO normalises rewards within a group.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("paretoalign").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    command = "python benchmarks/rl_step_cost.py" + "".join(f" {shlex.quote(item)}" for item in (argv or sys.argv[1:]))
    started = time.perf_counter()

    policy, tokenizer, description = lora_policy(args.quick)
    problems = arithmetic_word_problems(args.prompts, seed=0)
    prompts = datasets.Dataset.from_dict({"prompt": problems["prompt"]})
    rewards = reward_table(args.prompts * args.group_size)
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = Path(scratch)
        generated = generate_completions(policy, tokenizer, prompts, rewards, args)
        results: dict[Configuration, Measurement] = {}
        for beta in args.betas:
            for num_rewards in args.objectives:
                for mode in MODES:
                    configuration = Configuration(mode, num_rewards, beta)
                    results[configuration] = result = measure(
                        configuration, policy, tokenizer, prompts, rewards, generated, args
                    )
                    baseline = results[Configuration(MODES[0], num_rewards, beta)].median
                    print(
                        f"{configuration.label()}: {result.median:.4f} s/step (median of {args.repeats}), "
                        f"{result.median / baseline:.2f}x weighted sum, {result.passes} backward pass(es)",
                        flush=True,
                    )

    difference, scale = largest_difference(results, args)
    completions = generated["completion_ids"].shape
    report = [
        f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        machine_description(torch.get_num_threads()) + f"; device {generated['completion_ids'].device}.",
        (
            f"{description}. One step: {args.prompts} prompts x {args.group_size} completions = {completions[0]} "
            f"rows, {generated['prompt_ids'].shape[1]} prompt + {completions[1]} completion tokens, generated once "
            f"(not timed); median of {args.repeats} timed optimizer steps after {args.warmup} warm-up step(s); "
            "seconds per step, the ratio to the weighted-sum GDPO step at the same K and beta, and the backward "
            "passes through the model."
        ),
        "",
        *markdown_table(results, args),
        "",
        (
            f"First-step gradients, raco fused against raco exact: max |diff| {difference:.2e} (largest |gradient| "
            f"{scale:.2e})."
        ),
        f"Whole run: {time.perf_counter() - started:.0f} s.",
    ]
    if not args.quick or args.output is not None:
        print("\n".join(report))
    if args.output is not None:
        append_to_markdown(args.output, report + [""], SECTION)
    print(f"fused == exact: max |diff| {difference:.2e} (largest |gradient| {scale:.2e}; raco, K in "
          f"{args.objectives}, beta in {args.betas}, first step)")
    if 3 in args.objectives:
        fused = results[Configuration("raco fused", 3, args.betas[0])].median
        baseline = results[Configuration(MODES[0], 3, args.betas[0])].median
        print(f"ratio K=3: {fused / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
