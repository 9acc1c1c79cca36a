r"""The one generation loop: completions of a policy for a list of prompts, batched, greedy or sampled.

Every command that generates (held-out scores of ``paretoalign eval`` and ``paretoalign rl``, the on-policy samples and
the held-out win rate of ``paretoalign transfer``) goes through :func:`generate_completions`:

* prompts are token ids from :func:`encode_prompts` (a message list is rendered with the tokenizer's chat template and
  its generation prompt; an HH-RLHF ``Human: ... Assistant:`` transcript optionally too; the last
  ``max_prompt_tokens`` tokens are kept);
* each ``model.generate`` call holds at most ``batch_size`` sequences (prompts x ``num_return_sequences``, and the
  completions of one prompt over several calls when ``num_return_sequences`` exceeds ``batch_size``), left padded
  with the pad token;
* decoding is greedy, or sampling at ``temperature`` with nucleus ``top_p`` (``top_k = 0``: the model's own generation
  config cannot narrow it), reproducible from ``seed`` (the global random state is left as it was);
* a completion is its generated ids up to and including the first end-of-sequence id (the tokenizer's EOS and the
  model's generation-config EOS ids), and its text is those ids decoded without special tokens.

:func:`generate_with_vllm` gives the same completions (the same prompts, sampling settings and end-of-sequence rule;
greedy decoding gives the same tokens up to numerical ties, sampling draws from the same distribution with vLLM's
own random stream) from a model folder or Hub id served by vLLM (Kwon et al. 2023, arXiv 2309.06180), with a LoRA
adapter applied per request; :func:`generation_backend` chooses between the two for ``generation_backend: auto``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from paretoalign.data.transcripts import transcript_messages
from paretoalign.data.tokenize import prompt_token_ids

__all__ = [
    "GENERATION_BACKENDS", "Completion", "encode_prompts", "end_of_sequence_ids", "generate_completions",
    "generate_with_vllm", "generation_backend", "trim_at_end_of_sequence",
]

logger = logging.getLogger(__name__)

GENERATION_BACKENDS = ("auto", "hf", "vllm")
"""``hf``: transformers' ``generate`` (:func:`generate_completions`); ``vllm``: :func:`generate_with_vllm`; ``auto``:
vLLM when it is installed and a CUDA GPU is present, else ``hf``."""


@dataclass(frozen=True)
class Completion:
    """A generated response: its text (what rewards and judges read) and its token ids (what training uses)."""

    text: str
    token_ids: list[int]


def encode_prompts(
    tokenizer,
    prompts: Sequence[str | list[dict]],
    *,
    add_special_tokens: bool,
    render_transcripts: bool = False,
    max_prompt_tokens: int | None = None,
) -> list[list[int]]:
    """Token ids of prompts.

    A message list is rendered with the chat template and the generation prompt (the template carries its own
    special tokens); with ``render_transcripts`` and a tokenizer that has a chat template, so is a string, read as an
    HH-RLHF transcript (:func:`paretoalign.data.transcripts.transcript_messages`). Other strings are tokenised as the
    preference trainer tokenises prompts with ``add_special_tokens`` (:func:`paretoalign.data.tokenize.prompt_token_ids`:
    the BOS, never doubled), or as they are without it (TRL's GRPOTrainer). ``max_prompt_tokens`` keeps the last
    tokens.
    """
    encoded = []
    for prompt in prompts:
        if isinstance(prompt, str) and render_transcripts and tokenizer.chat_template:
            prompt = transcript_messages(prompt)
        if isinstance(prompt, list):
            text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        elif add_special_tokens:
            ids = prompt_token_ids(tokenizer, [prompt])[0]
        else:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        encoded.append(ids[-max_prompt_tokens:] if max_prompt_tokens else ids)
    return encoded


def end_of_sequence_ids(model: nn.Module, tokenizer) -> set[int]:
    """The ids that end a completion: the tokenizer's EOS and every EOS id of the model's generation config."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def trim_at_end_of_sequence(generated: Sequence[int], eos_ids: set[int]) -> list[int]:
    """``generated`` up to and including its first end-of-sequence id (all of it when there is none)."""
    for position, token in enumerate(generated):
        if token in eos_ids:
            return list(generated[: position + 1])
    return list(generated)


@torch.no_grad()
def generate_completions(
    model: nn.Module,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 16,
) -> list[list[Completion]]:
    """``num_return_sequences`` completions per prompt (see the module docstring), in prompt order.

    With ``seed``, sampling draws from a random state seeded with it (the same completions on every call with the same
    arguments, on the same device); the global random state is restored afterwards. The model runs in eval mode and
    is returned to its previous mode.
    """
    if max_new_tokens < 1 or num_return_sequences < 1 or batch_size < 1:
        raise ValueError("max_new_tokens, num_return_sequences and batch_size must be at least 1.")
    if do_sample and not (temperature > 0 and 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}.")
    device = next(model.parameters()).device
    if seed is not None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return generate_completions(
                model, tokenizer, prompt_ids, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                do_sample=do_sample, temperature=temperature, top_p=top_p, batch_size=batch_size,
            )
    eos_ids = end_of_sequence_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": top_p} if do_sample else {
        "do_sample": False}
    prompts_per_call = max(1, batch_size // num_return_sequences)
    copies_per_call = min(num_return_sequences, batch_size)
    was_training = model.training
    model.eval()
    results: list[list[Completion]] = []
    try:
        for start in range(0, len(prompt_ids), prompts_per_call):
            rows = [list(ids) for ids in prompt_ids[start : start + prompts_per_call]]
            width = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for index, row in enumerate(rows):
                input_ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                attention_mask[index, width - len(row) :] = 1
            completions: list[list[Completion]] = [[] for _ in rows]
            for copies_done in range(0, num_return_sequences, copies_per_call):
                copies = min(copies_per_call, num_return_sequences - copies_done)
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=copies,
                    pad_token_id=pad_id,
                    **sampling,
                )
                generated = output[:, width:].tolist()
                for index in range(len(rows)):
                    for row in generated[index * copies : (index + 1) * copies]:
                        ids = trim_at_end_of_sequence(row, eos_ids)
                        completions[index].append(Completion(tokenizer.decode(ids, skip_special_tokens=True), ids))
            results.extend(completions)
    finally:
        model.train(was_training)
    return results


