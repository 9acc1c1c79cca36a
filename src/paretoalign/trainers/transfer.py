r"""TransferTrainer: online DPO / IPO that borrows responses from imperfect reward models under a label budget.

Empirical TPO of Huang, Li, Dann and He, "Can RLHF be More Efficient with Imperfect Reward Models? A Policy
Coverage Perspective" (ICML 2025, arXiv 2502.19255, Algorithm 3 and the authors' ``annotate_data/Annotation.py``).
W imperfect source reward models ``r_1 .. r_W`` may know where good responses are; a trusted oracle (a gold reward,
a file of labels, or a person) is the only judge, and it may be asked at most ``label_budget`` times.

One iteration, step by step:

1. Take the next ``prompts_per_iteration`` prompts. For each prompt x, in order:

   a. the UCB selector (:class:`UCBSourceSelector`) names a source ``s`` among the W sources and ``self``
      (no transfer). Its statistics are refreshed every ``ucb_refresh_prompts`` prompts: between refreshes the
      pick stays the argmax of ``mean_win(s) + c / sqrt(picks(s))`` computed at the last refresh; before the
      first refresh a source is drawn uniformly at random per prompt (as the authors' code does). The statistics,
      including a block not yet refreshed, carry over from one iteration to the next;
   b. sample ``n`` responses from the current policy ``pi_t`` (batched ``model.generate``, left padding);
   c. if ``s`` is a source: sample ``m`` extra candidates from ``pi_t``, score them with ``r_s`` and let the
      ``num_replaced`` best under ``r_s`` (best-of-m) replace the first ``num_replaced`` of the n responses
      (:func:`replace_with_transferred`). The m candidates are only sampled when a source is picked;
   d. the oracle judges the n responses (:class:`RewardOracle`: one query ranks all n;
      :class:`LabelsFileOracle` and :class:`HumanOracle`: a running best over ``n - 1`` pairwise comparisons,
      one query each). The budget ledger (:class:`LabelLedger`) is charged; when the next ranking could exceed
      the budget the iteration stops before asking;
   e. the DPO pair is (oracle-best, oracle-worst) (:func:`preference_pair`);
   f. the selector records the outcome: a source scores 1 when the oracle-best response is one it supplied,
      else 0; ``self`` always scores ``self_win_score`` (0.55, a bar slightly above the 0.5 a policy scores
      against itself).

2. Train the policy on the iteration's pairs with :func:`paretoalign.losses.preference_losses`
   (``sigmoid``: DPO, ``ipo``: IPO on per-token average log-ratios, as TRL), ``epochs_per_iteration`` epochs of
   AdamW in mini-batches of ``batch_size`` pairs. The reference ``pi_ref`` is the initial policy throughout
   (the base weights with the LoRA adapter disabled, or a frozen copy), so the iterations climb the same
   KL-regularised objective ``E[r*] - beta KL(pi || pi_ref)``. The next iteration samples from the new policy.

3. Write a checkpoint atomically (policy, selector state, ledger, prompt cursor, metrics history, RNG states);
   a run started again with the same ``output_dir`` resumes from it. The run ends after ``iterations``
   iterations or when the budget cannot pay for another ranking.

Ties: a reward oracle's best is the highest-index response among those with the top score and its worst the
lowest-index one among those with the bottom score (the authors' ``sort`` of (reward, index) pairs); transferred
responses sit at the first indices, so a tie never counts as a source win. A prompt whose responses all tie, or
whose best and worst texts are identical, yields no pair.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import torch
import yaml

from paretoalign.io import write_json_atomic, write_text_atomic, write_yaml_atomic
from paretoalign.losses import preference_losses
from paretoalign.tpo import (
    SELF_SOURCE,
    BudgetExceededError,
    LabelLedger,
    OracleRanking,
    UCBSourceSelector,
    preference_pair,
    ranking_from_scores,
    replace_with_transferred,
    running_best,
)

__all__ = [
    "SELF_SOURCE",
    "BudgetExceededError",
    "HumanOracle",
    "LabelLedger",
    "LabelsFileOracle",
    "Oracle",
    "OracleInterrupted",
    "OracleRanking",
    "RewardOracle",
    "TransferConfig",
    "TransferTrainer",
    "UCBSourceSelector",
    "WeightedSumReward",
    "build_oracle",
    "build_reward",
    "load_prompts",
    "pair_key",
    "parse_transfer_config",
    "preference_pair",
    "ranking_from_scores",
    "replace_with_transferred",
    "run_transfer",
    "running_best",
]

logger = logging.getLogger(__name__)

RewardFunction = Callable[..., list]

# --- oracles ----------------------------------------------------------------------------------------------------


class Oracle(Protocol):
    """The trusted judge: ``rank`` returns an :class:`OracleRanking`; ``max_cost(n)`` bounds its cost."""

    name: str

    def max_cost(self, num_responses: int) -> int: ...

    def rank(self, prompt: str, responses: Sequence[str], budget_left: int | None = None) -> OracleRanking: ...


class OracleInterrupted(RuntimeError):
    """The oracle could not finish a ranking (the person stopped answering); answers given so far are saved."""


def pair_key(prompt: str, response_a: str, response_b: str) -> str:
    """SHA-256 of (prompt, the two responses in sorted order): the same key for either order of the pair."""
    first, second = sorted((response_a, response_b))
    return hashlib.sha256(json.dumps([prompt, first, second]).encode("utf-8")).hexdigest()


def _as_scores(values: Any, expected: int, where: str) -> list[float | None]:
    values = list(values)
    if len(values) != expected:
        raise ValueError(f"{where} returned {len(values)} scores for {expected} completions.")
    return [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]


class RewardOracle:
    """A reward function as oracle (a "gold" model in experiments): one call scores all n responses, one query."""

    def __init__(self, reward: RewardFunction, name: str = "reward") -> None:
        self.reward = reward
        self.name = name
        self.unknown_pairs = 0

    def max_cost(self, num_responses: int) -> int:
        return 1

    def rank(self, prompt: str, responses: Sequence[str], budget_left: int | None = None) -> OracleRanking:
        scores = _as_scores(self.reward([prompt] * len(responses), list(responses)), len(responses), self.name)
        return ranking_from_scores(scores)


class LabelsFileOracle:
    """Pairwise labels read from a JSONL file of ``{"prompt", "response_a", "response_b", "preferred"}`` rows
    (``preferred``: ``"a"`` or ``"b"``), looked up by :func:`pair_key` in either order.

    A pair missing from the file is counted in ``unknown_pairs`` (with its prompt in ``unknown_examples``) and
    keeps the running best; it is not charged, since no label was used. Contradicting rows are an error.
    """

    name = "labels"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.preferred: dict[str, str] = {}
        self.unknown_pairs = 0
        self.unknown_examples: list[str] = []
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            raise FileNotFoundError(f"labels file not found: {self.path}")
        first_row: dict[str, int] = {}
        with self.path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{self.path}, line {line_number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{where}: not valid JSON ({error.msg}).") from error
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: a row must be an object, got {type(row).__name__}.")
                for name in ("prompt", "response_a", "response_b"):
                    if not isinstance(row.get(name), str):
                        raise ValueError(f"{where}: field {name!r} must be a string.")
                choice = row.get("preferred")
                if choice not in ("a", "b"):
                    raise ValueError(f"{where}: field 'preferred' must be 'a' or 'b', got {choice!r}.")
                key = pair_key(row["prompt"], row["response_a"], row["response_b"])
                winner = row["response_a"] if choice == "a" else row["response_b"]
                if key in self.preferred and self.preferred[key] != winner:
                    raise ValueError(
                        f"{where}: contradicts line {first_row[key]} on the same prompt and pair of responses."
                    )
                self.preferred[key] = winner
                first_row.setdefault(key, line_number)

    def max_cost(self, num_responses: int) -> int:
        return num_responses - 1

    def rank(self, prompt: str, responses: Sequence[str], budget_left: int | None = None) -> OracleRanking:
        def compare(champion: int, challenger: int) -> tuple[int | None, int]:
            a, b = responses[champion], responses[challenger]
            if a == b:
                return None, 0
            winner = self.preferred.get(pair_key(prompt, a, b))
            if winner is None:
                self.unknown_pairs += 1
                if len(self.unknown_examples) < 5:
                    self.unknown_examples.append(prompt[:80])
                return None, 0
            return (champion if winner == a else challenger), 1

        return running_best(len(responses), compare)


class HumanOracle:
    """A person at the terminal compares two responses at a time (a running best: n - 1 comparisons a prompt).

    Each comparison shows the prompt, response 1 and response 2 (their order fixed by the pair's hash, so that
    the champion is not always on the same side), progress and the budget left, and reads ``1``, ``2`` or
    ``s`` / ``skip``. Every answer is appended to ``answers_path`` (JSONL, flushed and fsynced) before the next
    question, and an answer already in the file is reused without asking, so an interrupted session resumes where
    it stopped. A skipped comparison is charged (the question was asked) and keeps the running best. End of input
    raises :class:`OracleInterrupted`.
    """

    name = "human"
    CHOICES = {"1": "1", "2": "2", "s": "skip", "skip": "skip"}

    def __init__(
        self, answers_path: str | os.PathLike, input_stream: IO[str] | None = None, output_stream: IO[str] | None = None
    ) -> None:
        self.answers_path = Path(answers_path)
        self.input_stream = input_stream if input_stream is not None else sys.stdin
        self.output_stream = output_stream if output_stream is not None else sys.stdout
        self.answers: dict[str, str | None] = {}
        self.asked = 0
        self.reused = 0
        self.unknown_pairs = 0
        self._load()

    def _load(self) -> None:
        if not self.answers_path.is_file():
            return
        with self.answers_path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    self.answers[row["key"]] = row["preferred"]
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    if not line.endswith("\n"):  # a line cut short by a crash: the question is asked again
                        logger.warning("%s: ignoring the incomplete last line %d.", self.answers_path, line_number)
                        continue
                    raise ValueError(f"{self.answers_path}, line {line_number}: not an answer row ({error}).") from error

    def max_cost(self, num_responses: int) -> int:
        return num_responses - 1

    def _append(self, row: dict) -> None:
        self.answers_path.parent.mkdir(parents=True, exist_ok=True)
        with self.answers_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _ask(self, prompt: str, first: str, second: str, progress: str) -> str:
        out = self.output_stream
        out.write(f"\n{'=' * 72}\n{progress}\nPROMPT:\n{prompt}\n\n[1]\n{first}\n\n[2]\n{second}\n")
        while True:
            out.write("Which response is better? 1 / 2 / s(kip): ")
            out.flush()
            line = self.input_stream.readline()
            if not line:
                raise OracleInterrupted(
                    f"no more answers; the {self.asked} given are saved in {self.answers_path}. "
                    "Run the same command again to continue."
                )
            choice = self.CHOICES.get(line.strip().lower())
            if choice is not None:
                return choice
            out.write(f"please type 1, 2 or s, not {line.strip()!r}\n")

    def rank(self, prompt: str, responses: Sequence[str], budget_left: int | None = None) -> OracleRanking:
        total = len(responses) - 1
        charged_so_far = 0

        def compare(champion: int, challenger: int) -> tuple[int | None, int]:
            nonlocal charged_so_far
            a, b = responses[champion], responses[challenger]
            if a == b:
                return None, 0
            key = pair_key(prompt, a, b)
            charged_so_far += 1
            if key in self.answers:
                self.reused += 1
                winner = self.answers[key]
            else:
                swap = int(key[0], 16) % 2 == 1
                first, second = (b, a) if swap else (a, b)
                left = "" if budget_left is None else f" | labels left: {budget_left - charged_so_far + 1}"
                progress = f"comparison {challenger} of {total} for this prompt | answered: {self.asked}{left}"
                choice = self._ask(prompt, first, second, progress)
                winner = None if choice == "skip" else (first if choice == "1" else second)
                self.asked += 1
                self._append({"key": key, "prompt": prompt, "response_1": first, "response_2": second,
                              "answer": choice, "preferred": winner, "time": time.time()})
                self.answers[key] = winner
            if winner is None:
                return None, 1
            return (champion if winner == a else challenger), 1

        return running_best(len(responses), compare)


# --- reward functions from config specs -------------------------------------------------------------------------


class WeightedSumReward:
    """``r(x, y) = sum_i w_i r_i(x, y)``; None where any term is None (the term could not score the completion)."""

    def __init__(self, terms: Sequence[tuple[float, RewardFunction]]) -> None:
        if not terms:
            raise ValueError("a 'sum' reward needs at least one term.")
        self.terms = list(terms)

    def __call__(self, prompts: list[str], completions: list[str], **kwargs) -> list[float | None]:
        totals: list[float | None] = [0.0] * len(completions)
        for weight, reward in self.terms:
            scores = _as_scores(reward(prompts, completions, **kwargs), len(completions), "a 'sum' term")
            totals = [None if t is None or s is None else t + weight * s for t, s in zip(totals, scores)]
        return totals


class _KeywordArguments:
    """A reward function called with extra keyword arguments from its spec."""

    def __init__(self, function: RewardFunction, arguments: dict) -> None:
        self.function, self.arguments = function, arguments

    def __call__(self, prompts: list[str], completions: list[str], **kwargs) -> list:
        return self.function(prompts, completions, **{**self.arguments, **kwargs})


def _import_function(reference: str, where: str) -> RewardFunction:
    """``package.module:attribute`` or ``path/to/file.py:attribute``."""
    module_name, separator, attribute = reference.rpartition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"{where}: function must be 'module:name' or 'file.py:name', got {reference!r}.")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: reward function file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"paretoalign_user_rewards_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"{where}: cannot import module {module_name!r} ({error}).") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{where}: {module_name!r} has no callable {attribute!r}.")
    return function


def build_reward(spec: Any, where: str = "reward") -> RewardFunction:
    """A reward function ``(prompts, completions, **kwargs) -> list[float | None]`` from a config spec.

    * ``{name: NAME, ...}``: :func:`paretoalign.rewards.get_reward` (``answer``, ``format``, ``length``,
      ``conciseness``, ``keyword``, ``sentiment``, ``reward_model`` for a local sequence-classification model);
      the other keys are its parameters; ``NAME`` alone is the same as ``{name: NAME}``;
    * ``{function: "module:name" | "file.py:name", ...}``: an importable callable, called with the other keys
      as keyword arguments;
    * ``{sum: [{weight: w, <spec>}, ...]}``: :class:`WeightedSumReward`.

    A ``label`` key names the reward in logs and is not passed on.
    """
    if callable(spec):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a reward spec is a mapping or a name, got {type(spec).__name__}.")
    params = {key: value for key, value in spec.items() if key != "label"}
    kinds = [key for key in ("name", "function", "sum") if key in params]
    if len(kinds) != 1:
        raise ValueError(f"{where}: a reward spec needs exactly one of 'name', 'function' or 'sum', got keys {sorted(spec)}.")
    kind = kinds[0]
    value = params.pop(kind)
    if kind == "sum":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: 'sum' must be a non-empty list of {{weight: w, <reward spec>}} terms.")
        terms = []
        for index, term in enumerate(value):
            if not isinstance(term, dict) or not isinstance(term.get("weight"), (int, float)):
                raise ValueError(f"{where}.sum[{index}]: each term is a mapping with a numeric 'weight'.")
            rest = {key: item for key, item in term.items() if key != "weight"}
            terms.append((float(term["weight"]), build_reward(rest, f"{where}.sum[{index}]")))
        return WeightedSumReward(terms)
    if kind == "function":
        function = _import_function(str(value), where)
        return _KeywordArguments(function, params) if params else function
    try:
        from paretoalign.rewards import get_reward
    except ImportError as error:
        raise ImportError(f"{where}: named rewards need paretoalign.rewards ({error}).") from error
    try:
        return get_reward(value, **params)
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"{where}: cannot build reward {value!r} with parameters {params} ({error}).") from error


def reward_label(spec: Any, index: int) -> str:
    """The display name of a source: its ``label``, else its ``name``, else ``source<index>``."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        if "label" in spec:
            return str(spec["label"])
        if "name" in spec:
            return str(spec["name"])
        if "function" in spec:
            return str(spec["function"]).rpartition(":")[2]
    return f"source{index}"


