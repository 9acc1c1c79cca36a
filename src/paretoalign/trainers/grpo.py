r"""MultiRewardGRPOTrainer: online RL with K reward functions (GRPO, GDPO, conflict-averse per-reward gradients).

The trainer subclasses ``trl.GRPOTrainer``: sampling G completions per prompt, calling the reward functions,
the reference model, the clipped policy-gradient loss, logging and accelerate all come from TRL. Only two parts
change.

**Rewards and advantages.** The reward functions give a matrix ``R`` [N, K] (N = prompts x G completions in
contiguous groups; ``None`` becomes NaN, "not scored"). Conditional rewards (GDPO's, Liu et al. 2026,
"GDPO: Group reward-Decoupled Normalization Policy Optimization", arXiv 2601.05242) are applied first:
``R_ij <- R_ij if R_ic >= t else 0`` for each ``{reward: j, condition: c, threshold: t}``, always reading the
unconditioned condition reward. Then, with ``multi_objective_aggregation`` (TRL's field) and w = ``reward_weights``:

* ``sum_then_normalize`` (GRPO): ``A_i = (r_i - mean_g r) / (std_g r + eps)``, ``r_i = sum_k w_k R_ik``;
* ``normalize_then_sum`` (GDPO): ``A_ik = (R_ik - mean_g R_k) / (std_g R_k + eps)``, ``s_i = sum_k w_k A_ik``,
  ``A_i = (s_i - mean s) / (std s + eps)`` over the batch;

exactly TRL's maths (:mod:`paretoalign.advantages` reproduces it bit for bit).

**Loss.** ``weighting: weighted_sum`` (the default) trains on TRL's own loss with the aggregated advantage ``A_i``:
plain GRPO / GDPO. Any other weighting (``raco``, ``cagrad``, ``mgda``, ``pcgrad``, ``upgrad``) builds one
policy-gradient loss per reward from the decoupled advantages ``A_ik`` (:func:`paretoalign.advantages.
decoupled_advantages`): ``L_k`` is TRL's per-token loss (same importance ratio, clipping, KL term and ``loss_type``
normalisation) with the advantage column k in place of ``A_i``. Their gradients ``g_k`` are accumulated over
the micro-batches of an optimizer step, averaged across processes, and :class:`paretoalign.engine.
ObjectiveGradients` forms the Gram matrix ``G_kl = <g_k, g_l>``, asks the weighting for ``alpha`` (user weights w on
the simplex) and writes ``d = sum_k alpha_k g_k`` into ``.grad``. Every ``L_k`` reaches the model only through the
per-token log-probabilities ``logp_nt`` of the shared forward, ``g_k = sum_nt (dL_k/dlogp_nt) grad logp_nt``, so
``engine: fused`` forms the K gradients from one backward pass of the log-probabilities (two with TRL's KL term;
:mod:`paretoalign.fused`); ``engine: exact`` runs K backward passes. ``engine: auto`` (the default) takes ``fused``
unless gradient checkpointing (TRL's default), an entropy bonus or a router auxiliary loss is on, or the first
micro-batch shows that the layer hooks do not apply to the model; the choice is logged once with its reason. The K losses are
TRL's ``_compute_loss`` called K times on one shared forward pass (:meth:`MultiRewardGRPOTrainer.per_reward_losses`
overrides ``_get_per_token_logps_and_entropies`` to reuse the first call's log-probabilities), so no part of TRL's
loss is copied. With one reward, ``scale_rewards="group"`` and a weighting that gives ``alpha = 1`` (``mgda``,
``pcgrad``, ``upgrad``, or ``raco`` / ``cagrad`` with ``c = 0``), the update is exactly GRPO's; ``raco`` and
``cagrad`` with ``c > 0`` give ``alpha = 1 + c`` for a single objective, GRPO's direction scaled by ``1 + c``.

**Unscored rewards.** A reward function may return ``None`` for completions it cannot judge (sparse multi-task
rewards: each reward scores only its task's prompts). As in TRL, a generation batch in which a reward scored nothing
trains: that reward contributes nothing (its NaN column drops out of the weighted sums; with a per-reward weighting
its advantages, and so its policy-gradient term, are zero). ``skip_unscored_reward_batches: true`` skips such a
batch's optimizer step instead.

**Faults.** A reward function that raises, or returns anything but one number or ``None`` per completion, stops
training with a :class:`RewardFunctionError` naming it. A generation batch in which a reward function returned
an infinite value (or, with ``skip_unscored_reward_batches``, scored none of the completions), and a non-finite loss
or gradient skip the optimizer step (no parameter changes; logged with the step number and the reward), and
``max_consecutive_skipped_steps`` skipped steps in a row stop the run with
:class:`paretoalign.engine.NonFiniteTrainingError` (:class:`paretoalign.trainers.base.ObjectiveTrainerMixin`).

**Logs** (through TRL's ``_metrics``, averaged per logging step): TRL's per-reward ``rewards/<name>/mean|std``,
completion lengths, KL and entropy; ``advantages/mean|std|abs_max`` (per reward, ``advantages/<name>/...``, with a
conflict-averse weighting); the collapse metrics ``advantages/distinct_per_group`` (distinct advantage values, or
advantage vectors, per group of G completions, averaged over groups) and ``advantages/distinct_in_batch`` (distinct
values in the whole batch: GRPO gives groups whose reward vectors differ in kind the same advantages, GDPO keeps
them apart), ``rewards/distinct_per_group`` (distinct reward vectors per group, the upper bound), and
``collapse/<aggregation>/distinct_per_group|distinct_in_batch`` for both aggregations on the same rewards; with a
conflict-averse weighting ``alpha/<name>``, ``grad_norm/<name>`` and ``cosine/<name>__<name>``; ``skipped_steps``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import torch
from torch import nn
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import get_callable_name, is_async_callable

from paretoalign.advantages import (
    RewardCondition,
    apply_conditions,
    decoupled_advantages,
    distinct_per_group,
    gdpo_advantages,
    grpo_advantages,
)
from paretoalign.config import LoraArguments, ModelArguments, field_help, text_value
from paretoalign.engine import ObjectiveGradients, SkipGuard, mean_across_processes
from paretoalign.fused import FusedEngineNotApplicable
from paretoalign.rewards.specs import checked_reward_function, parse_key_values, parse_reward_specs, reward_label
from paretoalign.trainers.base import ObjectiveTrainerMixin, refuse_sharded_gradients
from paretoalign.weighting import WEIGHTINGS, get_weighting, weights_for

__all__ = ["AGGREGATIONS", "RL_ENGINES", "MultiRewardGRPOConfig", "MultiRewardGRPOTrainer", "resolve_conditions"]

logger = logging.getLogger(__name__)

AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
"""Values of TRL's ``multi_objective_aggregation``: GRPO and GDPO."""

