r"""One-objective preference training: paretoalign's trainer against TRL's ``DPOTrainer``, side by side.

    python benchmarks/vs_trl.py --quick     # a tiny random Llama with SmolLM2's tokenizer, 4 pairs x 64 tokens
    python benchmarks/vs_trl.py             # SmolLM2-135M-Instruct, LoRA r=16 on q/k/v/o, 8 pairs x 256 tokens
    python benchmarks/vs_trl.py --markdown BENCHMARKS.md   # also append the report under "## Against TRL"

Both trainers get the same model (loaded once per trainer from the same weights), the same preference pairs (the
shipped ``hh-rlhf/harmless`` training slice, the first ``--pairs-pool`` after a seeded shuffle), the same batch size,
``max_length``, LoRA configuration, optimizer, learning rate and loss (``sigmoid``, beta 0.1); reference
log-probabilities are computed on the fly by both (the adapter disabled). paretoalign runs ``weighting:
weighted_sum`` with one objective and its default engine.

Throughput is *policy tokens per second*: a forward pre-hook on the model counts the non-padding tokens of every
forward pass run with gradients enabled (the policy's, not the reference's), and a callback times every optimizer
step; the first ``--warmup`` steps are left out. Each trainer tokenises the pairs its own way (TRL appends an EOS to
each response), so tokens per step differ slightly; tokens per second compares them fairly.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
import trl
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import append_to_markdown, machine_description  # noqa: E402

from paretoalign.data.files import builtin_data_path  # noqa: E402
from paretoalign.data.preferences import load_preferences  # noqa: E402
from paretoalign.models import apply_lora, load_policy, train_byte_level_tokenizer  # noqa: E402
from paretoalign.trainers.preference import (  # noqa: E402
    ParetoPreferenceConfig,
    ParetoPreferenceTrainer,
    prepare_preference_data,
)

SECTION = "## Against TRL"
DATA = "hh-rlhf/harmless/train.jsonl"
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


class StepClock(TrainerCallback):
    """Wall-clock seconds of every optimizer step."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started)


