r"""The GPU check: fused == exact, the cost of one step per engine, and the weighted-sum step's model FLOP utilisation.

    bash benchmarks/gpu_check.sh               # one H100, real architectures at random init (over 10 minutes)
    bash benchmarks/gpu_check.sh --cpu-smoke   # the same code on the CPU with a tiny Llama, under 2 minutes

Models: random weights (seed 0) in the architectures of ``benchmarks/model_configs/*.json`` (the published
``config.json`` of SmolLM2-135M, Qwen2.5-0.5B and Qwen2.5-1.5B); no download. Batches: random tokens, the first
quarter of each sequence the prompt (:func:`step_cost.make_batch`).

1. ``fused == exact``: one RACO step (K = 2, LoRA) with each engine on the same weights and batch, in float32 and
   bf16; printed: the largest relative error of the Gram matrix (``max |G_f - G_e| / max |G_e|``), of alpha
   (``max |a_f - a_e|``) and of the combined gradient (``||d_f - d_e|| / ||d_e||``), and ``ok`` when all three are
   within the tolerance of that dtype (:data:`TOLERANCE`).
2. The step-cost table (:func:`step_cost.time_mode` with the GPU synchronised before the clock is read): weighted
   sum, exact and fused for K = 1, 2, 4, LoRA and full fine-tuning, bf16 weights, seconds per step, the ratio to the
   weighted-sum step and the peak memory of the step at the largest K (on the GPU: ``max_memory_allocated``, with the
   host's resident-set growth in brackets; on the CPU: step_cost's resident-set columns).
3. MFU of the weighted-sum full fine-tuning step: ``6 * parameters * tokens / seconds / peak``, with ``peak`` the
   card's dense bf16 FLOP/s (989e12 for an H100 SXM; :data:`PEAK_BF16_FLOPS`).
4. Against TRL at K = 1: policy tokens per second of TRL's ``DPOTrainer`` and of paretoalign's trainer with one
   objective (``vs_trl.compare``: the same pairs, LoRA, loss and bf16 autocast), on the first architecture at random
   init with a tokenizer trained on the shipped pairs.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_cost  # noqa: E402
import vs_trl  # noqa: E402
from step_cost import Variant, fully_trainable, make_batch, with_lora  # noqa: E402

from paretoalign.engine import ObjectiveGradients  # noqa: E402
from paretoalign.weighting import get_weighting  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "model_configs"
#: Largest error allowed between the fused and the exact engine, per dtype (Gram and gradient relative, alpha
#: absolute): bf16 keeps 8 bits of mantissa, and the two engines round in different orders.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2}
#: Dense bf16 FLOP/s of the cards this check knows, by a word of ``torch.cuda.get_device_name()``.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
MODES = ("weighted sum", "exact", "fused")


def tiny_config():
    return AutoConfig.for_model(
        "llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )


def architecture(name: str):
    """The model config of ``name`` (a file in ``model_configs/`` without ``.json``, or ``tiny``)."""
    if name == "tiny":
        return tiny_config()
    settings = json.loads((CONFIGS / f"{name}.json").read_text())
    return AutoConfig.for_model(settings.pop("model_type"), **settings)


def builder(config, device: torch.device, dtype: torch.dtype):
    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").to(device)

    return build


def synchronised(device: torch.device):
    """``step_cost.one_step`` with the GPU finished before and after, so that its clock measures the whole step."""
    one_step = step_cost.one_step

    def timed_step(model, engine, batch, num_objectives):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        one_step(model, engine, batch, num_objectives)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    return timed_step


def relative(error: torch.Tensor, scale: torch.Tensor) -> float:
    return float(error) / max(float(scale), 1e-30)


def fused_equals_exact(config, device: torch.device, dtype: torch.dtype, pairs: int, length: int) -> tuple[dict, bool]:
    """Gram, alpha and combined-gradient errors of the fused engine against the exact one (K = 2, LoRA)."""
    build = with_lora(builder(config, device, dtype))
    batch = [item.to(device) for item in make_batch(pairs, length, config.vocab_size, 2)]
    results = {}
    for mode in ("exact", "fused"):
        model = build()
        model.train()
        engine = ObjectiveGradients(model, get_weighting("raco", [0.5, 0.5]), mode=mode)
        input_ids, attention_mask, response_mask, reference, labels = batch
        logratios = step_cost.sequence_logps(model, input_ids, attention_mask, response_mask) - reference
        delta = logratios[:pairs] - logratios[pairs:]
        step = engine.backward(step_cost.preference_losses(delta, labels, step_cost.BETA), pair_values=delta)
        gradient = torch.cat([p.grad.flatten().double() for p in model.parameters() if p.requires_grad])
        results[mode] = (step.gram, step.alpha, gradient)
        del model, engine
        gc.collect()
    (gram_e, alpha_e, grad_e), (gram_f, alpha_f, grad_f) = results["exact"], results["fused"]
    errors = {
        "gram": relative((gram_f - gram_e).abs().max(), gram_e.abs().max()),
        "alpha": float((alpha_f - alpha_e).abs().max()),
        "gradient": relative((grad_f - grad_e).norm(), grad_e.norm()),
    }
    return errors, all(value <= TOLERANCE[dtype] for value in errors.values())


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for word, flops in PEAK_BF16_FLOPS.items() if word in name), None)


def step_cost_table(name: str, config, device: torch.device, args) -> list[str]:
    """The step-cost table of one architecture and the MFU line of its weighted-sum full fine-tuning step."""
    build = builder(config, device, args.dtype)
    batch = [item.to(device) for item in make_batch(args.pairs, args.length, config.vocab_size, args.objectives[-1])]
    lines = []
    for variant in (Variant("lora", f"{name}, LoRA r=16 on q/k/v/o, bf16", with_lora(build), config.vocab_size),
                    Variant("full", f"{name}, full fine-tuning, bf16", fully_trainable(build), config.vocab_size)):
        results = {}
        for mode in MODES:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            results[mode] = step_cost.measure_mode(variant, mode, batch, args.objectives, args)
            if device.type == "cuda" and "times" in results[mode]:
                results[mode]["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        table = step_cost.format_table(variant, results, args.objectives)
        if device.type == "cuda":
            table = [line.replace("peak RSS MiB (+step)", "GPU peak MiB (+RSS step)") for line in table]
        lines += table + [""]
        if variant.name == "full" and "times" in results["weighted sum"]:
            seconds = results["weighted sum"]["times"][args.objectives[-1]]
            parameters = sum(p.numel() for p in build().parameters())
            tokens = 2 * args.pairs * args.length
            achieved = 6 * parameters * tokens / seconds
            peak = peak_flops(device)
            share = f"{100 * achieved / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s" if peak else "no peak known"
            lines.append(f"MFU {name} weighted sum, full fine-tuning: {parameters / 1e6:.0f}M parameters x {tokens} "
                         f"tokens in {seconds:.3f}s = {achieved / 1e12:.2f} TFLOP/s ({share})")
            lines.append("")
    return lines


def against_trl(name: str, args) -> str:
    """The line comparing TRL's DPOTrainer with paretoalign at K = 1 (:func:`vs_trl.compare`) on ``name``."""
    settings = argparse.Namespace(
        architecture=architecture(name), quick=False, device=args.device, bf16=True, pairs=args.pairs,
        length=args.length, steps=args.repeats + 2 * args.warmup + 1, warmup=args.warmup + 1, pairs_pool=64,
        output_dir=str(args.scratch / "vs-trl"),
    )
    results = vs_trl.compare(settings)
    ours, theirs = results["paretoalign (K=1)"], results["TRL DPOTrainer"]
    ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
    return (f"against TRL {name} (LoRA r={vs_trl.LORA['r']}, bf16 autocast, {args.pairs} pairs x {args.length} "
            f"tokens, K=1): paretoalign {ours['tokens_per_second']:.0f} tokens/s, TRL DPOTrainer "
            f"{theirs['tokens_per_second']:.0f} tokens/s, ratio {ratio:.2f}x")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny Llama on the CPU, small batches")
    parser.add_argument("--models", nargs="+", default=None,
                        help="architectures for the table (default smollm2-135m qwen2.5-0.5b qwen2.5-1.5b)")
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke
    args.device = torch.device("cpu" if smoke else "cuda")
    args.models = args.models or (["tiny"] if smoke else ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"])
    args.pairs, args.length = (2, 32) if smoke else (8, 1024)
    args.objectives = [1, 2, 4]
    args.repeats, args.warmup = (1, 1) if smoke else (3, 1)
    args.dtype = torch.bfloat16
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.cpu_smoke:
        torch.set_num_threads(1)
    step_cost.one_step = synchronised(args.device)
    device_name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(f"device: {device_name}; torch {torch.__version__}", flush=True)
    failed = False
    check_model = args.models[0]
    for dtype in (torch.float32, torch.bfloat16):
        pairs, length = (2, 32) if args.cpu_smoke else (4, 512)
        errors, passed = fused_equals_exact(architecture(check_model), args.device, dtype, pairs, length)
        failed = failed or not passed
        name = str(dtype).removeprefix("torch.")
        print(f"fused == exact {name} ({check_model}, LoRA, K=2): gram {errors['gram']:.2e}, alpha "
              f"{errors['alpha']:.2e}, gradient {errors['gradient']:.2e}; tolerance {TOLERANCE[dtype]:.0e}: "
              f"{'ok' if passed else 'FAIL'}", flush=True)
    print(f"step cost: {args.pairs} pairs = {2 * args.pairs} sequences x {args.length} tokens, K = {args.objectives}, "
          f"best of {args.repeats} after {args.warmup} warm-up step(s)", flush=True)
    for name in args.models:
        print("\n".join(step_cost_table(name, architecture(name), args.device, args)), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = Path(scratch)
        print(against_trl(args.models[0], args), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
