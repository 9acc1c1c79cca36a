r"""ParetoPreferenceTrainer: RACO and its baselines on pairwise preference data for K objectives.

One training step, top to bottom:

1. one forward pass of the policy over the 2N sequences of N pairs (``y_a`` rows, then ``y_b`` rows) gives
   sequence log-probabilities; the reference's come from the same weights with the LoRA adapter disabled, a
   frozen copy, or a precomputed column;
2. ``delta_i = (log pi(y_a) - log pi_ref(y_a)) - (log pi(y_b) - log pi_ref(y_b))``;
3. the K losses ``L_k`` of :func:`paretoalign.losses.preference_losses` from ``delta`` and the label matrix ``S``;
4. :class:`paretoalign.engine.ObjectiveGradients` forms the Gram matrix of the K gradients over the trainable
   parameters, the weighting (``raco`` by default) turns it into ``alpha``, and ``sum_k alpha_k g_k`` lands in
   ``.grad``; Hugging Face's Trainer then clips, steps the optimizer and the schedule, logs and checkpoints.

Gradient accumulation (``gram_scope``): with ``engine="exact"`` or ``engine="fused"`` the per-objective gradients of
the micro-batches are summed (each scaled by 1 / accumulation steps) and the Gram matrix and ``alpha`` are formed
once, on the accumulated batch (``gram_scope="step"``, the default), so accumulating micro-batches gives the same
update as one large batch: the weighting solves its problem once, on the gradient the optimizer actually uses.
``gram_scope="micro_batch"`` is the RACO authors' rule (``training_step`` of PeterLauLukChen/RACO's
``dpo_trainer.py``): each micro-batch forms its own Gram matrix and ``alpha`` and adds its combined gradient times
1 / accumulation steps to ``.grad``; the optimizer steps on the sum. Its update then depends on how the batch is
split into micro-batches (``sum_m alpha^(m) g^(m)`` instead of ``alpha sum_m g^(m)``), and the logged ``alpha`` is
the mean over the window's micro-batches. Across processes each micro-batch's per-objective gradients are still
all-reduced before its Gram matrix is formed.

``engine="autogram"`` needs the whole batch in one forward pass. ``engine="fused"`` receives ``delta`` with the
losses and forms the K per-objective gradients from one backward pass (:mod:`paretoalign.fused`); the default
``engine="auto"`` takes it unless gradient checkpointing is on or the first micro-batch shows that its layer hooks do
not apply to the model (then ``exact``), and logs the choice once. Across processes, per-objective gradients are
all-reduced before the Gram matrix is formed.

Paper options (``docs/faithfulness.md``): ``tie_handling="include"`` takes the authors' per-objective mean over all
pairs (:func:`paretoalign.losses.preference_losses`); ``length_normalized`` scores policy and reference by their
per-token average log-probabilities for any loss (the authors' ``raco_length_normalized``); ``weighting="amopo"``
trains the AMoPO baseline (:class:`paretoalign.weighting.AMoPOWeighting`): reference-free, length-normalised margins
``delta_i = log pi(y_a) / |y_a| - log pi(y_b) / |y_b|`` (no reference forward pass, no reference copy) and AMoPO's
adaptive ``alpha`` from Gaussian draws over the policy's token probabilities, summed over the accumulation window and
all processes before each update.

A step whose loss or gradient is not finite is skipped (no parameter changes), logged with its step number and
objectives, and the run stops after ``max_consecutive_skipped_steps`` such steps in a row
(:class:`paretoalign.trainers.base.ObjectiveTrainerMixin`).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel
from torch import nn
from transformers import Trainer, TrainingArguments

from paretoalign.config import LoraArguments, ModelArguments, field_help
from paretoalign.data.preferences import load_preferences
from paretoalign.data.sampler import ObjectiveBalancedSampler
from paretoalign.data.tokenize import PreferenceCollator, has_reference_logps, tokenize_preferences
from paretoalign.engine import ENGINE_MODES, EngineStep, ObjectiveGradients, SkipGuard, mean_across_processes
from paretoalign.fused import FusedEngineNotApplicable
from paretoalign.generation import GENERATION_BACKENDS
from paretoalign.losses import LOSS_TYPES, TIE_HANDLINGS, preference_losses, preference_metrics
from paretoalign.models import (
    check_sequence_shapes,
    frozen_reference,
    masked_sequence_sum,
    reference_logps,
    token_logps,
)
from paretoalign.rewards.specs import parse_reward_spec, reward_label
from paretoalign.trainers.base import ObjectiveTrainerMixin, refuse_sharded_gradients
from paretoalign.weighting import (
    WEIGHTINGS,
    amopo_objective_scores,
    amopo_sequence_draws,
    get_weighting,
    validate_weights,
    weights_for,
)

__all__ = ["GRAM_SCOPES", "ParetoPreferenceConfig", "ParetoPreferenceTrainer", "prepare_preference_data"]

logger = logging.getLogger(__name__)

#: Where the Gram matrix and alpha are formed: once per optimizer step, or once per micro-batch (the RACO authors').
GRAM_SCOPES = ("step", "micro_batch")


@dataclass
class ParetoPreferenceConfig(ModelArguments, LoraArguments, TrainingArguments):
    """Configuration of :class:`ParetoPreferenceTrainer` and of ``paretoalign train`` / ``eval`` / ``sweep``
    (transformers' ``TrainingArguments`` plus these fields, :class:`paretoalign.config.ModelArguments` and
    :class:`paretoalign.config.LoraArguments`)."""

    train_data: dict | str | None = field(
        default=None,
        metadata=field_help(
            "Training pairs: one file of multi-labelled pairs, or (in YAML) a mapping objective -> file of "
            "prompt/chosen/rejected rows (builtin:NAME for shipped data). On the command line a mapping is written "
            "name=path,name=path. A mapping {dataset: ORG/NAME or a local clone, name, split, revision} in place of "
            "a file reads a Hugging Face dataset.",
            path="data",
        ),
    )
    eval_data: dict | str | None = field(
        default=None, metadata=field_help("Held-out pairs, same shapes as train_data (optional).", path="data")
    )
    objectives: list[str] | None = field(
        default=None,
        metadata=field_help("Objective names in order (default: the order of train_data). Unknown names are errors."),
    )
    weights: list[float] | None = field(
        default=None, metadata=field_help("User weights, one per objective, on the simplex (default: equal weights).")
    )
    normalize_weights: bool = field(
        default=False, metadata=field_help("Divide the weights by their sum instead of rejecting weights off the simplex.")
    )
    weighting: str = field(
        default="raco", metadata=field_help(f"How per-objective gradients are combined: one of {sorted(WEIGHTINGS)}.")
    )
    cagrad_c: float = field(
        default=0.4, metadata=field_help("CAGrad / RACO conflict-correction radius c (>= 0; the paper uses 0.4).")
    )
    clip: bool = field(default=True, metadata=field_help("RACO only: clip the CAGrad mixing weights by the user weights."))
    clip_target: str = field(
        default="mixing_weights",
        metadata=field_help("RACO only: 'mixing_weights' (the paper's clip) or 'gradient_norm' (clip each weighted gradient)."),
    )
    clip_threshold: float | None = field(
        default=None, metadata=field_help("RACO with clip_target=gradient_norm: the norm each weighted gradient is clipped to.")
    )
    beta: float = field(default=0.2, metadata=field_help("KL-regularisation strength of the DPO-style losses."))
    loss_type: str = field(default="sigmoid", metadata=field_help(f"Per-objective preference loss: one of {list(LOSS_TYPES)}."))
    length_normalized: bool | None = field(
        default=None,
        metadata=field_help(
            "Score policy and reference sequences by their per-token average log-probability instead of the sum, for "
            "any loss_type (the RACO authors' raco_length_normalized). Unset: true for ipo (as TRL) and amopo, false "
            "otherwise."
        ),
    )
    tie_handling: str = field(
        default="exclude",
        metadata=field_help(
            f"Pairs unlabelled for an objective (label 0), one of {list(TIE_HANDLINGS)}: 'exclude' averages each "
            "objective's loss over its labelled pairs; 'include' (the RACO authors' code) over all pairs of the "
            "micro-batch, an unlabelled pair adding the loss of a zero margin (log 2 for sigmoid) and no gradient."
        ),
    )
    gram_scope: str = field(
        default="step",
        metadata=field_help(
            f"Where the Gram matrix and alpha are formed, one of {list(GRAM_SCOPES)}: 'step' once per optimizer step "
            "on the accumulated gradients (the update does not depend on how the batch is split); 'micro_batch' per "
            "micro-batch, each combined gradient / gradient_accumulation_steps added to .grad (the RACO authors' code)."
        ),
    )
    amopo_adaptive: bool = field(
        default=True,
        metadata=field_help(
            "weighting=amopo only: AMoPO's adaptive alpha (Gaussian draws over the policy's token probabilities, "
            "softmax tilted by the weights); false: alpha = the weights (the RACO authors' static AMoPO baseline)."
        ),
    )
    max_length: int = field(default=256, metadata=field_help("Maximum tokens of prompt + response per sequence."))
    max_prompt_length: int | None = field(
        default=None, metadata=field_help("Prompt tokens kept when a pair is too long (default max_length // 2).")
    )
    overflow: str = field(
        default="truncate", metadata=field_help("Pairs longer than max_length: 'truncate' (counted) or 'error'.")
    )
    engine: str = field(
        default="auto",
        metadata=field_help(
            f"How the per-objective gradients are formed: one of {list(ENGINE_MODES)}, or 'auto' (fused where its "
            "layer hooks apply, exact otherwise; the choice is logged)."
        ),
    )
    objective_proportions: list[float] | None = field(
        default=None,
        metadata=field_help("Share of each objective's pairs in a batch when every pair has one label (default equal)."),
    )
    max_train_pairs: int | None = field(
        default=None, metadata=field_help("Use only the first N training pairs after shuffling with the seed.")
    )
    max_eval_pairs: int | None = field(default=None, metadata=field_help("Use only the first N held-out pairs."))
    eval_prompts: dict | str | None = field(
        default=None,
        metadata=field_help(
            "`paretoalign eval` generation scores: held-out prompts, builtin:NAME, a .txt file (one a line) or a "
            "JSONL/JSON/Parquet file with a 'prompt' column (other columns go to the reward functions), or a Hugging "
            "Face dataset {dataset: ORG/NAME or a local clone, name, split, revision}. Default: the distinct prompts "
            "of eval_data's pairs.",
            path="path",
        ),
    )
    max_eval_prompts: int = field(default=16, metadata=field_help("Generation scores: use only the first N prompts."))
    eval_rewards: list[str] | None = field(
        default=None,
        metadata=field_help(
            "Generation scores: reward functions applied to completions of the trained and the reference "
            "policy, with the rl config's syntax: in YAML {name: length, target: 40} or {function: 'module:callable', "
            "...}, optional label; on the command line 'length:target=40'. Unset (and no eval_judge): no generation.",
            path="reward_spec",
        ),
    )
    eval_judge: dict | str | None = field(
        default=None,
        metadata=field_help(
            "Generation scores: one reward spec that compares the trained policy's completion with the reference "
            "policy's on each prompt: win rate = wins + ties / 2 over the prompts both got a score on.",
            path="reward_spec",
        ),
    )
    eval_max_new_tokens: int = field(default=64, metadata=field_help("Generation scores: tokens generated per completion."))
    eval_do_sample: bool = field(
        default=False,
        metadata=field_help(
            "Generation scores: sample completions (at eval_temperature, nucleus eval_top_p, seeded with seed) instead "
            "of greedy decoding; the RACO paper samples at temperature 0.6."
        ),
    )
    eval_temperature: float = field(default=0.6, metadata=field_help("Generation scores: sampling temperature."))
    eval_top_p: float = field(default=1.0, metadata=field_help("Generation scores: nucleus sampling's top_p."))
    eval_samples_per_prompt: int = field(
        default=1, metadata=field_help("Generation scores: completions sampled per prompt (each one scored).")
    )
    generation_backend: str = field(
        default="auto",
        metadata=field_help(
            "Generation scores: 'hf' (transformers' generate), 'vllm' (vLLM, needs the vllm package and a CUDA GPU) "
            "or 'auto' (vllm when both are there, else hf)."
        ),
    )
    precompute_ref_logps: bool = field(
        default=False, metadata=field_help("Compute reference log-probabilities once per dataset before training.")
    )
    reference_cache_dir: str | None = field(
        default=None,
        metadata=field_help(
            "Keep the reference policy's log-probabilities of the held-out pairs (and, with precompute_ref_logps, of "
            "the training pairs) in this folder, keyed by the model and the pairs' tokens, so runs that share them "
            "compute them once; a sweep uses <output_dir>/reference-logps.",
            path="path",
        ),
    )
    output_dir: str | None = field(
        default="runs/train", metadata=field_help("Where the model, config.yaml, metrics.json, logs and checkpoints go.")
    )
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata=field_help("Where to report logs ('tensorboard', 'none', ...).")
    )
    logging_steps: float = field(default=1, metadata=field_help("Log every N optimizer steps."))
    remove_unused_columns: bool = field(
        default=False, metadata=field_help("Keep the tokenised pair columns (the collator needs all of them).")
    )
    max_consecutive_skipped_steps: int = field(
        default=10, metadata=field_help("Stop after this many consecutive steps skipped for a non-finite loss or gradient.")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._validate()

    def _validate(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}.")
        if self.tie_handling not in TIE_HANDLINGS:
            raise ValueError(f"tie_handling must be one of {list(TIE_HANDLINGS)}, got {self.tie_handling!r}.")
        if self.gram_scope not in GRAM_SCOPES:
            raise ValueError(f"gram_scope must be one of {list(GRAM_SCOPES)}, got {self.gram_scope!r}.")
        if self.weighting == "amopo":
            self._validate_amopo()
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
        SkipGuard(self.max_consecutive_skipped_steps)
        if isinstance(self.train_data, str) and "=" in self.train_data:
            self.train_data = _parse_mapping(self.train_data, "train_data")
        if isinstance(self.eval_data, str) and "=" in self.eval_data:
            self.eval_data = _parse_mapping(self.eval_data, "eval_data")
        if self.weights is not None:
            self.weights = validate_weights(self.weights, normalize=self.normalize_weights).tolist()
        if self.objective_proportions is not None:
            self.objective_proportions = validate_weights(self.objective_proportions).tolist()
        self._validate_generation()

    def _validate_amopo(self) -> None:
        """AMoPO's loss is the sigmoid loss on reference-free, length-normalised margins."""
        if self.loss_type != "sigmoid":
            raise ValueError(f"weighting=amopo uses the sigmoid loss (AMoPO's Eq. 9); got loss_type={self.loss_type!r}.")
        if self.length_normalized is False:
            raise ValueError("weighting=amopo uses length-normalised margins; leave length_normalized unset or true.")
        if self.precompute_ref_logps:
            raise ValueError("weighting=amopo is reference-free: there are no reference log-probabilities to "
                             "precompute; set precompute_ref_logps to false.")

    def generation_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`paretoalign.generation.generate_completions` that ``paretoalign eval``'s
        generation fields give (``eval_max_new_tokens``, ``eval_do_sample`` ... ``eval_samples_per_prompt``,
        ``seed``, ``per_device_eval_batch_size``)."""
        options = {"max_new_tokens": self.eval_max_new_tokens, "batch_size": self.per_device_eval_batch_size}
        if self.eval_do_sample:
            options.update(
                do_sample=True, temperature=self.eval_temperature, top_p=self.eval_top_p,
                num_return_sequences=self.eval_samples_per_prompt, seed=self.seed,
            )
        return options

    @property
    def decoding(self) -> str:
        """How ``paretoalign eval`` decodes, in words: ``greedy`` or ``sampled (temperature 0.6, top_p 1, 4 per
        prompt, seed 0)``."""
        if not self.eval_do_sample:
            return "greedy"
        return (f"sampled (temperature {self.eval_temperature:g}, top_p {self.eval_top_p:g}, "
                f"{self.eval_samples_per_prompt} per prompt, seed {self.seed})")

    def _validate_generation(self) -> None:
        """The generation-score fields of ``paretoalign eval``: reward specs checked (not built), names distinct."""
        for name in ("max_eval_prompts", "eval_max_new_tokens", "eval_samples_per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.generation_backend not in GENERATION_BACKENDS:
            raise ValueError(
                f"generation_backend must be one of {list(GENERATION_BACKENDS)}, got {self.generation_backend!r}."
            )
        if self.eval_samples_per_prompt > 1 and not self.eval_do_sample:
            raise ValueError("eval_samples_per_prompt > 1 draws several completions per prompt: set eval_do_sample.")
        if self.eval_do_sample and not (
            math.isfinite(self.eval_temperature) and self.eval_temperature > 0 and 0 < self.eval_top_p <= 1
        ):
            raise ValueError(
                f"sampling needs eval_temperature > 0 and 0 < eval_top_p <= 1, got {self.eval_temperature} and "
                f"{self.eval_top_p}."
            )
        if self.eval_rewards is None and self.eval_judge is None:
            return
        if self.eval_rewards is not None:
            specs = self.eval_rewards if isinstance(self.eval_rewards, list) else [self.eval_rewards]
            if not specs:
                raise ValueError("eval_rewards is empty: list at least one reward spec, or leave it out.")
            self.eval_rewards = [parse_reward_spec(spec, f"eval_rewards[{index}]") for index, spec in enumerate(specs)]
            labels = [reward_label(spec) for spec in self.eval_rewards]
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            if duplicates:
                raise ValueError(f"eval_rewards share the name(s) {duplicates}; give each a distinct 'label'.")
        if self.eval_judge is not None:
            self.eval_judge = parse_reward_spec(self.eval_judge, "eval_judge")

    @property
    def average_logps(self) -> bool:
        """Whether sequences are scored by their per-token average log-probability instead of the sum:
        ``length_normalized`` when set, else True for IPO (as TRL) and AMoPO, False otherwise."""
        if self.length_normalized is not None:
            return self.length_normalized
        return self.loss_type == "ipo" or self.weighting == "amopo"

    @property
    def reference_free(self) -> bool:
        """Whether the margins leave the reference policy out (AMoPO): ``delta_i = log pi(y_a) - log pi(y_b)``."""
        return self.weighting == "amopo"

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
        if self.weighting == "amopo":
            return {"adaptive": self.amopo_adaptive}
        return {}

    def resolved_weights(self, objective_names: list[str]) -> list[float]:
        """The user weights for these objectives (:func:`paretoalign.weighting.weights_for`)."""
        return weights_for(self.weights, objective_names)


def _parse_mapping(text: str, name: str) -> dict[str, str]:
    mapping = {}
    for item in text.split(","):
        key, separator, value = item.partition("=")
        if not separator or not key.strip() or not value.strip():
            raise ValueError(f"{name} must be a path or name=path,name=path; could not read {item!r}.")
        mapping[key.strip()] = value.strip()
    return mapping


class ParetoPreferenceTrainer(ObjectiveTrainerMixin, Trainer):
    """Multi-objective preference optimisation with a Gram-matrix weighting (RACO by default).

    Args:
        model: the policy (a ``PeftModel`` when training a LoRA adapter).
        args: a :class:`ParetoPreferenceConfig`.
        objective_names: the K objective names, in label-matrix column order.
        train_dataset / eval_dataset: tokenised pairs from :func:`paretoalign.data.tokenize.tokenize_preferences`.
        processing_class: the tokenizer (its pad token id pads batches).
        ref_model: a frozen reference policy; omitted with LoRA (the adapter is disabled instead) and built as a
            frozen copy of ``model`` otherwise (not with ``weighting="amopo"``, which needs no reference, nor when
            the training pairs carry ``reference_logps_a`` / ``reference_logps_b``).
    """

    def __init__(
        self,
        model: nn.Module,
        args: ParetoPreferenceConfig,
        objective_names: list[str],
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        ref_model: nn.Module | None = None,
        callbacks=None,
    ) -> None:
        if processing_class is None:
            raise ValueError("ParetoPreferenceTrainer needs the tokenizer (processing_class) to pad batches.")
        self.objective_names = list(objective_names)
        self.user_weights = args.resolved_weights(self.objective_names)
        collator = PreferenceCollator(pad_token_id=processing_class.pad_token_id)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        fsdp_version = self.accelerator.state.fsdp_plugin.fsdp_version if self.is_fsdp_enabled else None
        refuse_sharded_gradients(
            self.accelerator.distributed_type, "per-objective gradients",
            "use FSDP2 (fsdp_config: {version: 2}) or DDP (accelerate launch --multi_gpu).", fsdp_version,
        )
        if fsdp_version == 2 and args.engine not in ("auto", "exact"):
            raise ValueError(
                f"engine={args.engine} does not work on FSDP2's sharded parameters; use engine=exact (or auto)."
            )
        if ref_model is None and not isinstance(model, PeftModel) and not args.reference_free \
                and not has_reference_logps(train_dataset):
            ref_model = frozen_reference(model)
        self.ref_model = ref_model.to(self.args.device) if ref_model is not None else None
        self.weighting = get_weighting(args.weighting, self.user_weights, **args.weighting_params())
        self.engine: ObjectiveGradients | None = None
        self._engine_unconfirmed = False
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._micro_batch_steps: list[EngineStep] = []
        self._amopo_totals: tuple[torch.Tensor, torch.Tensor] | None = None
        self._amopo_generator = torch.Generator().manual_seed(args.seed + self.accelerator.process_index)
        self.skip_guard = SkipGuard(args.max_consecutive_skipped_steps)
        logger.info(
            "objectives %s, weights %s, weighting %s, engine %s",
            self.objective_names,
            self.user_weights,
            self.weighting,
            args.engine,
        )

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return ObjectiveBalancedSampler(
            dataset["labels"],
            batch_size=self.args.per_device_train_batch_size,
            proportions=self.args.objective_proportions,
            seed=self.args.seed,
        )

    def objective_losses(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        on_token_logps: Callable[[torch.Tensor, dict[str, torch.Tensor]], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The K objective losses of a batch and its log-ratio differences ``delta`` [N]; ``on_token_logps`` is
        called with the policy's per-token log-probabilities (:func:`paretoalign.models.token_logps`, detached)."""
        average = self.args.average_logps
        sequences = (inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"])
        check_sequence_shapes(*sequences)
        tokens = token_logps(model, inputs["input_ids"], inputs["attention_mask"])
        if on_token_logps is not None:
            on_token_logps(tokens.detach(), inputs)
        policy = masked_sequence_sum(tokens, inputs["response_mask"], average)
        if self.args.reference_free:
            reference = torch.zeros_like(policy)
        elif "reference_logps" in inputs:
            reference = inputs["reference_logps"].to(policy.dtype)
        else:
            unwrapped = self.accelerator.unwrap_model(model)
            reference = reference_logps(unwrapped, self.ref_model, *sequences, average=average)
        num_pairs = inputs["labels"].shape[0]
        logratios = policy - reference
        delta = logratios[:num_pairs] - logratios[num_pairs:]
        losses = preference_losses(delta, inputs["labels"], self.args.beta, self.args.loss_type, self.args.tie_handling)
        return losses, delta

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The user-weighted sum ``sum_k w_k L_k`` (for evaluation loops; training uses :meth:`training_step`)."""
        losses, delta = self.objective_losses(model, inputs)
        loss = losses @ torch.tensor(self.user_weights, dtype=losses.dtype, device=losses.device)
        return (loss, {"delta": delta}) if return_outputs else loss

    def _engine_mode(self) -> str:
        """The configured engine, with ``auto`` resolved: ``fused`` unless gradient checkpointing is on."""
        if self.args.engine != "auto":
            return self.args.engine
        if self.is_fsdp_enabled:
            logger.info("engine auto: exact (the only engine that takes FSDP2's sharded gradients)")
            return "exact"
        if self.args.gradient_checkpointing:
            logger.info("engine auto: exact (gradient checkpointing repeats layer calls the fused hooks rely on)")
            return "exact"
        return "fused"

    def _build_engine(self, model: nn.Module) -> ObjectiveGradients:
        mode = self._engine_mode()
        if mode == "autogram" and self.accelerator.num_processes > 1:
            raise ValueError(
                "engine=autogram forms the Gram matrix of this process's gradients only; across processes the Gram "
                "of the global gradient has cross terms it cannot see. Use engine=exact with several processes."
            )
        target = model if mode in ("autogram", "fused") else [p for p in model.parameters() if p.requires_grad]
        reduce = None if self.is_fsdp_enabled else mean_across_processes(self.accelerator.num_processes)
        try:
            engine = ObjectiveGradients(target, self.weighting, mode=mode, reduce_gradients=reduce)
        except FusedEngineNotApplicable as error:
            if self.args.engine != "auto":
                raise
            logger.info("engine auto: exact (the fused engine does not apply: %s)", error)
            trainable = [p for p in model.parameters() if p.requires_grad]
            return ObjectiveGradients(trainable, self.weighting, mode="exact", reduce_gradients=reduce)
        if self.args.engine == "auto":
            self._engine_unconfirmed = True
        return engine

    def _confirm_auto_engine(self, error: FusedEngineNotApplicable | None) -> None:
        """Log the automatic choice once, after the first fused micro-batch went through or failed on the model."""
        self._engine_unconfirmed = False
        if error is None:
            logger.info("engine auto: fused (one backward pass gives the per-objective gradients)")
            return
        logger.info("engine auto: exact (the fused engine does not apply to this model: %s)", error)
        self.engine.use_exact()

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        if self.engine is None:
            self.engine = self._build_engine(model)
        accumulation_steps = self.current_gradient_accumulation_steps
        if self._engine_unconfirmed:
            try:
                losses = self._objective_step(model, inputs, accumulation_steps)
                self._confirm_auto_engine(None)
            except FusedEngineNotApplicable as error:
                self._confirm_auto_engine(error)
                losses = self._objective_step(model, inputs, accumulation_steps)
        else:
            losses = self._objective_step(model, inputs, accumulation_steps)
        weights = torch.tensor(self.user_weights, dtype=losses.dtype, device=losses.device)
        scalarised = (losses.detach() @ weights) / accumulation_steps
        return torch.nan_to_num(scalarised, nan=0.0, posinf=0.0, neginf=0.0)

    def _objective_step(self, model: nn.Module, inputs: dict[str, Any], accumulation_steps: int) -> torch.Tensor:
        """Forward one micro-batch, accumulate its per-objective gradients, update at the end of the window (or, with
        ``gram_scope="micro_batch"``, after every micro-batch)."""
        with self.accelerator.no_sync(model):
            recording = self._record_amopo_scores if self.args.weighting == "amopo" and self.args.amopo_adaptive else None
            losses, delta = self.objective_losses(model, inputs, on_token_logps=recording)
        finite = bool(torch.isfinite(losses).all())
        self._record_batch(losses, delta, inputs["labels"])
        if not finite:
            bad = [name for name, value in zip(self.objective_names, losses.tolist()) if not math.isfinite(value)]
            self.note_fault(f"non-finite loss for objective(s) {bad}")
        if self.engine.mode in ("exact", "fused"):
            per_micro_batch = self.args.gram_scope == "micro_batch"
            if finite:
                scale = 1.0 if per_micro_batch else 1.0 / accumulation_steps
                self.engine.accumulate(losses, scale=scale, pair_values=delta)
            if per_micro_batch:
                self._micro_batch_update(accumulation_steps)
            if not self.accelerator.sync_gradients:
                return losses
            if per_micro_batch:
                step = self._window_of_micro_batches()
            elif self.window_may_step():
                self._hand_over_amopo_scores()
                step = self.engine.step()
            else:
                step = None
        elif finite:
            self._hand_over_amopo_scores()
            step = self.engine.backward(losses)
        else:
            step = None
        if step is not None and not step.finite:
            self.note_fault("non-finite gradient")
        self._amopo_totals = None
        self.end_window(model, step, self._metrics)
        return losses

    def _hand_over_amopo_scores(self) -> None:
        """Before a combined update: adaptive AMoPO gets the scores of the micro-batches since the last update
        (:meth:`_amopo_scores`; collective with several processes); any other weighting: nothing."""
        if self.args.weighting == "amopo" and self.args.amopo_adaptive:
            self.weighting.set_scores(self._amopo_scores())

    def _micro_batch_update(self, accumulation_steps: int) -> None:
        """``gram_scope="micro_batch"``: this micro-batch's Gram matrix, alpha, and its combined gradient times
        1 / ``accumulation_steps`` added to ``.grad``; after a fault in the window (on any process) nothing more is
        added. Collective: every process calls it for every micro-batch."""
        if not self.window_may_step():
            self.engine.discard()
            self._amopo_totals = None
            return
        self._hand_over_amopo_scores()
        step = self.engine.step(scale=1.0 / accumulation_steps)
        if step.finite:
            self._micro_batch_steps.append(step)
        else:
            self.note_fault("non-finite gradient")

    def _window_of_micro_batches(self) -> EngineStep | None:
        """What the window's per-micro-batch updates used, for the logs: the mean Gram matrix and the mean alpha."""
        steps, self._micro_batch_steps = self._micro_batch_steps, []
        if not steps:
            return None
        gram = torch.stack([step.gram for step in steps]).mean(dim=0)
        return EngineStep(gram=gram, alpha=torch.stack([step.alpha for step in steps]).mean(dim=0), finite=True)

    def _record_amopo_scores(self, tokens: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:
        """Adaptive AMoPO: add this micro-batch's score sums and counts, from the policy's per-token log-probabilities
        (:func:`paretoalign.weighting.amopo_sequence_draws`, :func:`paretoalign.weighting.amopo_objective_scores`),
        to the window's."""
        draws = amopo_sequence_draws(tokens.exp(), inputs["response_mask"][:, 1:], self._amopo_generator)
        sums, counts = amopo_objective_scores(draws, inputs["labels"])
        if self._amopo_totals is not None:
            sums, counts = sums + self._amopo_totals[0], counts + self._amopo_totals[1]
        self._amopo_totals = (sums, counts)

    def _amopo_scores(self) -> torch.Tensor:
        """AMoPO's ``a_k``: the score sums over the counts of the window (of this micro-batch with
        ``gram_scope="micro_batch"``), summed over the processes; NaN for an objective without a labelled pair."""
        sums, counts = self._amopo_totals
        self._amopo_totals = None
        if self.accelerator.num_processes > 1:
            sums, counts = self.accelerator.reduce(torch.stack([sums, counts]), reduction="sum")
        return torch.where(counts > 0, sums / counts.clamp_min(1.0), float("nan"))

    def _save_rng_state(self, output_dir: str) -> None:
        """Hugging Face's RNG states, plus this process's AMoPO draw generator, so a resumed AMoPO run draws the
        same noise as an uninterrupted one (``amopo_generator_<process>.pth``)."""
        super()._save_rng_state(output_dir)
        torch.save(self._amopo_generator.get_state(), self._amopo_generator_file(output_dir))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        saved = None if checkpoint is None else self._amopo_generator_file(checkpoint)
        if saved is not None and os.path.isfile(saved):
            self._amopo_generator.set_state(torch.load(saved, weights_only=True))

    def _amopo_generator_file(self, checkpoint: str) -> str:
        return os.path.join(checkpoint, f"amopo_generator_{self.accelerator.process_index}.pth")

    def _record_batch(self, losses: torch.Tensor, delta: torch.Tensor, labels: torch.Tensor) -> None:
        metrics = preference_metrics(delta, labels, self.args.beta)
        for k, name in enumerate(self.objective_names):
            if int(metrics.count[k]) > 0:
                self._metrics[f"loss/{name}"].append(float(losses[k].detach()))
                self._metrics[f"accuracy/{name}"].append(float(metrics.accuracy[k]))
                self._metrics[f"margin/{name}"].append(float(metrics.margin[k]))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averages of the per-objective metrics since the last log to Hugging Face's logs."""
        prefix = "eval_" if any(key.startswith("eval_") for key in logs) else ""
        if not prefix:
            for key, values in self._metrics.items():
                if values:
                    logs[key] = sum(values) / len(values)
            self._metrics.clear()
        super().log(logs, start_time)


def prepare_preference_data(config: ParetoPreferenceConfig, source, tokenizer, objectives, limit, split: str):
    """Load, validate, subsample (seeded) and tokenise one split; returns (tokenised dataset, objective names)."""
    dataset, names = load_preferences(source, objectives=objectives, tokenizer=tokenizer)
    if limit is not None and limit < len(dataset):
        dataset = dataset.shuffle(seed=config.seed).select(range(limit))
    tokenised, report = tokenize_preferences(
        dataset,
        tokenizer,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        on_overflow=config.overflow,
    )
    logger.info("%s split: %s", split, report.summary())
    return tokenised, names