def build_oracle(spec: Any, *, input_stream: IO[str] | None = None, output_stream: IO[str] | None = None) -> Oracle:
    """An oracle from its config spec: ``{type: reward, <reward spec>}``, ``{type: labels, path: FILE}`` or
    ``{type: human, answers: FILE}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError("oracle must be a mapping with a 'type': reward | labels | human.")
    kind = spec["type"]
    rest = {key: value for key, value in spec.items() if key != "type"}
    if kind == "reward":
        return RewardOracle(build_reward(rest, "oracle"), name=reward_label(rest, 0))
    if kind == "labels":
        if "path" not in rest:
            raise ValueError("oracle: type 'labels' needs 'path' (a JSONL file of prompt/response_a/response_b/preferred).")
        return LabelsFileOracle(rest["path"])
    if kind == "human":
        if "answers" not in rest:
            raise ValueError("oracle: type 'human' needs 'answers' (the JSONL file the answers are appended to).")
        return HumanOracle(rest["answers"], input_stream=input_stream, output_stream=output_stream)
    raise ValueError(f"oracle: unknown type {kind!r}; choose reward, labels or human.")


# --- prompts ----------------------------------------------------------------------------------------------------


_TRANSCRIPT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def transcript_messages(prompt: str) -> list[dict[str, str]]:
    """A ``Human: ... Assistant:`` transcript (Anthropic HH-RLHF) as chat messages; other text is one user turn.

    The trailing empty ``Assistant:`` turn, which asks for the reply, is dropped.
    """
    text = prompt.strip()
    if not text.startswith("Human:"):
        return [{"role": "user", "content": prompt}]
    parts = _TRANSCRIPT_TURN.split(text)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def load_prompts(source: str, limit: int | None = None) -> list[str]:
    """String prompts from ``builtin:NAME`` (shipped data), a text file with one prompt per line, or any prompt file
    :func:`paretoalign.data.load_prompts` reads (JSONL / JSON / Parquet / saved dataset with a ``prompt`` column,
    validated there with the file, line and field named)."""
    from paretoalign.evaluation import load_prompt_rows

    prompts = load_prompt_rows(source)["prompt"]
    if not isinstance(prompts[0], str):
        raise ValueError(f"{source}: prompts must be strings here (transcripts such as HH-RLHF's), not message lists.")
    return prompts[:limit] if limit is not None else prompts


# --- configuration ----------------------------------------------------------------------------------------------


def _help(text: str) -> dict[str, str]:
    return {"help": text}


TRANSFER_LOSS_TYPES = ("sigmoid", "ipo")
ORACLE_TYPES = ("reward", "labels", "human")


@dataclass
class TransferConfig:
    """Configuration of :class:`TransferTrainer` (YAML file + ``--field value`` overrides, see
    :func:`parse_transfer_config`). Defaults follow the paper: n = 8, m = 32, 4 replaced, refresh every 50 prompts,
    self score 0.55, 3 epochs per iteration, learning rate 5e-5."""

    model: str = field(
        default="builtin:smollm2",
        metadata=_help("Policy: a local Hugging Face model directory, a .gguf file, or builtin:smollm2."),
    )
    model_cache_dir: str | None = field(default=None, metadata=_help("Cache of de-quantised GGUF models."))
    use_lora: bool = field(default=True, metadata=_help("Train a LoRA adapter; the reference is the adapter disabled."))
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling alpha."))
    lora_dropout: float = field(default=0.0, metadata=_help("LoRA dropout."))
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], metadata=_help("Layers that get LoRA.")
    )
    prompts: str | None = field(
        default=None,
        metadata=_help("Prompts: builtin:NAME, a JSONL/JSON file of rows with 'prompt', or a .txt file (one a line)."),
    )
    max_prompts: int | None = field(default=None, metadata=_help("Use only the first N prompts of the file."))
    prompts_per_iteration: int = field(default=64, metadata=_help("Prompts per iteration (the file is cycled)."))
    chat_template: bool = field(default=True, metadata=_help("Render prompts with the tokenizer's chat template."))
    max_prompt_tokens: int = field(default=256, metadata=_help("Prompt tokens kept (the last ones)."))
    eval_prompts: str | None = field(
        default=None, metadata=_help("Held-out prompts for the win rate against the initial policy (optional).")
    )
    max_eval_prompts: int = field(default=32, metadata=_help("Held-out prompts used."))
    eval_reward: dict | str | None = field(
        default=None,
        metadata=_help("Reward spec that judges the win rate (default: the oracle's reward when it is one)."),
    )
    n: int = field(default=8, metadata=_help("On-policy responses per prompt that the oracle ranks (>= 2)."))
    m: int = field(default=32, metadata=_help("Extra candidates per prompt a source picks its best from."))
    num_replaced: int = field(default=4, metadata=_help("Responses a picked source replaces (1 .. n - 1)."))
    ucb_refresh_prompts: int = field(default=50, metadata=_help("Prompts between refreshes of the UCB choice."))
    ucb_exploration: float = field(default=1.0, metadata=_help("UCB bonus coefficient c in mean + c / sqrt(picks)."))
    self_win_score: float = field(default=0.55, metadata=_help("Fixed win score of 'self' (no transfer)."))
    label_budget: int = field(default=1000, metadata=_help("Oracle queries allowed in the whole run (>= 0)."))
    oracle: dict | str | None = field(
        default=None,
        metadata=_help("{type: reward, <reward spec>} | {type: labels, path: FILE} | {type: human, answers: FILE}."),
    )
    sources: list | str | None = field(
        default=None,
        metadata=_help("Imperfect source rewards: a list of reward specs ({name: length, target: 20}, "
                       "{function: 'file.py:fn'}, {sum: [...]}, optional label). Empty: no transfer."),
    )
    loss_type: str = field(default="sigmoid", metadata=_help("sigmoid (DPO) or ipo."))
    beta: float = field(default=0.1, metadata=_help("KL-regularisation strength of the loss."))
    learning_rate: float = field(default=5e-5, metadata=_help("AdamW learning rate."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    iterations: int = field(default=3, metadata=_help("Online iterations."))
    epochs_per_iteration: int = field(default=3, metadata=_help("Passes over an iteration's pairs."))
    batch_size: int = field(default=8, metadata=_help("Pairs per optimizer step."))
    max_new_tokens: int = field(default=64, metadata=_help("Tokens sampled per response."))
    temperature: float = field(default=1.0, metadata=_help("Sampling temperature (> 0)."))
    generation_batch_size: int = field(default=64, metadata=_help("Sequences per generate call."))
    seed: int = field(default=0, metadata=_help("Seed of sampling, shuffling and the selector's first draws."))
    output_dir: str = field(default="runs/transfer", metadata=_help("Checkpoint, metrics.jsonl, logs, model."))
    resume: bool = field(default=True, metadata=_help("Resume from output_dir/checkpoint when it exists."))

    def __post_init__(self) -> None:
        self.oracle = _from_text(self.oracle, "oracle")
        self.sources = _from_text(self.sources, "sources")
        self.eval_reward = _from_text(self.eval_reward, "eval_reward")
        if self.sources is None:
            self.sources = []
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
        require(math.isfinite(self.beta) and self.beta > 0, f"beta must be a positive number, got {self.beta}.")
        require(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}.")
        for name in ("iterations", "epochs_per_iteration", "batch_size", "max_new_tokens", "generation_batch_size",
                     "prompts_per_iteration", "max_prompt_tokens"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}.")
        require(self.temperature > 0, f"temperature must be positive, got {self.temperature}.")
        require(self.prompts is not None, "prompts is not set: give builtin:NAME or a prompts file.")
        require(isinstance(self.oracle, dict) and self.oracle.get("type") in ORACLE_TYPES,
                f"oracle must be a mapping with type one of {list(ORACLE_TYPES)}, got {self.oracle!r}.")
        require(isinstance(self.sources, list), f"sources must be a list of reward specs, got {type(self.sources).__name__}.")
        labels = []
        for index, spec in enumerate(self.sources):
            require(isinstance(spec, (dict, str)), f"sources[{index}]: a reward spec is a mapping or a name, got {spec!r}.")
            if isinstance(spec, dict):
                kinds = [key for key in ("name", "function", "sum") if key in spec]
                require(len(kinds) == 1, f"sources[{index}]: needs exactly one of 'name', 'function' or 'sum', got keys {sorted(spec)}.")
            labels.append(reward_label(spec, index))
        require(SELF_SOURCE not in labels, f"'{SELF_SOURCE}' is the no-transfer arm; label the source differently.")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        require(not duplicates, f"sources share the name(s) {duplicates}; give each a distinct 'label'.")

    def source_labels(self) -> list[str]:
        return [reward_label(spec, index) for index, spec in enumerate(self.sources)]


def _from_text(value: Any, name: str) -> Any:
    """A mapping or list given on the command line as YAML / JSON text."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ValueError(f"{name}: not valid YAML ({error}).") from error
    return parsed


