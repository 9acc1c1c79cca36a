r"""Cost of one training step per engine mode, against the weighted-sum step.

    python benchmarks/step_cost.py --quick       # tiny random Llama, well under a minute
    python benchmarks/step_cost.py               # SmolLM2-135M-Instruct, LoRA and full fine-tuning
    python benchmarks/step_cost.py --markdown BENCHMARKS.md   # also append the report under "## Step cost"

One step is what :class:`paretoalign.trainers.preference.ParetoPreferenceTrainer` does per batch before the
optimizer: the policy forward over the 2N sequences of N pairs (``sequence_logps``; the reference
log-probabilities are given, as with ``precompute_ref_logps``), ``delta``, the K preference losses, and then

* ``weighted sum``: ``(w @ losses).backward()`` with ``w_k = 1/K``, one backward pass, no Gram matrix (its cost does
  not depend on K, so it is measured once, at the largest K);
* ``exact`` / ``autogram`` / ``fused``: :class:`paretoalign.engine.ObjectiveGradients` with the ``raco`` weighting
  and that mode, leaving ``sum_k alpha_k g_k`` in ``.grad``.

Every mode gets a freshly built model with the same weights and the same batch (random tokens, seeded; the first
quarter of each sequence is the prompt). Times are wall-clock seconds, the best of ``--repeats`` timed steps after
``--warmup`` untimed ones per mode (the warm-up runs at the first K). "peak RSS" is the process's resident-set high
water mark during the step at the largest K (reset before the step through ``/proc/self/clear_refs``), and "+step"
its growth over the resident set before the step (the gradient buffers and activations that step needed).
The last line is ``ratio K=2: X.XX``: fused RACO over weighted sum, for the first variant.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from torch import nn

from paretoalign.advantages import decoupled_advantages, gdpo_advantages
from paretoalign.engine import ObjectiveGradients
from paretoalign.losses import preference_losses
from paretoalign.models import apply_lora, load_policy, sequence_logps
from paretoalign.weighting import get_weighting

MODES = ("weighted sum", "exact", "autogram", "fused")
SECTION = "## Step cost"
BETA = 0.2


@dataclass
class Variant:
    name: str
    description: str
    build: Callable[[], nn.Module]
    vocab_size: int


def tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def smollm2() -> nn.Module:
    model, _ = load_policy("builtin:smollm2")
    return model


def with_lora(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build_with_lora() -> nn.Module:
        model = build()
        torch.manual_seed(1)
        return apply_lora(model)

    return build_with_lora


def fully_trainable(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build_trainable() -> nn.Module:
        return build().requires_grad_(True)

    return build_trainable


def variants(quick: bool) -> list[Variant]:
    if quick:
        base, name, vocab = tiny_llama, "tiny random Llama (2 layers, hidden 64, tied head)", 512
    else:
        base, name, vocab = smollm2, "SmolLM2-135M-Instruct", 49152
    return [
        Variant("lora", f"{name}, LoRA r=16 on q/k/v/o (apply_lora defaults)", with_lora(base), vocab),
        Variant("full", f"{name}, full fine-tuning", fully_trainable(base), vocab),
    ]


def make_batch(pairs: int, length: int, vocab: int, max_objectives: int):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab, (2 * pairs, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    response_mask = attention_mask.clone()
    response_mask[:, : length // 4] = 0
    reference = torch.randn(2 * pairs, generator=generator) - 2.0 * length
    labels = torch.randint(-1, 2, (pairs, max_objectives), generator=generator)
    labels[0] = 1
    return input_ids, attention_mask, response_mask, reference, labels


def resident_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def release_freed_memory() -> None:
    """Collect garbage and hand memory that malloc keeps after ``free`` back to the system (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def one_step(model: nn.Module, engine: ObjectiveGradients | None, batch, num_objectives: int) -> float:
    input_ids, attention_mask, response_mask, reference, labels = batch
    for param in model.parameters():
        param.grad = None
    started = time.perf_counter()
    logratios = sequence_logps(model, input_ids, attention_mask, response_mask) - reference
    pairs = labels.shape[0]
    delta = logratios[:pairs] - logratios[pairs:]
    losses = preference_losses(delta, labels[:, :num_objectives], BETA)
    if engine is None:
        (losses @ torch.full_like(losses, 1.0 / num_objectives)).backward()
    else:
        engine.backward(losses, pair_values=delta)
    return time.perf_counter() - started


def measure_mode(variant: Variant, mode: str, batch, objectives: list[int], args) -> dict:
    """Step times per K, and the peak RSS at the largest K; ``{"error": message}`` when the mode fails."""
    try:
        return time_mode(variant, mode, batch, objectives, args)
    except (RuntimeError, ValueError) as error:
        gc.collect()
        return {"error": f"{type(error).__name__}: {error}"}


def time_mode(variant: Variant, mode: str, batch, objectives: list[int], args) -> dict:
    model = variant.build()
    model.train()
    engine = None
    if mode != "weighted sum":
        engine = ObjectiveGradients(model, get_weighting("raco", [1.0 / objectives[0]] * objectives[0]), mode=mode)
    counts = [objectives[-1]] if engine is None else objectives
    times: dict[int, float] = {}
    for position, num_objectives in enumerate(counts):
        if engine is not None:
            engine.weighting = get_weighting("raco", [1.0 / num_objectives] * num_objectives)
        if position == 0:
            for _ in range(args.warmup):
                one_step(model, engine, batch, num_objectives)
        timed = []
        for repeat in range(args.repeats):
            measure_memory = num_objectives == objectives[-1] and repeat == 0
            if measure_memory:
                for param in model.parameters():
                    param.grad = None
                release_freed_memory()
                before = resident_kib("VmRSS")
                peak_available = reset_peak_rss()
            timed.append(one_step(model, engine, batch, num_objectives))
            if measure_memory:
                peak = resident_kib("VmHWM") if peak_available else 0
        times[num_objectives] = min(timed)
    del model, engine
    gc.collect()
    return {"times": times, "peak_mib": peak / 1024, "step_mib": (peak - before) / 1024}


def maths_milliseconds(num_objectives: int, calls: int = 200) -> float:
    """Mean milliseconds of the per-step maths outside the model: the ``raco`` weighting of a K x K Gram matrix and
    the GDPO and decoupled advantages of 64 completions (16 groups of 4) with K rewards."""
    generator = torch.Generator().manual_seed(num_objectives)
    weighting = get_weighting("raco", [1.0 / num_objectives] * num_objectives)
    factors = torch.randn(calls, num_objectives, 8, generator=generator, dtype=torch.float64)
    grams = factors @ factors.transpose(1, 2)
    rewards = torch.rand(calls, 64, num_objectives, generator=generator)
    weights = [1.0 / num_objectives] * num_objectives
    started = time.perf_counter()
    for gram, reward in zip(grams, rewards):
        weighting(gram)
        gdpo_advantages(reward, group_size=4, weights=weights)
        decoupled_advantages(reward, group_size=4)
    return 1000 * (time.perf_counter() - started) / calls


def profile_steps(variant: Variant, batch, num_objectives: int, top: int) -> list[str]:
    """The ops that take the most self CPU time in one weighted-sum step and one fused RACO step at K objectives."""
    from torch.profiler import ProfilerActivity, profile

    lines = [f"Profile, {variant.description}, K={num_objectives} (self CPU seconds of the top {top} ops):", ""]
    for mode in ("weighted sum", "fused"):
        model = variant.build()
        model.train()
        engine = None
        if mode == "fused":
            weighting = get_weighting("raco", [1.0 / num_objectives] * num_objectives)
            engine = ObjectiveGradients(model, weighting, mode="fused")
        one_step(model, engine, batch, num_objectives)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            seconds = one_step(model, engine, batch, num_objectives)
        events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
        lines.append(f"    {mode} ({seconds:.2f}s with the profiler on):")
        lines += [f"      {event.key[:58]:<60}{event.self_cpu_time_total / 1e6:8.2f}s  x{event.count}" for event in events]
        del model, engine
        gc.collect()
    return lines + [""]


def format_table(variant: Variant, results: dict[str, dict], objectives: list[int]) -> list[str]:
    baseline = results["weighted sum"]["times"][objectives[-1]]
    header = f"    {'mode':<14}" + "".join(f"{f'K={k}':>17}" for k in objectives) + f"{'peak RSS MiB (+step)':>24}"
    lines = [f"{variant.description}:", "", header]
    for mode, result in results.items():
        if "error" in result:
            lines.append(f"    {mode:<14}  fails: {result['error'][:150]}")
            continue
        cells = []
        for k in objectives:
            seconds = result["times"].get(k, result["times"][objectives[-1]])
            cells.append(f"{seconds:8.2f}s {seconds / baseline:5.2f}x")
        memory = f"{result['peak_mib']:.0f} (+{result['step_mib']:.0f})" if result["peak_mib"] else "n/a"
        lines.append(f"    {mode:<14}" + "".join(f"{cell:>17}" for cell in cells) + f"{memory:>24}")
    return lines


def machine_description(threads: int) -> str:
    model_name = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if match:
            model_name = match.group(1).strip()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPU cores ({model_name}), torch {torch.__version__} with {threads} thread(s), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}; load average at the start "
        f"(1, 5, 15 min): {load}"
    )