class TokenCounter:
    """Non-padding tokens of the forward passes run with gradients enabled, per optimizer step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.total = 0
        self.per_step: list[int] = []
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        if not torch.is_grad_enabled():
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.total += int(mask.sum()) if mask is not None else int(ids.numel())

    def close_step(self) -> None:
        self.per_step.append(self.total - sum(self.per_step))


class CountedSteps(TrainerCallback):
    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    def on_step_end(self, args, state, control, **kwargs):
        self.counter.close_step()


def data_tokenizer(vocab_size: int = 8000):
    """A byte-level BPE tokenizer trained in-process on the shipped pairs (no download), for architectures at random
    init whose own tokenizer is not at hand; EOS doubles as the pad token."""
    dataset, _ = load_preferences({"harmless": str(builtin_data_path(DATA))})
    texts = [row[column] for row in dataset for column in ("prompt", "response_a", "response_b")]
    end = "<|endoftext|>"
    return train_byte_level_tokenizer(texts, vocab_size, special_tokens=[end], bos_token=end, eos_token=end,
                                      pad_token=end)


def load_base(args) -> tuple[torch.nn.Module, object]:
    """The model both trainers start from: ``args.architecture`` (a transformers config) at random init (seed 0) with
    :func:`data_tokenizer`, else SmolLM2-135M-Instruct, or with ``--quick`` a tiny random Llama with its tokenizer."""
    if getattr(args, "architecture", None) is not None:
        tokenizer = data_tokenizer(min(8000, args.architecture.vocab_size))
        torch.manual_seed(0)
        return transformers.AutoModelForCausalLM.from_config(args.architecture), tokenizer
    model, tokenizer = load_policy("builtin:smollm2")
    if args.quick:
        config = transformers.LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
    return model, tokenizer


def common_arguments(args, output_dir: str) -> dict:
    """Training arguments both trainers get. TRL's configs turn gradient checkpointing and bf16 autocast on by
    default; both are set off here, as in paretoalign's defaults, so both trainers do the same computation (bf16
    autocast for both with ``args.bf16``); on the CPU unless ``args.device`` is a GPU."""
    on_gpu = getattr(args, "device", torch.device("cpu")).type == "cuda"
    return dict(
        output_dir=output_dir, per_device_train_batch_size=args.pairs, max_steps=args.steps, learning_rate=5e-5,
        lr_scheduler_type="constant", optim="adamw_torch", save_strategy="no", report_to="none", use_cpu=not on_gpu,
        seed=0, disable_tqdm=True, logging_steps=10_000, beta=0.1, max_length=args.length,
        remove_unused_columns=False, gradient_checkpointing=False, bf16=getattr(args, "bf16", False),
    )


def run_paretoalign(args, output_dir: str) -> tuple[StepClock, TokenCounter]:
    config = ParetoPreferenceConfig(
        model_name_or_path="unused", train_data={"harmless": f"builtin:{DATA}"}, weights=[1.0], weighting="weighted_sum",
        loss_type="sigmoid", max_train_pairs=args.pairs_pool, use_lora=True, lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"], lora_target_modules=LORA["target_modules"],
        **common_arguments(args, output_dir),
    )
    model, tokenizer = load_base(args)
    train_set, names = prepare_preference_data(config, config.train_data, tokenizer, None, args.pairs_pool, "train")
    model = apply_lora(model, r=LORA["r"], lora_alpha=LORA["lora_alpha"], target_modules=LORA["target_modules"])
    clock, counter = StepClock(), TokenCounter(model)
    trainer = ParetoPreferenceTrainer(
        model=model, args=config, objective_names=names, train_dataset=train_set, processing_class=tokenizer,
        callbacks=[clock, CountedSteps(counter)],
    )
    trainer.train()
    return clock, counter


def run_trl(args, output_dir: str) -> tuple[StepClock, TokenCounter]:
    from peft import LoraConfig

    dataset, _ = load_preferences({"harmless": str(builtin_data_path(DATA))})
    dataset = dataset.shuffle(seed=0).select(range(min(args.pairs_pool, len(dataset))))
    dataset = dataset.map(
        lambda row: {"prompt": row["prompt"], "chosen": row["response_a"], "rejected": row["response_b"]},
        remove_columns=dataset.column_names,
    )
    config = trl.DPOConfig(loss_type=["sigmoid"], **common_arguments(args, output_dir))
    model, tokenizer = load_base(args)
    clock = StepClock()
    trainer = trl.DPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM", bias="none", **LORA), callbacks=[clock],
    )
    counter = TokenCounter(trainer.model)
    trainer.add_callback(CountedSteps(counter))
    trainer.train()
    return clock, counter


def summarise(clock: StepClock, counter: TokenCounter, warmup: int) -> dict:
    seconds, tokens = clock.seconds[warmup:], counter.per_step[warmup:]
    return {
        "seconds_per_step": statistics.median(seconds),
        "tokens_per_step": statistics.mean(tokens),
        "tokens_per_second": sum(tokens) / sum(seconds),
        "steps": len(seconds),
    }


def compare(args) -> dict[str, dict]:
    """Run TRL's DPOTrainer, then paretoalign's trainer with one objective; their :func:`summarise` by name."""
    results = {}
    for name, run in (("TRL DPOTrainer", run_trl), ("paretoalign (K=1)", run_paretoalign)):
        results[name] = summarise(*run(args, f"{args.output_dir}/{name.split()[0].lower()}"), args.warmup)
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random Llama (SmolLM2's tokenizer)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per batch (default 8; 4 with --quick)")
    parser.add_argument("--length", type=int, default=None, help="max_length in tokens (default 256; 64 with --quick)")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per trainer (default 6)")
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing (default 1)")
    parser.add_argument("--pairs-pool", type=int, default=256, help="training pairs the batches are drawn from")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--output-dir", default="runs/bench-vs-trl", help="scratch folder for the two trainers")
    parser.add_argument("--markdown", type=Path, default=None, help=f"append the report to this file under '{SECTION}'")
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (4 if args.quick else 8)
    args.length = args.length or (64 if args.quick else 256)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/vs_trl.py" + "".join(f" {shlex.quote(item)}" for item in (argv or sys.argv[1:]))
    started = time.perf_counter()
    results = compare(args)
    model = "tiny random Llama (2 layers, hidden 64) with SmolLM2's tokenizer" if args.quick else "SmolLM2-135M-Instruct"
    ours, theirs = results["paretoalign (K=1)"], results["TRL DPOTrainer"]
    report = [
        f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        machine_description(torch.get_num_threads()) + f", trl {trl.__version__}.",
        f"{model}, LoRA r={LORA['r']} on q/k/v/o, {args.pairs} pairs per step, max_length {args.length}, sigmoid loss, "
        f"beta 0.1, float32, no gradient checkpointing; {args.steps} steps each, the first {args.warmup} left out.",
        "",
        f"    {'trainer':<20}{'s/step (median)':>17}{'tokens/step':>13}{'tokens/s':>11}",
    ]
    for name, result in results.items():
        report.append(
            f"    {name:<20}{result['seconds_per_step']:>17.2f}{result['tokens_per_step']:>13.0f}"
            f"{result['tokens_per_second']:>11.1f}"
        )
    ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
    report += ["", f"paretoalign / TRL tokens per second: {ratio:.2f}x. Whole run: {time.perf_counter() - started:.0f} s.", ""]
    print("\n".join(report))
    if args.markdown is not None:
        append_to_markdown(args.markdown, report, SECTION)
    print(f"ratio tokens/s: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
