r"""Trusted judges for transfer (TPO): a reward function, a file of pairwise labels, or a person at the terminal.

Every oracle ranks the n responses to one prompt and says what that cost in queries (:class:`paretoalign.tpo.
OracleRanking`): a :class:`RewardOracle` scores all n at once (one query); a :class:`LabelsFileOracle` or a
:class:`HumanOracle` finds the best with n - 1 pairwise comparisons against a running best
(:func:`paretoalign.tpo.running_best`), one query each. The config spec of an oracle is ``{type: reward, <reward
spec>}``, ``{type: labels, path: FILE}`` (or ``{type: labels, dataset: ORG/NAME, split: SPLIT}``) or ``{type: human,
answers: FILE}`` (:func:`build_oracle`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from paretoalign.data.columns import data_source, is_single_source, iter_rows, resolve_data_source
from paretoalign.data.files import HubDataset, RowLocation
from paretoalign.rewards.builtin import RewardFunction
from paretoalign.rewards.specs import build_reward, parse_reward_spec, reward_label, scores_of
from paretoalign.tpo import OracleRanking, ranking_from_scores, running_best

__all__ = [
    "ORACLE_TYPES", "HumanOracle", "LabelsFileOracle", "Oracle", "OracleInterrupted", "RewardOracle", "build_oracle",
    "pair_key",
]

logger = logging.getLogger(__name__)

ORACLE_TYPES = ("reward", "labels", "human")


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


class RewardOracle:
    """A reward function as oracle (a "gold" model in experiments): one call scores all n responses, one query."""

    def __init__(self, reward: RewardFunction, name: str = "reward") -> None:
        self.reward = reward
        self.name = name
        self.unknown_pairs = 0

    def max_cost(self, num_responses: int) -> int:
        return 1

    def rank(self, prompt: str, responses: Sequence[str], budget_left: int | None = None) -> OracleRanking:
        scores = scores_of(self.reward([prompt] * len(responses), list(responses)), len(responses), self.name)
        return ranking_from_scores(scores)


class LabelsFileOracle:
    """Pairwise labels read from rows ``{"prompt", "response_a", "response_b", "preferred"}`` (``preferred``: ``"a"``
    or ``"b"``), looked up by :func:`pair_key` in either order.

    The rows come from any data source (:func:`paretoalign.data.columns.resolve_data_source`): a JSON Lines, JSON or
    Parquet file, a saved dataset, or a Hugging Face dataset ``{dataset: ORG/NAME or a local clone, name, split,
    revision}``; an error names the file (or dataset, config and split), the line (or row) and the field.

    A pair missing from the labels is counted in ``unknown_pairs`` (with its prompt in ``unknown_examples``) and
    keeps the running best; it is not charged, since no label was used. Contradicting rows are an error.
    """

    name = "labels"

    def __init__(self, source: str | os.PathLike | HubDataset | Mapping[str, Any]) -> None:
        self.source = data_source(resolve_data_source(source))
        self.preferred: dict[str, str] = {}
        self.unknown_pairs = 0
        self.unknown_examples: list[str] = []
        self._load()

    def _load(self) -> None:
        unit, rows = iter_rows(self.source)
        first_row: dict[str, int] = {}
        for line, row in rows:
            where = RowLocation(str(self.source), line, unit)
            if not isinstance(row, Mapping):
                raise where.error(f"a row must be an object, got {type(row).__name__}")
            for name in ("prompt", "response_a", "response_b"):
                if not isinstance(row.get(name), str):
                    raise where.error("must be a string", name)
            choice = row.get("preferred")
            if choice not in ("a", "b"):
                raise where.error(f"must be 'a' or 'b', got {choice!r}", "preferred")
            key = pair_key(row["prompt"], row["response_a"], row["response_b"])
            winner = row["response_a"] if choice == "a" else row["response_b"]
            if key in self.preferred and self.preferred[key] != winner:
                raise where.error(f"contradicts {unit} {first_row[key]} on the same prompt and pair of responses")
            self.preferred[key] = winner
            first_row.setdefault(key, line)

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


def build_oracle(spec: Any, *, input_stream: IO[str] | None = None, output_stream: IO[str] | None = None) -> Oracle:
    """An oracle from its config spec: ``{type: reward, <reward spec>}``, ``{type: labels, path: FILE}`` (or a
    dataset source ``{type: labels, dataset: ..., split: ...}``) or ``{type: human, answers: FILE}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError("oracle must be a mapping with a 'type': reward | labels | human.")
    kind = spec["type"]
    rest = {key: value for key, value in spec.items() if key != "type"}
    if kind == "reward":
        spec = parse_reward_spec(rest, "oracle")
        return RewardOracle(build_reward(spec, "oracle"), name=reward_label(spec))
    if kind == "labels":
        if not is_single_source(rest):
            raise ValueError(
                "oracle: type 'labels' needs 'path' (a file of prompt/response_a/response_b/preferred rows) or "
                "'dataset' (a Hugging Face dataset of such rows, with name, split, revision)."
            )
        return LabelsFileOracle(rest)
    if kind == "human":
        if "answers" not in rest:
            raise ValueError("oracle: type 'human' needs 'answers' (the JSONL file the answers are appended to).")
        return HumanOracle(rest["answers"], input_stream=input_stream, output_stream=output_stream)
    raise ValueError(f"oracle: unknown type {kind!r}; choose reward, labels or human.")