def append_to_markdown(path: Path, report: list[str], section: str = SECTION) -> None:
    """Append `report` at the end of `section` (a ``## `` heading) of `path`; the section is created when missing."""
    text = path.read_text() if path.exists() else ""
    block = "\n".join(report) + "\n"
    if section not in text:
        separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        path.write_text(f"{text}{separator}{section}\n\n{block}")
        return
    start = text.index(section) + len(section)
    following = text.find("\n## ", start)
    end = len(text) if following == -1 else following + 1
    section = text[:end].rstrip("\n") + "\n\n" + block
    path.write_text(section + ("\n" + text[end:] if following != -1 else ""))


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random Llama instead of SmolLM2-135M")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per batch (default 2; 8 with --quick)")
    parser.add_argument("--length", type=int, default=None, help="tokens per sequence (default 256; 64 with --quick)")
    parser.add_argument("--objectives", type=int, nargs="+", default=[1, 2, 3, 4], help="values of K (default 1 2 3 4)")
    parser.add_argument("--variants", nargs="+", choices=["lora", "full"], default=["lora", "full"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), metavar="MODE",
                        help=f"modes to time, among {list(MODES)} (weighted sum is always timed)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per K (default 2; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode before the first K (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's default; 1 with --quick, where the tiny model's "
                        "operations are too small to share)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one weighted-sum and one fused step at the largest K: the top N ops")
    parser.add_argument("--markdown", type=Path, default=None, help="append the report to this file under '## Step cost'")
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (8 if args.quick else 2)
    args.length = args.length or (64 if args.quick else 256)
    args.repeats = args.repeats or (5 if args.quick else 2)
    args.threads = args.threads or (1 if args.quick else None)
    args.objectives = sorted(set(args.objectives))
    args.modes = ["weighted sum"] + [mode for mode in MODES[1:] if mode in args.modes]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/step_cost.py" + "".join(f" {shlex.quote(item)}" for item in (argv or sys.argv[1:]))
    started = time.perf_counter()
    report = [
        f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        machine_description(torch.get_num_threads()) + ".",
        f"Batch: {args.pairs} pairs = {2 * args.pairs} sequences x {args.length} tokens; best of {args.repeats} timed "
        f"steps after {args.warmup} warm-up step(s); seconds per step and the ratio to the weighted-sum step.",
        "",
    ]
    ratio_line = None
    first_baseline = None
    for variant in [item for item in variants(args.quick) if item.name in args.variants]:
        batch = make_batch(args.pairs, args.length, variant.vocab_size, args.objectives[-1])
        results = {}
        for mode in args.modes:
            results[mode] = measure_mode(variant, mode, batch, args.objectives, args)
            progress = results[mode].get("error") or ", ".join(
                f"K={k} {seconds:.2f}s" for k, seconds in results[mode]["times"].items()
            )
            print(f"  {variant.name} {mode}: {progress}", file=sys.stderr, flush=True)
        report += format_table(variant, results, args.objectives) + [""]
        if args.profile:
            report += profile_steps(variant, batch, args.objectives[-1], args.profile)
        if ratio_line is None and "times" in results.get("fused", {}) and 2 in args.objectives:
            fused, baseline = results["fused"]["times"][2], results["weighted sum"]["times"][args.objectives[-1]]
            ratio_line = f"ratio K=2: {fused / baseline:.2f}"
        if first_baseline is None:
            first_baseline = results["weighted sum"]["times"][args.objectives[-1]]
    maths = {k: maths_milliseconds(k) for k in args.objectives}
    report.append(
        "Weighting (raco) + advantage maths (GDPO and decoupled, 64 completions) per step, and its share of the "
        "first weighted-sum step: "
        + ", ".join(f"K={k} {ms:.2f} ms ({100 * ms / 1000 / first_baseline:.3f}%)" for k, ms in maths.items())
        + "."
    )
    report.append(f"Whole run: {time.perf_counter() - started:.0f} s.")
    print("\n".join(report))
    if args.markdown is not None:
        append_to_markdown(args.markdown, report + [""])
    if ratio_line is not None:
        print(ratio_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