RL_ENGINES = ("auto", "exact", "fused")
"""Values of ``engine``: how the per-reward gradients are formed (:mod:`paretoalign.engine`)."""


ROUTER_AUX_LOSS = "the router auxiliary loss reads the router logits, not only the per-token log-probabilities"


def bf16_gpu_available(use_cpu: bool) -> bool:
    """Whether training will run on a CUDA GPU that supports bf16 (``use_cpu`` forces the CPU)."""
    return not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class MultiRewardGRPOConfig(ModelArguments, LoraArguments, GRPOConfig):
    """Configuration of :class:`MultiRewardGRPOTrainer` and of ``paretoalign rl`` (TRL's ``GRPOConfig`` plus these,
    :class:`paretoalign.config.ModelArguments` and :class:`paretoalign.config.LoraArguments`).

    TRL's fields keep their meaning: ``num_generations`` (G), ``reward_weights`` (w), ``multi_objective_aggregation``
    (``sum_then_normalize`` = GRPO, ``normalize_then_sum`` = GDPO), ``beta`` (KL coefficient), ``epsilon``
    (clipping), ``loss_type``, ``scale_rewards``, ``max_completion_length``, ``temperature``.
    """

    prompts: str | dict = field(
        default="builtin:arithmetic",
        metadata=field_help(
            "Prompts: 'builtin:arithmetic' (generated word problems), builtin:NAME (shipped data), a .txt file (one a "
            "line), a JSONL / JSON / Parquet file with a 'prompt' column or a Hugging Face dataset {dataset: ORG/NAME "
            "or a local clone, name, split, revision} (paretoalign.data.prompts.load_prompts).",
            path="path",
        ),
    )
    num_problems: int = field(
        default=256,
        metadata=field_help("Training prompts: generated problems for builtin:arithmetic, at most this many from a file."),
    )
    num_eval_prompts: int = field(
        default=16, metadata=field_help("Held-out prompts scored before and after training (0 skips the evaluation).")
    )
    eval_do_sample: bool = field(
        default=False,
        metadata=field_help("Held-out evaluation: sample at the training temperature instead of greedy decoding."),
    )
    rewards: list[str] | None = field(
        default=None,
        metadata=field_help(
            "Reward functions, in order. In YAML a list of mappings: {name: answer} or {name: length, target: 40} "
            "(built by paretoalign.rewards.builtin.get_reward), or {function: 'module:callable', ...keyword "
            "arguments}. On "
            "the command line: answer format 'length:target=40,unit=words'.",
            path="reward_spec",
        ),
    )
    conditional_rewards: list[str] | None = field(
        default=None,
        metadata=field_help(
            "GDPO conditional rewards: reward j counts only where reward c >= t. In YAML a list of mappings "
            "{reward: j, condition: c, threshold: t} (names or 0-based indices); on the command line "
            "'reward=conciseness,condition=answer,threshold=1'."
        ),
    )
    weighting: str = field(
        default="weighted_sum",
        metadata=field_help(
            f"'weighted_sum': TRL's GRPO / GDPO loss on the aggregated advantage. Any other of {sorted(WEIGHTINGS)}: "
            "one policy-gradient loss per reward, combined by that Gram-matrix weighting (reward_weights on the "
            "simplex)."
        ),
    )
    weighting_params: dict | str | None = field(
        default=None,
        metadata=field_help("Parameters of the weighting, e.g. {c: 0.4, clip: true} for raco (command line 'c=0.4')."),
    )
    engine: str = field(
        default="auto",
        metadata=field_help(
            "How a per-reward weighting forms the K gradients: 'fused' (one backward pass of the per-token "
            "log-probabilities, two with a KL term), 'exact' (K backward passes) or 'auto' (fused unless gradient "
            "checkpointing, an entropy bonus or a router auxiliary loss is on, or the model defeats its layer hooks)."
        ),
    )
    skip_unscored_reward_batches: bool = field(
        default=False,
        metadata=field_help(
            "Skip the optimizer step of a generation batch in which a reward scored no completion (all None). Off: "
            "train on it, that reward contributing nothing (TRL's behaviour; sparse multi-task rewards)."
        ),
    )
    max_consecutive_skipped_steps: int = field(
        default=10,
        metadata=field_help("Stop after this many consecutive steps skipped for a non-finite reward or gradient."),
    )
    output_dir: str | None = field(
        default="runs/rl", metadata=field_help("Where the model, config.yaml, metrics.json, logs and checkpoints go.")
    )
    logging_steps: float = field(default=1, metadata=field_help("Log every N optimizer steps."))
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata=field_help("Where to report logs ('tensorboard', 'none', ...).")
    )
    bf16: bool | None = field(
        default=None,
        metadata=field_help(
            "bf16 mixed precision. Unset: on for a CUDA GPU that supports bf16, off on CPU (TRL turns it on "
            "everywhere; on CPU it only adds rounding)."
        ),
    )

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = not self.fp16 and bf16_gpu_available(self.use_cpu)
        super().__post_init__()
        self._validate()

    @property
    def per_reward_gradients(self) -> bool:
        """Whether the K rewards get one loss each, combined by a Gram-matrix weighting."""
        return self.weighting != "weighted_sum"

    def _validate(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}.")
        if self.weighting == "amopo":
            raise ValueError(
                "weighting=amopo is a preference-training baseline (its alpha needs the token probabilities of "
                "preference pairs); choose another weighting for RL."
            )
        if self.multi_objective_aggregation not in AGGREGATIONS:
            raise ValueError(
                f"multi_objective_aggregation must be one of {list(AGGREGATIONS)}, "
                f"got {self.multi_objective_aggregation!r}."
            )
        SkipGuard(self.max_consecutive_skipped_steps)
        if self.engine not in RL_ENGINES:
            raise ValueError(f"engine must be one of {list(RL_ENGINES)}, got {self.engine!r}.")
        if self.engine == "fused" and self.per_reward_gradients:
            obstacle = self.fused_engine_obstacle()
            if obstacle is not None:
                raise ValueError(f"engine=fused: {obstacle}; turn it off or use engine=exact.")
        if self.num_problems < 1:
            raise ValueError(f"num_problems must be at least 1, got {self.num_problems}.")
        if self.num_eval_prompts < 0:
            raise ValueError(f"num_eval_prompts must be >= 0, got {self.num_eval_prompts}.")
        if self.rewards is not None:
            self.rewards = parse_reward_specs(text_value(self.rewards, "rewards"), "rewards")
            if not self.rewards:
                raise ValueError("rewards is empty: name at least one reward function.")
        if self.conditional_rewards is not None:
            self.conditional_rewards = [
                _condition_spec(item, index) for index, item in enumerate(self.conditional_rewards)
            ]
        if isinstance(self.weighting_params, str):
            self.weighting_params = parse_key_values(self.weighting_params, "weighting_params")
        if self.weighting_params is not None and not isinstance(self.weighting_params, dict):
            raise ValueError(f"weighting_params must be a mapping, got {type(self.weighting_params).__name__}.")
        names = None if self.rewards is None else [reward_label(spec) for spec in self.rewards]
        if self.reward_weights is not None:
            unnamed = [f"reward {index}" for index in range(len(self.reward_weights))]
            self.reward_weights = self.validated_reward_weights(names or unnamed)
        if self.per_reward_gradients:
            if self.use_adaptive_entropy:
                raise ValueError(
                    "use_adaptive_entropy updates its controller once per loss evaluation; with a per-reward weighting "
                    "the loss is evaluated once per reward, so use a fixed entropy_coef or weighting=weighted_sum."
                )
            if names is not None:
                self.build_weighting(names)

    def fused_engine_obstacle(self) -> str | None:
        """Why a setting keeps the fused engine from forming the per-reward gradients (None: nothing does)."""
        if self.gradient_checkpointing:
            return "gradient checkpointing (TRL's default) repeats the layer calls that the fused hooks rely on"
        if self.entropy_coef != 0.0 or self.use_adaptive_entropy:
            return "the entropy bonus (entropy_coef) reads the logits, not only the per-token log-probabilities"
        return None

    def validated_reward_weights(self, names: Sequence[str]) -> list[float]:
        """``reward_weights`` for the rewards ``names`` (:func:`paretoalign.weighting.weights_for`): any finite values
        for ``weighted_sum`` (TRL's semantics, 1 each by default), on the simplex for the conflict-averse weightings
        (equal weights ``1 / K`` by default)."""
        return weights_for(self.reward_weights, names, "reward_weights", simplex=self.per_reward_gradients)

    def build_weighting(self, names: Sequence[str]):
        """The Gram-matrix weighting for the rewards ``names`` (errors name the weighting and its parameters)."""
        weights = self.validated_reward_weights(names)
        try:
            return get_weighting(self.weighting, weights, **(self.weighting_params or {}))
        except ValueError as error:
            raise ValueError(
                f"weighting_params {self.weighting_params} for weighting {self.weighting!r}: {error}"
            ) from error