_PATH_KEYS = ("path", "answers")


def _resolve_spec_paths(value: Any, base: Path) -> Any:
    """Relative file paths inside reward / oracle specs (``path``, ``answers``, ``function: file.py:name``)."""
    if isinstance(value, list):
        return [_resolve_spec_paths(item, base) for item in value]
    if not isinstance(value, dict):
        return value
    resolved = {}
    for key, item in value.items():
        if key in _PATH_KEYS and isinstance(item, str) and not Path(item).is_absolute():
            item = str((base / item).resolve())
        elif key == "function" and isinstance(item, str) and ".py:" in item:
            file_part, _, attribute = item.rpartition(":")
            if not Path(file_part).is_absolute():
                item = f"{(base / file_part).resolve()}:{attribute}"
        else:
            item = _resolve_spec_paths(item, base)
        resolved[key] = item
    return resolved


def parse_transfer_config(config_file: str | os.PathLike | None, argv: list[str]) -> TransferConfig:
    """:func:`paretoalign.config.parse_config` for :class:`TransferConfig`; then the input paths written in the
    YAML file (prompts, eval_prompts, files inside oracle / source / eval reward specs) are made relative to that
    file. Values given on the command line stay relative to the working directory."""
    from paretoalign.config import load_yaml, parse_config

    config = parse_config(TransferConfig, config_file, argv)
    if config_file is None:
        return config
    written = load_yaml(config_file)
    base = Path(config_file).resolve().parent
    for name in ("prompts", "eval_prompts"):
        value = getattr(config, name)
        if (isinstance(value, str) and value == written.get(name) and not value.startswith("builtin:")
                and not Path(value).is_absolute()):
            setattr(config, name, str((base / value).resolve()))
    for name in ("oracle", "sources", "eval_reward"):
        if name in written and getattr(config, name) == _from_text(written[name], name):
            setattr(config, name, _resolve_spec_paths(getattr(config, name), base))
    return config


