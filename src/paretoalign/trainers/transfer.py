r"""TransferTrainer: online DPO / IPO that borrows responses from imperfect reward models under a label budget.

Empirical TPO of Huang, Li, Dann and He, "Can RLHF be More Efficient with Imperfect Reward Models? A Policy
Coverage Perspective" (ICML 2025, arXiv 2502.19255, Algorithm 3 and the authors' ``annotate_data/Annotation.py``).
W imperfect source reward models ``r_1 .. r_W`` may know where good responses are; a trusted oracle (a gold reward,
a file of labels, or a person) is the only judge, and it may be asked at most ``label_budget`` times.

One iteration, step by step:

1. Take the next ``prompts_per_iteration`` prompts. For each prompt x, in order:

   a. the UCB selector (:class:`paretoalign.tpo.UCBSourceSelector`) names a source ``s`` among the W sources and
      ``self`` (no transfer). Its statistics are refreshed every ``ucb_refresh_prompts`` prompts: between refreshes the
      pick stays the argmax of ``mean_win(s) + c / sqrt(picks(s))`` computed at the last refresh; before the
      first refresh a source is drawn uniformly at random per prompt (as the authors' code does). The statistics,
      including a block not yet refreshed, carry over from one iteration to the next;
   b. sample ``n`` responses from the current policy ``pi_t`` (:func:`paretoalign.generation.generate_completions`);
   c. if ``s`` is a source: sample ``m`` extra candidates from ``pi_t``, score them with ``r_s`` and let the
      ``num_replaced`` best under ``r_s`` (best-of-m) replace the first ``num_replaced`` of the n responses
      (:func:`paretoalign.tpo.replace_with_transferred`). The m candidates are only sampled when a source is picked;
   d. the oracle judges the n responses (:mod:`paretoalign.oracles`: a reward oracle's one query ranks all n; a
      labels file or a person: a running best over ``n - 1`` pairwise comparisons, one query each). The budget
      ledger (:class:`paretoalign.tpo.LabelLedger`) is charged; when the next ranking could exceed the budget the
      iteration stops before asking;
   e. the DPO pair is (oracle-best, oracle-worst) (:func:`paretoalign.tpo.preference_pair`);
   f. the selector records the outcome: a source scores 1 when the oracle-best response is one it supplied,
      else 0; ``self`` always scores ``self_win_score`` (0.55, a bar slightly above the 0.5 a policy scores
      against itself).

2. Train the policy on the iteration's pairs with the ``update`` the trainer was given: ``paretoalign transfer``
   passes the preference trainer with one objective (:func:`paretoalign.commands.transfer.preference_update`:
   ``sigmoid``: DPO, ``ipo``: IPO on per-token average log-ratios, as TRL; ``epochs_per_iteration`` epochs of AdamW
   at a constant learning rate in mini-batches of ``batch_size`` pairs, a fresh optimizer each iteration). With
   ``reference="initial"`` (the default) the reference ``pi_ref`` is the initial policy throughout (the base weights
   with the LoRA adapter disabled, or a frozen copy), so the iterations climb the same KL-regularised objective
   ``E[r*] - beta KL(pi || pi_ref)``. ``reference="iteration_start"`` is the authors' rule (``dpo_iteration/
   run_dpo.py`` of jiaweihhuang/RLHF_RewardTransfer loads the previous iteration's model as reference): the
   reference of iteration t is the policy ``pi_t`` when the iteration starts (with LoRA, the base weights and the
   adapter together), so each iteration is a step of ``beta KL(pi || pi_t)``-regularised policy improvement; its
   objective moves with t. The reference enters the loss only through its log-probabilities of the iteration's pairs,
   which are fixed before the iteration trains: they are computed once then and travel with the pairs
   (``reference_logps_a`` / ``reference_logps_b``), so no copy of the model is made. The next iteration samples from
   the new policy.

3. Write a checkpoint atomically (policy, selector state, ledger, prompt cursor, metrics history, RNG states);
   a run started again with the same ``output_dir`` resumes from it. The run ends after ``iterations``
   iterations or when the budget cannot pay for another ranking.

Ties: a reward oracle's best is the highest-index response among those with the top score and its worst the
lowest-index one among those with the bottom score (the authors' ``sort`` of (reward, index) pairs); transferred
responses sit at the first indices, so a tie never counts as a source win. A prompt whose responses all tie, or
whose best and worst texts are identical, yields no pair.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from peft import PeftModel
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from paretoalign.config import LoraArguments, ModelArguments, config_to_dict, field_help, text_value
from paretoalign.data.prompts import load_prompts
from paretoalign.data.tokenize import with_reference_logps
from paretoalign.generation import Completion, encode_prompts, generate_completions
from paretoalign.io import (
    replace_directory,
    staging_directory,
    write_json_atomic,
    write_text_atomic,
    write_yaml_atomic,
)
from paretoalign.models import frozen_reference, load_policy, quiet_peft_wrapping, save_policy
from paretoalign.oracles import ORACLE_TYPES, Oracle, RewardOracle, build_oracle
from paretoalign.rewards.builtin import RewardFunction
from paretoalign.rewards.specs import (
    build_reward,
    build_rewards,
    parse_reward_spec,
    parse_reward_specs,
    reward_label,
    scores_of,
)
from paretoalign.scoring import dataset_logps, win_rate
from paretoalign.tpo import (
    SELF_SOURCE,
    LabelLedger,
    UCBSourceSelector,
    preference_pair,
    replace_with_transferred,
)

__all__ = ["PairUpdate", "TransferConfig", "TransferTrainer"]

logger = logging.getLogger(__name__)

TRANSFER_LOSS_TYPES = ("sigmoid", "ipo")
#: The DPO reference of an iteration: the initial policy, or the policy when the iteration starts (the authors').
TRANSFER_REFERENCES = ("initial", "iteration_start")

#: ``update(model, tokenizer, pairs, reference, iteration) -> metrics``: trains the policy on one iteration's pairs.
PairUpdate = Callable[[nn.Module, Any, datasets.Dataset, "nn.Module | None", int], dict]


@dataclass
class TransferConfig(ModelArguments, LoraArguments):
    """Configuration of :class:`TransferTrainer` and ``paretoalign transfer`` (YAML file + ``--field value``
    overrides, :func:`paretoalign.config.parse_config`; plus :class:`paretoalign.config.ModelArguments` and
    :class:`paretoalign.config.LoraArguments`). Defaults follow the paper: n = 8, m = 32, 4 replaced, refresh every
    50 prompts, self score 0.55, 3 epochs per iteration, learning rate 5e-5."""

    prompts: dict | str | None = field(
        default=None,
        metadata=field_help(
            "Prompts: builtin:NAME, a .txt file (one a line), a JSONL / JSON / Parquet file with a 'prompt' column or "
            "a Hugging Face dataset {dataset: ORG/NAME or a local clone, name, split, revision} "
            "(paretoalign.data.prompts.load_prompts). A string is read as an HH-RLHF transcript, a message list as "
            "it is.",
            path="path",
        ),
    )
    max_prompts: int | None = field(default=None, metadata=field_help("Use only the first N prompts of the file."))
    prompts_per_iteration: int = field(default=64, metadata=field_help("Prompts per iteration (the file is cycled)."))
    chat_template: bool = field(default=True, metadata=field_help("Render prompts with the tokenizer's chat template."))
    max_prompt_tokens: int = field(default=256, metadata=field_help("Prompt tokens kept (the last ones)."))
    eval_prompts: dict | str | None = field(
        default=None,
        metadata=field_help(
            "Held-out prompts for the win rate against the initial policy, same sources as prompts (optional).",
            path="path",
        ),
    )
    max_eval_prompts: int = field(default=32, metadata=field_help("Held-out prompts used."))
    eval_reward: dict | str | None = field(
        default=None,
        metadata=field_help(
            "Reward spec that judges the win rate (default: the oracle's reward when it is one).", path="reward_spec"
        ),
    )
    n: int = field(default=8, metadata=field_help("On-policy responses per prompt that the oracle ranks (>= 2)."))
    m: int = field(default=32, metadata=field_help("Extra candidates per prompt a source picks its best from."))
    num_replaced: int = field(default=4, metadata=field_help("Responses a picked source replaces (1 .. n - 1)."))
    ucb_refresh_prompts: int = field(default=50, metadata=field_help("Prompts between refreshes of the UCB choice."))
    ucb_exploration: float = field(default=1.0, metadata=field_help("UCB bonus coefficient c in mean + c / sqrt(picks)."))
    self_win_score: float = field(default=0.55, metadata=field_help("Fixed win score of 'self' (no transfer)."))
    label_budget: int = field(default=1000, metadata=field_help("Oracle queries allowed in the whole run (>= 0)."))
    oracle: dict | str | None = field(
        default=None,
        metadata=field_help(
            "{type: reward, <reward spec>} | {type: labels, path: FILE} | {type: human, answers: FILE}.",
            path="reward_spec",
        ),
    )
    sources: list | str | None = field(
        default=None,
        metadata=field_help(
            "Imperfect source rewards: a list of reward specs ({name: length, target: 20}, {function: 'file.py:fn'}, "
            "{sum: [...]}, optional label). Empty: no transfer.",
            path="reward_spec",
        ),
    )
    loss_type: str = field(default="sigmoid", metadata=field_help("sigmoid (DPO) or ipo."))
    reference: str = field(
        default="initial",
        metadata=field_help(
            f"The DPO reference, one of {list(TRANSFER_REFERENCES)}: 'initial' (the initial policy throughout) or "
            "'iteration_start' (the authors' code: the policy when each iteration starts)."
        ),
    )
    beta: float = field(default=0.1, metadata=field_help("KL-regularisation strength of the loss."))
    learning_rate: float = field(default=5e-5, metadata=field_help("AdamW learning rate."))
    weight_decay: float = field(default=0.0, metadata=field_help("AdamW weight decay."))
    iterations: int = field(default=3, metadata=field_help("Online iterations."))
    epochs_per_iteration: int = field(default=3, metadata=field_help("Passes over an iteration's pairs."))
    batch_size: int = field(default=8, metadata=field_help("Pairs per optimizer step."))
    max_new_tokens: int = field(default=64, metadata=field_help("Tokens sampled per response."))
    temperature: float = field(default=1.0, metadata=field_help("Sampling temperature (> 0)."))
    generation_batch_size: int = field(default=64, metadata=field_help("Sequences per generate call."))
    seed: int = field(default=0, metadata=field_help("Seed of sampling, shuffling and the selector's first draws."))
    output_dir: str = field(default="runs/transfer", metadata=field_help("Checkpoint, metrics.jsonl, logs, model."))
    resume: bool = field(default=True, metadata=field_help("Resume from output_dir/checkpoint when it exists."))

    def __post_init__(self) -> None:
        self.oracle = text_value(self.oracle, "oracle")
        self.sources = parse_reward_specs(text_value(self.sources or [], "sources"), "sources")
        if self.eval_reward is not None:
            self.eval_reward = parse_reward_spec(text_value(self.eval_reward, "eval_reward"), "eval_reward")
        self._validate()

    def _validate(self) -> None:
        def require(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        require(self.label_budget >= 0, f"label_budget must be >= 0, got {self.label_budget}.")
        require(self.n >= 2, f"n must be >= 2 (the oracle needs two responses to form a pair), got {self.n}.")
        require(self.m >= 1, f"m must be >= 1, got {self.m}.")
        require(
            1 <= self.num_replaced < self.n,
            f"num_replaced must lie in [1, n - 1] = [1, {self.n - 1}] (a source must be able to lose against an "
            f"on-policy response), got {self.num_replaced}.",
        )
        require(self.num_replaced <= self.m, f"num_replaced ({self.num_replaced}) must be <= m ({self.m}).")
        require(self.ucb_refresh_prompts >= 1, f"ucb_refresh_prompts must be >= 1, got {self.ucb_refresh_prompts}.")
        require(self.ucb_exploration >= 0, f"ucb_exploration must be >= 0, got {self.ucb_exploration}.")
        require(0 <= self.self_win_score <= 1, f"self_win_score must lie in [0, 1], got {self.self_win_score}.")
        require(self.loss_type in TRANSFER_LOSS_TYPES, f"loss_type must be one of {list(TRANSFER_LOSS_TYPES)}, got {self.loss_type!r}.")
        require(self.reference in TRANSFER_REFERENCES,
                f"reference must be one of {list(TRANSFER_REFERENCES)}, got {self.reference!r}.")
        require(math.isfinite(self.beta) and self.beta > 0, f"beta must be a positive number, got {self.beta}.")
        require(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}.")
        for name in ("iterations", "epochs_per_iteration", "batch_size", "max_new_tokens", "generation_batch_size",
                     "prompts_per_iteration", "max_prompt_tokens"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}.")
        require(self.temperature > 0, f"temperature must be positive, got {self.temperature}.")
        require(self.prompts is not None, "prompts is not set: give builtin:NAME or a prompts file.")
        require(isinstance(self.oracle, dict) and self.oracle.get("type") in ORACLE_TYPES,
                f"oracle must be a mapping with type one of {list(ORACLE_TYPES)}, got {self.oracle!r}.")
        labels = self.source_labels()
        require(SELF_SOURCE not in labels, f"'{SELF_SOURCE}' is the no-transfer arm; label the source differently.")

    @property
    def average_logps(self) -> bool:
        """Per-token average log-probabilities (IPO, as TRL) rather than sums (DPO)."""
        return self.loss_type == "ipo"

    def source_labels(self) -> list[str]:
        return [reward_label(spec) for spec in self.sources]


@dataclass
class _Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


CHECKPOINT_NAME = "checkpoint"
STATE_NAME = "state.json"
METRICS_NAME = "metrics.jsonl"


class TransferTrainer:
    """Runs the online iterations of the module docstring and writes everything into ``config.output_dir``.

    Args:
        config: a :class:`TransferConfig`.
        update: trains the policy on one iteration's pairs, ``update(model, tokenizer, pairs, reference, iteration)
            -> metrics``; ``pairs`` is a dataset of tokenised pairs (``prompt_input_ids``, ``response_a_input_ids``
            = chosen, ``response_b_input_ids`` = rejected, ``labels`` = ``[[1]]``), ``reference`` the frozen initial
            policy (None with LoRA: the adapter disabled is the reference). With ``reference="iteration_start"``
            ``reference`` is None and the pairs carry the reference's log-probabilities instead
            (``reference_logps_a`` / ``reference_logps_b``: the policy's at the start of the iteration, per-token
            averages when ``config.average_logps``), which the preference trainer uses. The metrics returned are
            ``train_loss``, ``train_accuracy``, ``train_steps`` and ``skipped_steps``.
        oracle: an oracle of :mod:`paretoalign.oracles` (default: built from ``config.oracle``).
        sources: source name -> reward function (default: built from ``config.sources``).
        eval_reward: the reward that judges the win rate against the initial policy (default:
            ``config.eval_reward``, else the oracle's reward when it is a :class:`RewardOracle`).
    """

    def __init__(
        self,
        config: TransferConfig,
        update: PairUpdate,
        oracle: Oracle | None = None,
        sources: dict[str, RewardFunction] | None = None,
        eval_reward: RewardFunction | None = None,
    ) -> None:
        self.config = config
        self.update = update
        self.oracle = oracle if oracle is not None else build_oracle(config.oracle)
        self.sources = dict(build_rewards(config.sources, "sources") if sources is None else sources)
        if eval_reward is None and config.eval_reward is not None:
            eval_reward = build_reward(config.eval_reward, "eval_reward")
        if eval_reward is None and isinstance(self.oracle, RewardOracle):
            eval_reward = self.oracle.reward
        self.eval_reward = eval_reward
        self.output_dir = Path(config.output_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.prompts = load_prompts(config.prompts, limit=config.max_prompts, seed=config.seed)["prompt"]
        self.eval_prompts = (
            load_prompts(config.eval_prompts, limit=config.max_eval_prompts, seed=config.seed)["prompt"]
            if config.eval_prompts is not None else []
        )

    def _load_model(self, checkpoint: Path | None) -> None:
        config = self.config
        base, tokenizer = config.load_model()
        self.reference = None
        if config.use_lora:
            if checkpoint is None:
                model = config.with_lora(base)
            else:
                with quiet_peft_wrapping():
                    model = PeftModel.from_pretrained(base, str(checkpoint / "model"), is_trainable=True)
        else:
            self.reference = frozen_reference(base).to(self.device)
            model = base if checkpoint is None else load_policy(checkpoint / "model", **config.model_options())[0]
        self.model = model.to(self.device)
        self.tokenizer = tokenizer

    @contextmanager
    def _initial_policy(self):
        """The initial (reference) policy for generation: the adapter disabled, or the frozen copy."""
        if self.reference is not None:
            yield self.reference
        else:
            with self.model.disable_adapter():
                yield self.model

    def _training_pairs(self, pairs: Sequence[_Pair]) -> tuple[datasets.Dataset, nn.Module | None]:
        """The iteration's pairs and the reference model the update gets: the initial policy (``self.reference``;
        None with LoRA), or with ``reference="iteration_start"`` None and the policy's log-probabilities now as the
        pairs' ``reference_logps_a`` / ``reference_logps_b`` columns."""
        dataset = self._pair_dataset(pairs)
        if self.config.reference == "initial":
            return dataset, self.reference
        logps = dataset_logps(self.model, dataset, self.tokenizer.pad_token_id, self.config.batch_size,
                              self.config.average_logps, "pairs (reference: the policy now)")
        return with_reference_logps(dataset, logps), None

    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts, add_special_tokens=True,
                              render_transcripts=self.config.chat_template,
                              max_prompt_tokens=self.config.max_prompt_tokens)

    def _generate(self, model, prompt_ids: list[list[int]], count: int, sample: bool) -> list[list[Completion]]:
        """``count`` completions per prompt, at most ``generation_batch_size`` sequences per generate call."""
        config = self.config
        return generate_completions(
            model, self.tokenizer, prompt_ids, max_new_tokens=config.max_new_tokens, num_return_sequences=count,
            do_sample=sample, temperature=config.temperature, batch_size=config.generation_batch_size,
        )

    def _collect(self, prompts: list[str], stats: dict) -> tuple[list[_Pair], bool]:
        """Steps 1a-1f for these prompts; returns the pairs and whether the budget stopped the iteration early."""
        config, selector, ledger = self.config, self.selector, self.ledger
        cost = self.oracle.max_cost(config.n)
        pairs: list[_Pair] = []
        done = 0
        while done < len(prompts):
            affordable = ledger.remaining // cost if cost else len(prompts)
            if affordable == 0:
                return pairs, True
            chunk_size = min(selector.prompts_until_refresh(), len(prompts) - done, affordable,
                             max(1, config.generation_batch_size // config.n))
            chunk = prompts[done : done + chunk_size]
            picks = selector.next_picks(chunk_size)
            prompt_ids = self._prompt_ids(chunk)
            on_policy = self._generate(self.model, prompt_ids, config.n, sample=True)
            transfer_positions = [i for i, pick in enumerate(picks) if pick != SELF_SOURCE]
            candidates = dict(zip(
                transfer_positions,
                self._generate(self.model, [prompt_ids[i] for i in transfer_positions], config.m, sample=True)
                if transfer_positions else [],
            ))
            for position, (prompt, pick) in enumerate(zip(chunk, picks)):
                responses, supplied = on_policy[position], []
                if pick != SELF_SOURCE:
                    pool = candidates[position]
                    scores = scores_of(self.sources[pick]([prompt] * len(pool), [c.text for c in pool]),
                                       len(pool), f"source {pick!r}")
                    responses, supplied = replace_with_transferred(responses, pool, scores, config.num_replaced)
                    stats["transferred_prompts"] += 1
                texts = [response.text for response in responses]
                ranking = self.oracle.rank(prompt, texts, budget_left=ledger.remaining)
                ledger.spend(ranking.cost)
                stats["unanswered_comparisons"] += ranking.unanswered
                stats["wins"][pick] += selector.record(pick, ranking.best in supplied)
                stats["picks"][pick] += 1
                pair = preference_pair(texts, ranking)
                if pair is None:
                    stats["no_pair_prompts"] += 1
                    continue
                chosen, rejected = pair
                pairs.append(_Pair(prompt_ids[position], responses[chosen].token_ids, responses[rejected].token_ids))
            done += chunk_size
            stats["prompts"] = stats.get("prompts", 0) + chunk_size
        return pairs, False

    def _pair_dataset(self, pairs: Sequence[_Pair]) -> datasets.Dataset:
        """The pairs as the preference trainer's tokenised rows: response a is the chosen one, label ``[[1]]``."""
        return datasets.Dataset.from_dict({
            "prompt_input_ids": [pair.prompt_ids for pair in pairs],
            "response_a_input_ids": [pair.chosen_ids for pair in pairs],
            "response_b_input_ids": [pair.rejected_ids for pair in pairs],
            "labels": [[1] for _ in pairs],
        })

    def _evaluation_scores(self, model) -> list[float | None]:
        prompt_ids = self._prompt_ids(self.eval_prompts)
        texts = [completions[0].text for completions in self._generate(model, prompt_ids, 1, sample=False)]
        return scores_of(self.eval_reward(list(self.eval_prompts), texts), len(texts), "eval_reward")

    def _evaluate(self) -> dict[str, float]:
        """Greedy responses of the current and the initial policy on the held-out prompts, judged by eval_reward:
        win rate = mean of 1[r(current) > r(initial)] + 1/2 1[equal] over the prompts both got a score on
        (:func:`paretoalign.scoring.win_rate`)."""
        if not self.eval_prompts or self.eval_reward is None:
            return {}
        if self._initial_eval_scores is None:
            with self._initial_policy() as initial:
                self._initial_eval_scores = self._evaluation_scores(initial)
        current = self._evaluation_scores(self.model)
        both = [(c, i) for c, i in zip(current, self._initial_eval_scores) if c is not None and i is not None]
        if not both:
            return {}
        return {
            "eval_win_rate_vs_initial": win_rate(current, self._initial_eval_scores),
            "eval_reward_mean": float(np.mean([c for c, _ in both])),
            "eval_initial_reward_mean": float(np.mean([i for _, i in both])),
            "eval_prompts": len(both),
        }

    def _state(self) -> dict[str, Any]:
        return {
            "iterations_done": self.iterations_done,
            "prompt_cursor": self.prompt_cursor,
            "budget_exhausted": self.budget_exhausted,
            "selector": self.selector.to_dict(),
            "ledger": self.ledger.to_dict(),
            "history": self.history,
            "torch_rng_state": torch.get_rng_state().tolist(),
        }

    def _save_checkpoint(self) -> None:
        """policy + state.json, staged in a hidden sibling folder and renamed over ``checkpoint`` in one step."""
        destination = self.output_dir / CHECKPOINT_NAME
        with staging_directory(destination) as staging:
            save_policy(self.model, self.tokenizer, staging / "model")
            write_json_atomic(staging / STATE_NAME, self._state())
            replace_directory(staging, destination)
        write_text_atomic(self.output_dir / METRICS_NAME, "".join(json.dumps(row) + "\n" for row in self.history))

    def _restore(self, state: dict[str, Any]) -> None:
        self.iterations_done = int(state["iterations_done"])
        self.prompt_cursor = int(state["prompt_cursor"])
        self.budget_exhausted = bool(state["budget_exhausted"])
        self.selector = UCBSourceSelector.from_dict(state["selector"])
        if self.selector.sources != list(self.sources):
            raise ValueError(
                f"{self.output_dir / CHECKPOINT_NAME}: the checkpoint's sources {self.selector.sources} differ from "
                f"the config's {list(self.sources)}; use a new output_dir."
            )
        spent = int(state["ledger"]["spent"])
        if spent > self.config.label_budget:
            raise ValueError(f"label_budget {self.config.label_budget} is below the {spent} labels already spent.")
        self.ledger = LabelLedger(budget=self.config.label_budget, spent=spent)
        self.history = list(state["history"])
        torch.set_rng_state(torch.tensor(state["torch_rng_state"], dtype=torch.uint8))

    def train(self) -> dict[str, Any]:
        """Run (or resume) the iterations; returns ``{"history": [...], "labels_spent", "label_budget", ...}``."""
        config = self.config
        checkpoint = self.output_dir / CHECKPOINT_NAME
        state = None
        if (checkpoint / STATE_NAME).is_file():
            if not config.resume:
                raise FileExistsError(f"{checkpoint} exists; pass --resume true to continue it or choose another output_dir.")
            state = json.loads((checkpoint / STATE_NAME).read_text())
        torch.manual_seed(config.seed)
        self._load_model(checkpoint if state is not None else None)
        self.iterations_done, self.prompt_cursor, self.budget_exhausted, self.history = 0, 0, False, []
        self.selector = UCBSourceSelector(
            list(self.sources), config.ucb_refresh_prompts, config.self_win_score, config.ucb_exploration, config.seed
        )
        self.ledger = LabelLedger(config.label_budget)
        if state is not None:
            self._restore(state)
            logger.info("resuming %s after iteration %d (%d of %d labels spent)", checkpoint, self.iterations_done,
                        self.ledger.spent, self.ledger.budget)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(self.output_dir / "config.yaml", config_to_dict(config))
        self._initial_eval_scores = None
        writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        try:
            while self.iterations_done < config.iterations and not self.budget_exhausted:
                if not self.ledger.can_afford(self.oracle.max_cost(config.n)):
                    self.budget_exhausted = True
                    logger.info("the budget (%d left) cannot pay for another ranking; stopping", self.ledger.remaining)
                    break
                row = self._iteration()
                self.history.append(row)
                self._save_checkpoint()
                self._log(row, writer)
        finally:
            writer.close()
        save_policy(self.model, self.tokenizer, self.output_dir / "model")
        return {"history": self.history, "labels_spent": self.ledger.spent, "label_budget": self.ledger.budget,
                "budget_exhausted": self.budget_exhausted, "selector": self.selector.to_dict()}

    def _iteration(self) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        iteration = self.iterations_done + 1
        prompts = [self.prompts[(self.prompt_cursor + i) % len(self.prompts)] for i in range(config.prompts_per_iteration)]
        arms = self.selector.arms
        stats = {"picks": dict.fromkeys(arms, 0), "wins": dict.fromkeys(arms, 0.0), "transferred_prompts": 0,
                 "no_pair_prompts": 0, "unanswered_comparisons": 0, "prompts": 0}
        spent_before = self.ledger.spent
        pairs, stopped = self._collect(prompts, stats)
        self.prompt_cursor += stats["prompts"]
        self.budget_exhausted = stopped
        training = (
            self.update(self.model, self.tokenizer, *self._training_pairs(pairs), iteration)
            if pairs else {"train_steps": 0}
        )
        self.iterations_done = iteration
        totals_picks = {arm: self.selector.picks[arm] + self.selector.pending_picks[arm] for arm in arms}
        totals_wins = {arm: self.selector.wins[arm] + self.selector.pending_wins[arm] for arm in arms}
        selected = max(arms, key=lambda arm: (stats["picks"][arm], -arms.index(arm)))
        row = {
            "iteration": iteration,
            "prompts": stats["prompts"],
            "pairs": len(pairs),
            "no_pair_prompts": stats["no_pair_prompts"],
            "transferred_prompts": stats["transferred_prompts"],
            "labels_this_iteration": self.ledger.spent - spent_before,
            "labels_spent": self.ledger.spent,
            "label_budget": self.ledger.budget,
            "budget_exhausted": stopped,
            "selected_source": selected,
            "selected_win_rate": totals_wins[selected] / totals_picks[selected] if totals_picks[selected] else None,
            "ucb_choice": self.selector.current,
            "picks_this_iteration": stats["picks"],
            "wins_this_iteration": stats["wins"],
            "sources": {arm: {"picks": totals_picks[arm], "wins": totals_wins[arm],
                              "win_rate": totals_wins[arm] / totals_picks[arm] if totals_picks[arm] else None}
                        for arm in arms},
            "unanswered_comparisons": stats["unanswered_comparisons"],
            "unknown_pairs": getattr(self.oracle, "unknown_pairs", 0),
            **training,
            **self._evaluate(),
        }
        row["seconds"] = time.perf_counter() - started
        return row

    def _log(self, row: dict[str, Any], writer) -> None:
        step = row["iteration"]
        writer.add_scalar("labels/spent", row["labels_spent"], step)
        writer.add_scalar("labels/pairs", row["pairs"], step)
        for arm, values in row["sources"].items():
            writer.add_scalar(f"sources/picks/{arm}", values["picks"], step)
            if values["win_rate"] is not None:
                writer.add_scalar(f"sources/win_rate/{arm}", values["win_rate"], step)
        for key in ("train_loss", "train_accuracy"):
            if row.get(key) is not None:
                writer.add_scalar(f"train/{key.removeprefix('train_')}", row[key], step)
        if "eval_win_rate_vs_initial" in row:
            writer.add_scalar("eval/win_rate_vs_initial", row["eval_win_rate_vs_initial"], step)
            writer.add_scalar("eval/win_rate_vs_labels", row["eval_win_rate_vs_initial"], row["labels_spent"])
            writer.add_scalar("eval/reward_mean", row["eval_reward_mean"], step)
        writer.flush()
        win = row["selected_win_rate"]
        logger.info(
            "iteration %d: %d prompts, %d pairs, labels %d/%d, source %s (est. win rate %s), picks %s, wins %s%s%s",
            row["iteration"], row["prompts"], row["pairs"], row["labels_spent"], row["label_budget"],
            row["selected_source"], "-" if win is None else f"{win:.3f}", row["picks_this_iteration"],
            row["wins_this_iteration"],
            "" if row.get("train_loss") is None else f", loss {row['train_loss']:.4f}",
            "" if "eval_win_rate_vs_initial" not in row else f", win rate vs initial {row['eval_win_rate_vs_initial']:.3f}",
        )
        if row["unknown_pairs"]:
            logger.warning("%d comparisons so far were not in the labels file (no label used, running best kept)",
                           row["unknown_pairs"])