def _condition_spec(item: Any, index: int) -> dict[str, Any]:
    """One entry of ``conditional_rewards`` as ``{reward, condition, threshold}``."""
    where = f"conditional_rewards[{index}]"
    spec = parse_key_values(item, where) if isinstance(item, str) else item
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping {{reward, condition, threshold}}, got {type(item).__name__}.")
    expected = {"reward", "condition", "threshold"}
    if set(spec) != expected:
        raise ValueError(f"{where}: expected exactly the keys {sorted(expected)}, got {sorted(spec)}.")
    threshold = spec["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold):
        raise ValueError(f"{where}: threshold must be a number, got {threshold!r}.")
    return {"reward": spec["reward"], "condition": spec["condition"], "threshold": float(threshold)}


def _reward_index(value: Any, names: Sequence[str], where: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"{where}: unknown reward {value!r}; the rewards are {list(names)}.")
        return names.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    raise ValueError(f"{where}: expected a reward name or an index in [0, {len(names)}), got {value!r}.")


def resolve_conditions(specs: Sequence[dict] | None, reward_names: Sequence[str]) -> list[RewardCondition]:
    """``conditional_rewards`` specs with reward names replaced by column indices."""
    conditions = []
    for index, spec in enumerate(specs or []):
        where = f"conditional_rewards[{index}]"
        reward = _reward_index(spec["reward"], reward_names, f"{where}.reward")
        condition = _reward_index(spec["condition"], reward_names, f"{where}.condition")
        if reward == condition:
            raise ValueError(f"{where}: reward {reward_names[reward]!r} cannot be its own condition.")
        conditions.append(RewardCondition(reward, condition, spec["threshold"]))
    return conditions


def _is_plain_callable(function: Any) -> bool:
    return callable(function) and not isinstance(function, (str, nn.Module)) and not is_async_callable(function)


class MultiRewardGRPOTrainer(ObjectiveTrainerMixin, GRPOTrainer):
    """TRL's GRPOTrainer with GDPO conditional rewards, collapse metrics, fault handling and per-reward gradients.

    Args:
        model: the policy (a ``PeftModel`` when training a LoRA adapter; TRL then uses the adapter-free base or a
            frozen copy of the adapter as reference).
        reward_funcs: K reward functions ``(prompts, completions, **kwargs) -> list[float | None]`` (TRL's protocol;
            reward models and async functions are passed to TRL unchanged).
        args: a :class:`MultiRewardGRPOConfig`.
        train_dataset / eval_dataset / processing_class / callbacks: as for ``trl.GRPOTrainer``.
    """

    _policy_forward_cache: list | None = None

    def __init__(
        self,
        model: nn.Module | str,
        reward_funcs: Callable | Sequence[Callable],
        args: MultiRewardGRPOConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        callbacks=None,
        **kwargs,
    ) -> None:
        if not isinstance(args, MultiRewardGRPOConfig):
            raise ValueError(f"args must be a MultiRewardGRPOConfig, got {type(args).__name__}.")
        functions = list(reward_funcs) if isinstance(reward_funcs, Sequence) else [reward_funcs]
        if not functions:
            raise ValueError("reward_funcs is empty: give at least one reward function.")
        functions = [checked_reward_function(f) if _is_plain_callable(f) else f for f in functions]
        args.reward_weights = args.validated_reward_weights([get_callable_name(f) for f in functions])
        super().__init__(
            model=model,
            reward_funcs=functions,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self.reward_names = self.objective_names = list(self.reward_func_names)
        self.conditions = resolve_conditions(args.conditional_rewards, self.reward_names)
        self.per_reward_gradients = args.per_reward_gradients
        self.weighting = args.build_weighting(self.reward_names) if self.per_reward_gradients else None
        if self.per_reward_gradients:
            refuse_sharded_gradients(
                self.accelerator.distributed_type, "per-reward gradients", "use DDP or weighting=weighted_sum."
            )
        self.engine: ObjectiveGradients | None = None
        self._engine_unconfirmed = False
        self._scored_rewards: torch.Tensor | None = None
        self._generation_fault: str | None = None
        self.skip_guard = SkipGuard(args.max_consecutive_skipped_steps)
        if self.per_reward_gradients and args.engine == "fused" and self.aux_loss_enabled:
            raise ValueError(f"engine=fused: {ROUTER_AUX_LOSS}; set router_aux_loss_coef: 0 or use engine=exact.")
        logger.info(
            "rewards %s, weights %s, aggregation %s, weighting %s, engine %s, conditions %s",
            self.reward_names,
            args.reward_weights,
            args.multi_objective_aggregation,
            self.weighting if self.weighting is not None else "weighted_sum (TRL's loss)",
            args.engine if self.per_reward_gradients else "none",
            self.conditions,
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's reward matrix (gathered across processes, None -> NaN) with the conditional rewards applied."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.conditions:
            rewards = apply_conditions(rewards, self.conditions)
        self._scored_rewards = rewards
        return rewards

    def aggregated_advantages(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        """The ``[N]`` advantages TRL forms from ``rewards`` (GRPO or GDPO, :mod:`paretoalign.advantages`)."""
        weights = self.reward_weights.to(rewards.device)
        if self.multi_objective_aggregation == "normalize_then_sum":
            return gdpo_advantages(rewards, group_size, weights=weights)
        return grpo_advantages(rewards, group_size, weights=weights, scale=self.scale_rewards)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards = self._scored_rewards
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        local_count = output["advantages"].shape[0]
        local = slice(self.accelerator.process_index * local_count, (self.accelerator.process_index + 1) * local_count)
        if self.per_reward_gradients:
            advantages = decoupled_advantages(rewards, group_size)
            output["reward_advantages"] = advantages[local]
        else:
            advantages = self.aggregated_advantages(rewards, group_size)
        self._record_advantages(advantages, rewards, group_size, mode)
        if mode == "train":
            self._generation_fault = self.reward_fault(rewards)
        return output

    def reward_fault(self, rewards: torch.Tensor) -> str | None:
        """Why a generation batch cannot train: a reward that is infinite somewhere, or (with
        ``skip_unscored_reward_batches``) one that scored no completion."""
        problems = []
        for k, name in enumerate(self.reward_names):
            column = rewards[:, k]
            if torch.isinf(column).any():
                problems.append(f"reward {name!r} returned an infinite value")
            elif self.args.skip_unscored_reward_batches and torch.isnan(column).all():
                problems.append(f"reward {name!r} scored none of the {len(column)} completions (all None or NaN)")
        return "; ".join(problems) or None

    def _record_advantages(self, advantages: torch.Tensor, rewards: torch.Tensor, group_size: int, mode: str) -> None:
        metrics = self._metrics[mode]
        columns = [("", advantages)] if advantages.dim() == 1 else [
            (f"{name}/", advantages[:, k]) for k, name in enumerate(self.reward_names)
        ]
        for prefix, column in columns:
            values = column.detach().double()
            metrics[f"advantages/{prefix}mean"].append(float(values.mean()))
            metrics[f"advantages/{prefix}std"].append(float(values.std()) if values.numel() > 1 else 0.0)
            metrics[f"advantages/{prefix}abs_max"].append(float(values.abs().max()))
        metrics["advantages/distinct_per_group"].append(distinct_per_group(advantages, group_size))
        metrics["advantages/distinct_in_batch"].append(distinct_per_group(advantages, len(advantages)))
        metrics["rewards/distinct_per_group"].append(distinct_per_group(rewards, group_size))
        weights = self.reward_weights.to(rewards.device)
        for aggregation, aggregated in (
            ("sum_then_normalize", grpo_advantages(rewards, group_size, weights=weights, scale=self.scale_rewards)),
            ("normalize_then_sum", gdpo_advantages(rewards, group_size, weights=weights)),
        ):
            metrics[f"collapse/{aggregation}/distinct_per_group"].append(distinct_per_group(aggregated, group_size))
            metrics[f"collapse/{aggregation}/distinct_in_batch"].append(distinct_per_group(aggregated, len(aggregated)))

    @contextmanager
    def _shared_policy_forward(self) -> Iterator[list]:
        """Within this block every policy forward pass returns the first one's log-probabilities (and graph); yields
        the list that holds that forward's output."""
        self._policy_forward_cache = []
        try:
            yield self._policy_forward_cache
        finally:
            self._policy_forward_cache = None

    def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
        cache = self._policy_forward_cache
        if cache is None:
            return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        if not cache:
            cache.append(super()._get_per_token_logps_and_entropies(model, *args, **kwargs))
        return cache[0]

    def per_reward_losses(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[L_1, ..., L_K]``: TRL's loss with advantage column k of ``inputs["reward_advantages"]``, and the
        per-token log-probabilities ``[B, T]`` of the completions, through which alone the losses see the model
        (unless an entropy bonus or a router auxiliary loss is on).

        One forward pass is shared by the K losses. TRL's per-loss metrics (KL, entropy, clip ratios) are recorded
        once, averaged over the K losses (KL and entropy do not depend on the advantages).
        """
        reward_advantages = inputs["reward_advantages"]
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        recorded = {key: len(values) for key, values in metrics.items()}
        with self._shared_policy_forward() as forward:
            losses = [
                self._compute_loss(model, {**inputs, "advantages": reward_advantages[:, k]})
                for k in range(reward_advantages.shape[1])
            ]
            per_token_logps = forward[0][0]
        for key, values in metrics.items():
            added = values[recorded.get(key, 0):]
            if len(added) > 1:
                del values[recorded.get(key, 0):]
                values.append(sum(added) / len(added))
        return torch.stack(losses), per_token_logps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss; with a per-reward weighting, ``sum_k w_k L_k`` (evaluation only: training combines the K
        gradients in :meth:`training_step`)."""
        if not self.per_reward_gradients or "reward_advantages" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("MultiRewardGRPOTrainer does not return outputs from compute_loss.")
        losses, _ = self.per_reward_losses(model, inputs)
        return losses @ self.reward_weights.to(device=losses.device, dtype=losses.dtype)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.per_reward_gradients:
            loss = super().training_step(model, inputs, num_items_in_batch)
            fault = self._generation_fault or (None if torch.isfinite(loss).all() else "non-finite loss")
            self.note_fault(fault)
            if self.accelerator.sync_gradients:
                if not self._gradients_finite(model):
                    self.note_fault("non-finite gradient")
                self.window_may_step()
                self.end_window(model, None, self._metrics["train"])
            return torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)

        # GRPOTrainer.training_step's bookkeeping (micro-step counter, step time) around our own backward.
        started = time.perf_counter()
        model.train()
        inputs = self._prepare_inputs(inputs)
        if self.engine is None:
            self.engine = self._build_engine(model)
        with self.accelerator.no_sync(model), self.compute_loss_context_manager():
            try:
                losses, per_token_logps = self.per_reward_losses(model, inputs)
            except FusedEngineNotApplicable as error:
                if not self._engine_unconfirmed:
                    raise
                self._confirm_auto_engine(error)
                losses, per_token_logps = self.per_reward_losses(model, inputs)
        fault = self._generation_fault
        if fault is None and not torch.isfinite(losses).all():
            bad = [name for name, value in zip(self.reward_names, losses.tolist()) if not math.isfinite(value)]
            fault = f"non-finite loss for reward(s) {bad}"
        self.note_fault(fault)
        if fault is None:
            self._accumulate(losses, per_token_logps)
        if self.accelerator.sync_gradients:
            step = self.engine.step() if self.window_may_step() else None
            if step is not None and not step.finite:
                diagonal = step.gram.diagonal()
                bad = [name for name, value in zip(self.reward_names, diagonal.tolist()) if not math.isfinite(value)]
                self.note_fault(f"non-finite gradient for reward(s) {bad or self.reward_names}")
            self.end_window(model, step, self._metrics["train"])

        self._step += 1
        self._current_train_step_time += time.perf_counter() - started
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["step_time"].append(self._current_train_step_time)
            self._current_train_step_time = 0.0
        weights = self.reward_weights.to(device=losses.device, dtype=losses.dtype)
        return torch.nan_to_num((losses.detach() @ weights), nan=0.0, posinf=0.0, neginf=0.0)

    def _fused_obstacle(self) -> str | None:
        """Why the fused engine cannot form this run's per-reward gradients (None: it can)."""
        obstacle = self.args.fused_engine_obstacle()
        if obstacle is None and self.aux_loss_enabled:
            return ROUTER_AUX_LOSS
        return obstacle

    def _build_engine(self, model: nn.Module) -> ObjectiveGradients:
        """The per-reward engine of ``args.engine``, with ``auto`` resolved (logged with its reason)."""
        reduce = mean_across_processes(self.accelerator.num_processes)
        mode = self.args.engine
        if mode == "auto":
            obstacle = self._fused_obstacle()
            if obstacle is not None:
                logger.info("engine auto: exact (%s)", obstacle)
            mode = "fused" if obstacle is None else "exact"
        if mode == "fused":
            try:
                engine = ObjectiveGradients(model, self.weighting, mode="fused", reduce_gradients=reduce)
            except FusedEngineNotApplicable as error:
                if self.args.engine != "auto":
                    raise
                logger.info("engine auto: exact (the fused engine does not apply: %s)", error)
            else:
                self._engine_unconfirmed = self.args.engine == "auto"
                return engine
        trainable = [p for p in model.parameters() if p.requires_grad]
        return ObjectiveGradients(trainable, self.weighting, mode="exact", reduce_gradients=reduce)

    def _confirm_auto_engine(self, error: FusedEngineNotApplicable | None) -> None:
        """Log the automatic choice once, after the first fused micro-batch went through or failed on the model."""
        self._engine_unconfirmed = False
        if error is None:
            logger.info("engine auto: fused (one backward pass of the log-probabilities gives the per-reward gradients)")
            return
        logger.info("engine auto: exact (the fused engine does not apply to this model: %s)", error)
        self.engine.use_exact()

    def _accumulate(self, losses: torch.Tensor, per_token_logps: torch.Tensor) -> None:
        """Add this micro-batch's per-reward gradients to the engine (TRL's loss is already divided by the
        gradient-accumulation steps). The fused engine's checks run before its backward pass, so a first fused
        micro-batch that shows the hooks do not apply leaves the graph for the exact engine."""
        if not self._engine_unconfirmed:
            self.engine.accumulate(losses, pair_values=per_token_logps)
            return
        try:
            self.engine.accumulate(losses, pair_values=per_token_logps)
        except FusedEngineNotApplicable as error:
            self._confirm_auto_engine(error)
            self.engine.accumulate(losses)
        else:
            self._confirm_auto_engine(None)

    @staticmethod
    def _gradients_finite(model: nn.Module) -> bool:
        return all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