def generation_backend(choice: str) -> str:
    """The backend ``choice`` (one of :data:`GENERATION_BACKENDS`) names: ``auto`` resolves to ``vllm`` when the vllm
    package is installed and a CUDA GPU is present, else ``hf``.

    Raises:
        ValueError: an unknown choice, or ``vllm`` without the vllm package or without a CUDA GPU.
    """
    if choice not in GENERATION_BACKENDS:
        raise ValueError(f"generation_backend must be one of {list(GENERATION_BACKENDS)}, got {choice!r}.")
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if choice == "auto":
        return "vllm" if available else "hf"
    if choice == "vllm" and not available:
        missing = "the vllm package (pip install vllm)" if importlib.util.find_spec("vllm") is None else "a CUDA GPU"
        raise ValueError(f"generation_backend: vllm needs {missing}; use generation_backend: hf.")
    return choice


def generate_with_vllm(
    model: str | os.PathLike,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    adapters: Sequence[str | os.PathLike | None] = (None,),
    revision: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> list[list[list[Completion]]]:
    """``num_return_sequences`` completions per prompt from a model served by vLLM, once per entry of ``adapters``
    (``None``: the model itself; a folder: that LoRA adapter on it), all from one engine.

    The prompts are the token ids :func:`encode_prompts` gives; decoding is greedy (temperature 0) or samples at
    ``temperature`` with nucleus ``top_p`` (``top_k`` off), seeded with ``seed``; a completion ends at the first
    end-of-sequence id as in :func:`generate_completions` and its text is decoded without special tokens.

    Returns:
        For each entry of ``adapters``, the completions per prompt in prompt order.

    Raises:
        ImportError: vllm is not installed.
    """
    import vllm
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    if max_new_tokens < 1 or num_return_sequences < 1:
        raise ValueError("max_new_tokens and num_return_sequences must be at least 1.")
    with_adapters = [adapter for adapter in adapters if adapter is not None]
    engine = vllm.LLM(
        model=os.fspath(model), revision=revision, dtype=dtype, seed=seed or 0, trust_remote_code=trust_remote_code,
        enable_lora=bool(with_adapters),
        **({"max_lora_rank": max(_adapter_rank(adapter) for adapter in with_adapters)} if with_adapters else {}),
    )
    sampling = vllm.SamplingParams(
        n=num_return_sequences, max_tokens=max_new_tokens, temperature=temperature if do_sample else 0.0,
        top_p=top_p if do_sample else 1.0, top_k=-1, seed=seed, skip_special_tokens=True,
    )
    eos_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    requests = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
    results = []
    for number, adapter in enumerate(adapters, start=1):
        lora = None if adapter is None else LoRARequest(f"adapter-{number}", number, os.fspath(adapter))
        outputs = engine.generate(requests, sampling, lora_request=lora, use_tqdm=False)
        completions = []
        for output in outputs:
            rows = []
            for sample in output.outputs:
                ids = trim_at_end_of_sequence(list(sample.token_ids), eos_ids)
                rows.append(Completion(tokenizer.decode(ids, skip_special_tokens=True), ids))
            completions.append(rows)
        results.append(completions)
    logger.info("vLLM generated %d x %d completions for %d policies from %s.", len(requests), num_return_sequences,
                len(adapters), model)
    return results


def _adapter_rank(adapter: str | os.PathLike) -> int:
    """The LoRA rank ``r`` an adapter folder's ``adapter_config.json`` records (vLLM sizes its LoRA slots by it)."""
    return int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
