r"""The commands end to end on the GPU: ``train``, ``sweep`` and ``rl`` as a user runs them, on CUDA in bf16.

    bash benchmarks/gpu_check.sh --commands               # one H100, about 2.5 minutes with the install
    bash benchmarks/gpu_check.sh --commands --cpu-smoke   # the same commands on the CPU with a tiny Llama

Model: the SmolLM2-135M architecture (``model_configs/smollm2-135m.json``) at random init (seed 0) with a byte-level
tokenizer trained on the shipped harmless-concise pairs and a ChatML template, saved with ``save_pretrained`` into
the output folder and loaded by path, as a Hub model is after its download. Runs, each a subprocess of the CLI:

1. ``train``: ``examples/front_harmless_concise.yaml`` (LoRA, RACO 0.5 / 0.5, all 300 test pairs evaluated before
   and after) for 10 steps with the fused engine;
2. ``sweep``: the same config, 4 steps, weightings weighted_sum and raco at two weight vectors (the four runs share
   one table of reference log-probabilities);
3. ``rl``: ``examples/rl_arithmetic.yaml`` for 4 steps with per-reward RACO gradients (fused engine), generation
   on the GPU, 8 held-out prompts scored before and after.

Printed per command: its exit status, seconds and the last lines of its output (the whole output is in
``<output>/<command>.log``); the exit status is the number of commands that failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

from paretoalign.data.files import builtin_data_path
from paretoalign.models import CHATML_TEMPLATE, train_byte_level_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from paretoalign.cli import main; sys.exit(main())"]
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}


def save_random_model(directory: Path, tiny: bool) -> None:
    """The SmolLM2-135M architecture (or ``TINY`` dimensions) at random init with a tokenizer trained on the shipped
    pairs, saved into ``directory``."""
    rows = [json.loads(line) for line in builtin_data_path("hh-rlhf/harmless-concise/train.jsonl").open()]
    texts = [value for row in rows for value in row.values() if isinstance(value, str)]
    tokenizer = train_byte_level_tokenizer(texts, 8000, chat_template=CHATML_TEMPLATE)
    settings = json.loads((ROOT / "benchmarks" / "model_configs" / "smollm2-135m.json").read_text())
    settings.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **(TINY if tiny else {}))
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def run_command(name: str, arguments: list[str], output: Path) -> int:
    """Run ``paretoalign <arguments>`` with its output in ``output/<name>.log``; print status, time and last lines."""
    started = time.perf_counter()
    log_path = output / f"{name}.log"
    with log_path.open("w") as log:
        status = subprocess.call([*CLI, *arguments], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    tail = log_path.read_text().splitlines()[-4:]
    print(f"{name}: exit {status} in {time.perf_counter() - started:.0f}s", *tail, sep="\n  ", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny Llama on the CPU")
    parser.add_argument("--output", default="runs/gpu_commands", help="folder for the model, configs, runs and logs")
    args = parser.parse_args(argv)
    output = (ROOT / args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    cuda = not args.cpu_smoke
    if cuda and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu-smoke on a machine without a GPU")
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; torch {torch.__version__}", flush=True)
    model = output / "model"
    save_random_model(model, tiny=not cuda)
    device = {"use_cpu": not cuda, "bf16": cuda}
    flags = [f"--{name}={str(value).lower()}" for name, value in device.items()]

    preference = yaml.safe_load((ROOT / "examples" / "front_harmless_concise.yaml").read_text())
    preference.update(model_name_or_path=str(model), report_to="none", **device)
    configs = {}
    for name, steps in (("train", 10), ("sweep", 4)):
        configs[name] = output / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump({**preference, "max_steps": steps, "output_dir": str(output / name)}))
    failures = 0
    failures += run_command("train", ["train", "--config", str(configs["train"]), "--engine", "fused"], output) != 0
    failures += run_command("sweep", ["sweep", "--config", str(configs["sweep"]), "--weights", "0.2,0.8;0.8,0.2",
                                      "--weightings", "weighted_sum,raco"], output) != 0
    failures += run_command("rl", ["rl", "--config", "examples/rl_arithmetic.yaml", "--model_name_or_path", str(model),
                                   *flags, "--max_steps", "4", "--num_eval_prompts", "8", "--weighting", "raco",
                                   "--engine", "fused", "--output_dir", str(output / "rl")], output) != 0
    print(f"{3 - failures} of 3 commands ran", flush=True)
    return failures


if __name__ == "__main__":
    sys.exit(main())