# --- the trainer ------------------------------------------------------------------------------------------------


@dataclass
class _Completion:
    """A sampled response: its text (what rewards and the oracle judge) and its token ids (what DPO trains on)."""

    text: str
    token_ids: list[int]


@dataclass
class _Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


CHECKPOINT_NAME = "checkpoint"
STATE_NAME = "state.json"
METRICS_NAME = "metrics.jsonl"


@contextmanager
def _left_padding(tokenizer):
    previous = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = previous


class TransferTrainer:
    """Runs the online iterations of the module docstring and writes everything into ``config.output_dir``.

    Args:
        config: a :class:`TransferConfig`.
        oracle: an :class:`Oracle` (default: built from ``config.oracle``).
        sources: source name -> reward function (default: built from ``config.sources``).
        eval_reward: the reward that judges the win rate against the initial policy (default:
            ``config.eval_reward``, else the oracle's reward when it is a :class:`RewardOracle`).
    """

    def __init__(
        self,
        config: TransferConfig,
        oracle: Oracle | None = None,
        sources: dict[str, RewardFunction] | None = None,
        eval_reward: RewardFunction | None = None,
    ) -> None:
        self.config = config
        self.oracle = oracle if oracle is not None else build_oracle(config.oracle)
        if sources is None:
            sources = {
                label: build_reward(spec, f"sources[{index}]")
                for index, (label, spec) in enumerate(zip(config.source_labels(), config.sources))
            }
        self.sources = dict(sources)
        if eval_reward is None and config.eval_reward is not None:
            eval_reward = build_reward(config.eval_reward, "eval_reward")
        if eval_reward is None and isinstance(self.oracle, RewardOracle):
            eval_reward = self.oracle.reward
        self.eval_reward = eval_reward
        self.output_dir = Path(config.output_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.prompts = load_prompts(config.prompts, config.max_prompts)
        self.eval_prompts = (
            load_prompts(config.eval_prompts, config.max_eval_prompts) if config.eval_prompts is not None else []
        )

    # --- model ----------------------------------------------------------------------------------------------------

    def _model_path(self) -> str:
        from paretoalign.trainers.preference import resolve_model_path

        return resolve_model_path(self.config.model.removeprefix("builtin:"))

    def _load_model(self, checkpoint: Path | None) -> None:
        from peft import PeftModel

        from paretoalign.models import apply_lora, frozen_reference, load_policy

        config = self.config
        base, tokenizer = load_policy(self._model_path(), cache_dir=config.model_cache_dir)
        self.reference = None
        if config.use_lora:
            if checkpoint is None:
                model = apply_lora(base, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
            else:
                model = PeftModel.from_pretrained(base, str(checkpoint / "model"), is_trainable=True)
        else:
            self.reference = frozen_reference(base).to(self.device)
            model = base if checkpoint is None else load_policy(checkpoint / "model")[0]
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids

    @contextmanager
    def _initial_policy(self):
        """The initial (reference) policy for generation: the adapter disabled, or the frozen copy."""
        if self.reference is not None:
            yield self.reference
        else:
            with self.model.disable_adapter():
                yield self.model

    # --- prompts and generation -----------------------------------------------------------------------------------

    def _prompt_ids(self, prompt: str) -> list[int]:
        tokenizer = self.tokenizer
        if self.config.chat_template and tokenizer.chat_template:
            text = tokenizer.apply_chat_template(transcript_messages(prompt), tokenize=False, add_generation_prompt=True)
        else:
            text = prompt
        ids = tokenizer(text, add_special_tokens=not (self.config.chat_template and tokenizer.chat_template))["input_ids"]
        return ids[-self.config.max_prompt_tokens :]

    def _trim(self, generated: list[int]) -> list[int]:
        """Completion ids up to and including the first end-of-sequence token."""
        for position, token in enumerate(generated):
            if token in self.eos_ids:
                return generated[: position + 1]
        return generated

    @torch.no_grad()
    def _generate(self, model, prompt_ids: list[list[int]], count: int, sample: bool) -> list[list[_Completion]]:
        """``count`` completions per prompt, batched under ``generation_batch_size`` sequences, left padded."""
        config, tokenizer = self.config, self.tokenizer
        per_call = max(1, config.generation_batch_size // count)
        results: list[list[_Completion]] = []
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(prompt_ids), per_call):
                chunk = prompt_ids[start : start + per_call]
                with _left_padding(tokenizer):
                    batch = tokenizer.pad({"input_ids": chunk}, return_tensors="pt").to(self.device)
                options = {"do_sample": True, "temperature": config.temperature, "top_k": 0, "top_p": 1.0} if sample \
                    else {"do_sample": False}
                output = model.generate(
                    **batch, max_new_tokens=config.max_new_tokens, num_return_sequences=count,
                    pad_token_id=tokenizer.pad_token_id, **options,
                )
                generated = output[:, batch["input_ids"].shape[1] :].tolist()
                for index in range(len(chunk)):
                    completions = []
                    for row in generated[index * count : (index + 1) * count]:
                        ids = self._trim(row)
                        completions.append(_Completion(tokenizer.decode(ids, skip_special_tokens=True).strip(), ids))
                    results.append(completions)
        finally:
            model.train(was_training)
        return results

    # --- one iteration: collect pairs -----------------------------------------------------------------------------

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
            prompt_ids = [self._prompt_ids(prompt) for prompt in chunk]
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
                    scores = _as_scores(self.sources[pick]([prompt] * len(pool), [c.text for c in pool]),
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

    # --- one iteration: train -------------------------------------------------------------------------------------

    def _pair_batch(self, pairs: Sequence[_Pair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chosen rows, then rejected rows: prompt + response ids, right padded, mask on the response tokens."""
        rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
        length = max(len(prompt) + len(response) for prompt, response in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        response_mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for row, (prompt, response) in enumerate(rows):
            total = len(prompt) + len(response)
            input_ids[row, :total] = torch.tensor(prompt + response)
            attention[row, :total] = 1
            response_mask[row, len(prompt) : total] = True
        return input_ids.to(self.device), attention.to(self.device), response_mask.to(self.device)

    def _train_on_pairs(self, pairs: list[_Pair], iteration: int) -> dict[str, float]:
        """``epochs_per_iteration`` epochs of AdamW on the DPO / IPO loss of the pairs (fresh optimizer each iteration)."""
        from paretoalign.models import reference_logps, sequence_logps

        config = self.config
        average = config.loss_type == "ipo"
        batch_size = config.batch_size
        reference = torch.cat([
            reference_logps(self.model, self.reference, *self._pair_batch(pairs[start : start + batch_size]),
                            average=average).view(2, -1).T
            for start in range(0, len(pairs), batch_size)
        ])
        parameters = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(config.seed * 1000 + iteration)
        losses, accuracies, skipped = [], [], 0
        self.model.train()
        for _ in range(config.epochs_per_iteration):
            order = torch.randperm(len(pairs), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = self._pair_batch([pairs[i] for i in indices])
                policy = sequence_logps(self.model, *batch, average=average).view(2, -1).T
                logratios = policy - reference[indices]
                delta = logratios[:, 0] - logratios[:, 1]
                labels = torch.ones((len(indices), 1), dtype=torch.long, device=delta.device)
                loss = preference_losses(delta, labels, config.beta, config.loss_type)[0]
                optimizer.zero_grad(set_to_none=True)
                if not torch.isfinite(loss):
                    skipped += 1
                    logger.warning("iteration %d: non-finite loss; step skipped", iteration)
                    continue
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                accuracies.append(float((delta.detach() > 0).float().mean()))
        optimizer.zero_grad(set_to_none=True)
        return {
            "train_loss": float(np.mean(losses)) if losses else None,
            "train_accuracy": float(np.mean(accuracies)) if accuracies else None,
            "train_steps": len(losses),
            "skipped_steps": skipped,
        }

    # --- evaluation -----------------------------------------------------------------------------------------------

    def _evaluation_scores(self, model) -> list[float | None]:
        prompt_ids = [self._prompt_ids(prompt) for prompt in self.eval_prompts]
        texts = [completions[0].text for completions in self._generate(model, prompt_ids, 1, sample=False)]
        return _as_scores(self.eval_reward(list(self.eval_prompts), texts), len(texts), "eval_reward")

    def _evaluate(self) -> dict[str, float]:
        """Greedy responses of the current and the initial policy on the held-out prompts, judged by eval_reward:
        win rate = mean of 1[r(current) > r(initial)] + 1/2 1[equal] over the prompts both got a score on
        (:func:`paretoalign.evaluation.win_rate`)."""
        from paretoalign.evaluation import win_rate

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

    # --- checkpoints ----------------------------------------------------------------------------------------------

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
        from paretoalign.models import _replace_directory, _staging_directory, save_policy

        destination = self.output_dir / CHECKPOINT_NAME
        with _staging_directory(destination) as staging:
            save_policy(self.model, self.tokenizer, staging / "model")
            write_json_atomic(staging / STATE_NAME, self._state())
            _replace_directory(staging, destination)
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

    # --- the run --------------------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run (or resume) the iterations; returns ``{"history": [...], "labels_spent", "label_budget", ...}``."""
        from torch.utils.tensorboard import SummaryWriter

        from paretoalign.models import save_policy

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
        write_yaml_atomic(self.output_dir / "config.yaml", {f.name: getattr(config, f.name) for f in fields(config)})
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
        training = self._train_on_pairs(pairs, iteration) if pairs else {"train_steps": 0}
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


def run_transfer(config: TransferConfig, **trainer_arguments) -> dict[str, Any]:
    """Build a :class:`TransferTrainer` for ``config`` and run it."""
    return TransferTrainer(config, **trainer_arguments).train()
