"""``paretoalign rl`` with deterministic completions, launched by ``test_distributed_rl.py`` (1 or 2 processes).

TRL samples completions in each process, so one process and two processes would not see the same completions even
with the same global batch of prompts. Here TRL's ``_generate_single_turn`` (the one call that turns the prompt ids
of the local batch into completion ids) returns token ids that are a function of the prompt ids and the completion's
index within its group of ``num_generations``, so the global batch of (prompt, completion) pairs does not depend on
how many processes share it. Everything after it is TRL's and paretoalign's own code: decoding, the reward functions
below, the reward gathering across processes, the advantages, the loss and (with a per-reward weighting) the engine.

Usage: ``python distributed_rl_worker.py RUN_DIR BATCH SPEC [SPEC ...]`` (or under torchrun, see :func:`main`).
A ``+local_gram`` run forms the Gram matrix from each process's *local* per-reward gradients and averages only the
combined direction across processes (what plain DDP on top of a local weighting would do), the mistake the real
trainer avoids. A ``+poison<R>`` run makes the per-reward losses NaN on the process of rank R at the first optimizer
step: every process must skip that step together.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from paretoalign.cli import main as cli_main
from paretoalign.engine import ObjectiveGradients
from paretoalign.trainers.grpo import MultiRewardGRPOTrainer

FIRST_ORDINARY_ID = 3  # the tiny tokenizer's special tokens are ids 0, 1, 2 (pad, bos, eos)


def _digest(*parts) -> bytes:
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def fixed_completion(prompt_ids: list[int], index: int, max_length: int, vocab_size: int, eos_id: int) -> list[int]:
    """Token ids of completion ``index`` of the group for ``prompt_ids``: 1 to ``max_length`` tokens, some ending in
    EOS (so completion lengths and TRL's token counts differ between completions and between processes)."""
    digest = _digest(prompt_ids, index)
    length = 1 + digest[0] % max_length
    ids = [FIRST_ORDINARY_ID + byte % (vocab_size - FIRST_ORDINARY_ID) for byte in digest[1 : 1 + length]]
    if length < max_length and digest[-1] % 2 == 0:
        ids.append(eos_id)
    return ids


def deterministic_generate_single_turn(
    self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
):
    # TRL's RepeatSampler puts the G copies of a prompt next to each other; with a per-process batch that is a
    # multiple of G (checked here), a row's index modulo G is its index within its group in every process.
    if len(prompt_ids) % num_generations:
        raise AssertionError(f"{len(prompt_ids)} local rows are not whole groups of {num_generations}")
    for start in range(0, len(prompt_ids), num_generations):
        if any(list(ids) != list(prompt_ids[start]) for ids in prompt_ids[start : start + num_generations]):
            raise AssertionError("a group of completions does not share one prompt")
    vocab_size = len(self.processing_class)
    eos_id = self.processing_class.eos_token_id
    max_length = self.max_completion_length
    completions = [
        fixed_completion(list(ids), row % num_generations, max_length, vocab_size, eos_id)
        for row, ids in enumerate(prompt_ids)
    ]
    return completions, None


# --- rewards: deterministic functions of the completion text, different within a group -----------------------------


def characters(completions, **kwargs):
    return [len(text) / 10.0 for text in completions]


def letters(completions, **kwargs):
    return [sum(ch.isascii() and ch.isalpha() for ch in text) / max(len(text), 1) for text in completions]


def digest(completions, **kwargs):
    return [_digest(text)[0] / 255.0 for text in completions]


# --- the naive variant ----------------------------------------------------------------------------------------------

LOCAL_GRAM = False


def install_local_gram_switch() -> None:
    """While ``LOCAL_GRAM`` is set, the engine forms the Gram (and alpha) from each process's local gradients and
    only the combined direction ``sum_k alpha_k g_k`` is averaged across processes."""
    exact_step = ObjectiveGradients.step

    def step(self):
        if not LOCAL_GRAM or self.reduce_gradients is None:
            return exact_step(self)
        reduce, self.reduce_gradients = self.reduce_gradients, None
        try:
            result = exact_step(self)
        finally:
            self.reduce_gradients = reduce
        for param in self.params:
            if param.grad is not None:
                reduce(param.grad)
        return result

    ObjectiveGradients.step = step


POISONED_RANK: int | None = None


def install_poison_switch() -> None:
    """While ``POISONED_RANK`` is set, that rank's per-reward losses are NaN at the first optimizer step."""
    per_reward_losses = MultiRewardGRPOTrainer.per_reward_losses

    def poisoned(self, model, inputs):
        losses, per_token_logps = per_reward_losses(self, model, inputs)
        if POISONED_RANK == int(os.environ.get("RANK", "0")) and self.state.global_step == 0:
            losses = losses * float("nan")
        return losses, per_token_logps

    MultiRewardGRPOTrainer.per_reward_losses = poisoned


def main(argv: list[str]) -> int:
    """``RUN_DIR BATCH SPEC [SPEC ...]``: for each SPEC (``NAME``, ``NAME+local_gram`` or ``NAME+poison<R>``) run ``paretoalign rl
    --config RUN_DIR/NAME.yaml`` with per-device batch BATCH, writing ``RUN_DIR/<processes>p-SPEC``. Several runs
    share one launch (and one process group) to save start-up time."""
    global LOCAL_GRAM, POISONED_RANK
    MultiRewardGRPOTrainer._generate_single_turn = deterministic_generate_single_turn
    install_local_gram_switch()
    install_poison_switch()
    run_dir, batch_size, specs = Path(argv[0]), argv[1], argv[2:]
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    for spec in specs:
        name, _, variant = spec.partition("+")
        LOCAL_GRAM = variant == "local_gram"
        POISONED_RANK = int(variant.removeprefix("poison")) if variant.startswith("poison") else None
        code = cli_main([
            "rl", "--config", str(run_dir / f"{name}.yaml"), "--output_dir", str(run_dir / f"{processes}p-{spec}"),
            "--per_device_train_batch_size", batch_size,
        ])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
