r"""Built-in reward functions for online multi-reward RL, and the reward-function protocol.

**Protocol** (TRL's ``GRPOTrainer``): a reward function is called as
``reward(prompts, completions, **kwargs)`` and returns one ``float`` or ``None`` per completion. ``completions``
are strings or conversational message lists (``[{"role": "assistant", "content": "..."}]``); ``prompts`` likewise.
Dataset columns arrive as keyword lists with one value per completion (``answer=[...]``); every other keyword
argument (``completion_ids``, ``trainer_state``, ``log_metric``, ...) is accepted and ignored unless documented.
``None`` means "cannot score this completion" (TRL turns it into NaN). A reward function never raises on the text
of a completion; it raises ``ValueError`` only for bad configuration (invalid parameters, a missing dataset
column). Each function carries a ``__name__`` that TRL uses for logging (``rewards/<__name__>/mean``).

**Completion text** (:func:`completion_text`): a string as it is; for a message list the content of its last
assistant message (a list of content parts contributes its text parts); anything else (``None`` content, no
assistant message, a non-string) is the empty text ``""``.

**Built-in rewards** (``L`` the completion length, ``T`` the target length, registry names in brackets):

* :class:`AnswerReward`: [``answer``] 1.0 if the final answer equals the ``answer`` column, else 0.0; ``None`` when
  the reference is missing or unparseable
* :class:`FormatReward`: [``format``] ``1.0 if fullmatch(pattern, text.strip()) else 0.0``; with ``partial``:
  ``(tags occurring exactly once + full match) / (len(tags) + 1)``
* :class:`LengthReward`: [``length``] ``linear``: ``max(0, 1 - |L - T| / T)``; ``gaussian``: ``exp(-((L - T) /
  width)^2 / 2)``; ``cap``: ``1 if L <= T else max(0, 1 - (L - T) / T)``
* :func:`conciseness_reward`: [``conciseness``] :class:`LengthReward` with ``shape="cap"``
* :class:`KeywordReward`: [``keyword``] ``(required keywords present + forbidden keywords absent) / (len(required) +
  len(forbidden))``
* :class:`SentimentReward`: [``sentiment``] VADER compound score in ``[-1, 1]``, or ``(compound + 1) / 2`` with
  ``unit_interval``; ``None`` for empty text
* :class:`RewardModel`: [``reward_model``] the logit of a sequence-classification model (a local directory or a Hub
  id) on ``prompt + completion``, or on a ``template`` such as ``"{completion} {bos} {prompt}"``
* :class:`PairClassifier`: [``pair_classifier``] ``P(label)`` of a sequence-pair classifier on ``(completion,
  prompt)``, e.g. a faithfulness detector

:func:`get_reward` builds any of them by registry name (:data:`REWARDS`), as configs do:
``get_reward("length", target=40, unit="words", shape="cap")``.
"""

from __future__ import annotations

import errno
import inspect
import math
import numbers
import re
import string
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from paretoalign.models import load_pretrained, resolve_model

__all__ = [
    "REWARDS", "AnswerReward", "FormatReward", "KeywordReward", "LengthReward", "PairClassifier", "RewardFunction",
    "RewardModel", "SentimentReward", "completion_text", "conciseness_reward", "extract_answer", "get_reward", "last_number",
]


class RewardFunction(Protocol):
    """What ``GRPOTrainer`` calls: one ``float`` or ``None`` per completion, and a ``__name__`` for its logs."""

    __name__: str

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]: ...


def _content_text(content: Any) -> str:
    """A message's ``content`` as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def completion_text(completion: Any) -> str:
    """The text of one completion.

    A string is returned as it is; a message list gives the content of its last ``assistant`` message; a single
    message (a mapping) gives its content. Content that is a list of parts contributes the ``text`` of each part.
    Everything else (``None``, ``None`` content, no assistant message) gives ``""``.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            if isinstance(message, Mapping) and message.get("role") == "assistant":
                return _content_text(message.get("content"))
    return ""


def _prompt_text(prompt: Any) -> str:
    """A prompt as plain text: a string as it is, a message list as its message contents joined by newlines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        return "\n".join(_content_text(message.get("content")) for message in prompt if isinstance(message, Mapping))
    return ""


def _column(kwargs: Mapping[str, Any], column: str, reward_name: str, count: int) -> list:
    """The dataset column ``column`` from the reward keyword arguments, one value per completion."""
    if column not in kwargs:
        dataset_columns = sorted(
            key
            for key in kwargs
            if key not in ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
        )
        raise ValueError(
            f"{reward_name} reward: needs the dataset column {column!r}, which was not passed "
            f"(dataset columns passed: {dataset_columns})"
        )
    values = kwargs[column]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != count:
        size = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ValueError(
            f"{reward_name} reward: the column {column!r} must hold one value per completion ({count}), got {size}"
        )
    return list(values)


def _positive_number(value: Any, parameter: str, reward_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{reward_name} reward: {parameter} must be a positive number, got {value!r}")
    return float(value)


def _non_negative_number(value: Any, parameter: str, reward_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{reward_name} reward: {parameter} must be a non-negative number, got {value!r}")
    return float(value)


def _flag(value: Any, parameter: str, reward_name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{reward_name} reward: {parameter} must be true or false, got {value!r}")
    return value


def _choice(value: Any, choices: Sequence[str], parameter: str, reward_name: str) -> str:
    if value not in choices:
        raise ValueError(f"{reward_name} reward: {parameter} must be one of {list(choices)}, got {value!r}")
    return value


def _positive_integer(value: Any, parameter: str, reward_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{reward_name} reward: {parameter} must be a positive integer, got {value!r}")
    return int(value)


_BOXED_OR_BRACE = re.compile(r"\\boxed\s*\{|[{}]")
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER = re.compile(
    rf"(?P<sign>(?<![\w)\]}}])[-\u2212])?(?P<numerator>{_DIGITS})(?:\s*/\s*(?P<denominator>{_DIGITS}))?"
)
"""A number: optional minus sign (ASCII or U+2212, not directly after a word character or a closing bracket, so
``3-5`` reads as 3 and 5), digits with optional ``,``-separated groups of three, optional decimals, optional
``/denominator``. Any Unicode decimal digit counts as a digit."""


def _last_boxed_content(text: str) -> str | None:
    """The content of the ``\\boxed{...}`` (balanced braces) that closes last, or ``None``; one pass over the text."""
    open_braces: list[tuple[int, bool]] = []
    content = None
    for match in _BOXED_OR_BRACE.finditer(text):
        if match.group() == "}":
            if open_braces:
                start, is_boxed = open_braces.pop()
                if is_boxed:
                    content = text[start : match.start()]
        else:
            open_braces.append((match.end(), match.group() != "{"))
    return content


def extract_answer(text: str) -> str:
    """The final-answer part of a completion's text.

    The content of the last complete ``\\boxed{...}`` (balanced braces) if there is one, else the content of the
    last ``<answer>...</answer>`` (case-sensitive tags) if there is one, else the whole text.
    """
    boxed = _last_boxed_content(text)
    if boxed is not None:
        return boxed
    close = text.rfind(_ANSWER_CLOSE)
    open_ = text.rfind(_ANSWER_OPEN, 0, close) if close >= 0 else -1
    if open_ >= 0:
        return text[open_ + len(_ANSWER_OPEN) : close]
    return text


def _as_slash_fraction(match: re.Match) -> str:
    """``\\frac{a}{b}`` as ``a/b``."""
    return f"{match[1].strip()}/{match[2].strip()}"


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


def _decimal_value(digits: str) -> Fraction:
    return Fraction(_ascii_digits(digits).replace(",", ""))


def last_number(text: str) -> Fraction | None:
    """The exact value of the last number in ``text``, or ``None`` when there is none.

    Recognised: integers (``17``, ``-7``, ``−7``), thousands separators (``1,234``), decimals (``3.5``),
    fractions (``3/4``, ``\\frac{3}{4}``, ``\\dfrac``, ``\\tfrac``) and any Unicode decimal digits (``٤٢`` is 42).
    A minus sign directly after a letter, digit or closing bracket is an operator, not a sign (``10-3`` ends in
    3). Superscripts and scientific notation are not numbers. When the last number has no value (a zero
    denominator, more digits than Python converts) the result is ``None``; an earlier number is not used instead.
    """
    last = deque(_NUMBER.finditer(_LATEX_FRACTION.sub(_as_slash_fraction, text)), maxlen=1)
    if not last:
        return None
    match = last[0]
    try:
        value = _decimal_value(match["numerator"])
        if match["denominator"] is not None:
            value /= _decimal_value(match["denominator"])
    except (ValueError, ZeroDivisionError):
        return None
    return -value if match["sign"] else value


def _normalized(text: str) -> str:
    """``text`` stripped, case-folded, and with every run of whitespace collapsed to one space."""
    return " ".join(text.casefold().split())


class AnswerReward:
    r"""Answer correctness against a reference column.

    The completion's final answer is :func:`extract_answer` of its text: the last ``\boxed{...}`` content, else
    the last ``<answer>...</answer>`` content, else the whole text. Then:

    * ``mode="numeric"``: ``a = last_number(final answer)``, ``r = the reference's value``, and the reward is
      ``1.0 if |a - r| <= max(rel_tol * max(|a|, |r|), abs_tol) else 0.0`` (computed exactly, as
      ``math.isclose``). A numeric reference (int, float, Decimal, ...) is taken at its decimal value (the
      float ``0.1`` is exactly 1/10); a string reference is read like a completion (``"72"``, ``"#### 72"``,
      ``"\boxed{72}"`` all give 72).
    * ``mode="exact"``: ``1.0 if normalise(final answer) == normalise(str(reference)) else 0.0`` where
      ``normalise`` strips, case-folds and collapses whitespace. Without tags, the whole text is the final answer.

    A completion without an extractable answer (empty text, no number) is *wrong*: 0.0. ``None`` is returned only
    when the reference itself is missing (``None``) or unusable (no number in it, not finite, a boolean), since
    then no completion can be judged.

    Args:
        column: the dataset column holding the reference answers.
        mode: ``"numeric"`` or ``"exact"``.
        rel_tol: relative tolerance of the numeric comparison.
        abs_tol: absolute tolerance of the numeric comparison.

    Raises:
        ValueError: invalid parameters; at call time, a missing ``column`` or one of the wrong length.
    """

    MODES = ("numeric", "exact")

    def __init__(self, column: str = "answer", mode: str = "numeric", rel_tol: float = 1e-9, abs_tol: float = 1e-9):
        self.__name__ = "answer"
        if not isinstance(column, str) or not column:
            raise ValueError(f"answer reward: column must be a non-empty column name, got {column!r}")
        self.column = column
        self.mode = _choice(mode, self.MODES, "mode", self.__name__)
        self.rel_tol = Fraction(_non_negative_number(rel_tol, "rel_tol", self.__name__))
        self.abs_tol = Fraction(_non_negative_number(abs_tol, "abs_tol", self.__name__))

    def _reference_value(self, reference: Any) -> Fraction | None:
        if isinstance(reference, bool):
            return None
        if isinstance(reference, numbers.Integral):
            return Fraction(int(reference))
        if isinstance(reference, numbers.Real):
            value = float(reference)
            return Fraction(repr(value)) if math.isfinite(value) else None
        if isinstance(reference, str):
            return last_number(extract_answer(reference))
        return None

    def _score(self, text: str, reference: Any) -> float | None:
        if reference is None:
            return None
        if self.mode == "exact":
            return float(_normalized(extract_answer(text)) == _normalized(str(reference)))
        expected = self._reference_value(reference)
        if expected is None:
            return None
        answer = last_number(extract_answer(text))
        if answer is None:
            return 0.0
        return float(abs(answer - expected) <= max(self.rel_tol * max(abs(answer), abs(expected)), self.abs_tol))

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        references = _column(kwargs, self.column, self.__name__, len(completions))
        return [self._score(completion_text(c), reference) for c, reference in zip(completions, references)]


DEFAULT_FORMAT_PATTERN = r"^<think>.*?</think>\s*<answer>.*?</answer>$"
DEFAULT_FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


class FormatReward:
    """Whether a completion follows a format, as a regular-expression full match.

    ``full = 1 if re.fullmatch(pattern, text.strip(), flags) else 0`` with ``flags = re.DOTALL`` (``.`` crosses
    lines) unless ``dotall=False``. The reward is

    * ``full`` (1.0 or 0.0), or
    * with ``partial=True``: ``(number of tags occurring exactly once in the text + full) / (len(tags) + 1)``, so
      with the default four tags a well-formed completion scores 1.0, all four tags in a wrong order 0.8, only
      ``<answer>...</answer>`` 0.4 and no tag 0.0.

    Args:
        pattern: the regular expression (default ``^<think>.*?</think>\\s*<answer>.*?</answer>$``).
        partial: give credit per tag as above.
        tags: the tags counted by ``partial`` (default ``<think>``, ``</think>``, ``<answer>``, ``</answer>``).
        dotall: compile ``pattern`` with ``re.DOTALL``.

    Raises:
        ValueError: an invalid regular expression, or tags that are not non-empty strings.
    """

    def __init__(
        self,
        pattern: str = DEFAULT_FORMAT_PATTERN,
        partial: bool = False,
        tags: Sequence[str] = DEFAULT_FORMAT_TAGS,
        dotall: bool = True,
    ):
        self.__name__ = "format"
        if not isinstance(pattern, str):
            raise ValueError(f"format reward: pattern must be a string, got {pattern!r}")
        dotall = _flag(dotall, "dotall", self.__name__)
        try:
            self.pattern = re.compile(pattern, re.DOTALL if dotall else 0)
        except re.error as error:
            raise ValueError(f"format reward: invalid regular expression {pattern!r}: {error}") from error
        self.partial = _flag(partial, "partial", self.__name__)
        if isinstance(tags, str) or not tags or not all(isinstance(tag, str) and tag for tag in tags):
            raise ValueError(f"format reward: tags must be a non-empty list of non-empty strings, got {tags!r}")
        self.tags = tuple(tags)

    def _score(self, text: str) -> float:
        full = self.pattern.fullmatch(text.strip()) is not None
        if not self.partial:
            return float(full)
        tags_once = sum(text.count(tag) == 1 for tag in self.tags)
        return (tags_once + full) / (len(self.tags) + 1)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [self._score(completion_text(c)) for c in completions]


def _load_tokenizer(tokenizer: Any, reward_name: str) -> Any:
    """A tokenizer object as it is; a string or path is a local tokenizer directory."""
    if not isinstance(tokenizer, (str, Path)):
        if not callable(tokenizer):
            raise ValueError(f"{reward_name} reward: tokenizer must be a tokenizer or a local directory")
        return tokenizer
    directory = Path(tokenizer)
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "tokenizer directory not found", str(directory))
    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


class LengthReward:
    """How close a completion's length ``L`` is to a target ``T``.

    ``L`` is counted in ``unit``: ``"tokens"`` (``tokenizer(text, add_special_tokens=False)``; without a
    tokenizer, the length of the ``completion_ids`` that ``GRPOTrainer`` passes, i.e. the sampled tokens, EOS
    included when generation stopped on it), ``"words"`` (whitespace-separated) or ``"characters"``. The reward
    for ``shape``:

    * ``"linear"``:   ``max(0, 1 - |L - T| / T)``
    * ``"gaussian"``: ``exp(-((L - T) / width)^2 / 2)``, ``width`` defaulting to ``T / 2``
    * ``"cap"``:      ``1 if L <= T else max(0, 1 - (L - T) / T)`` (conciseness: no penalty up to ``T``, 0 from
      ``2T`` on; an empty completion scores 1, so pair it with a correctness condition)

    An empty or ``None`` completion has ``L = 0``.

    Args:
        target: the target length ``T`` (positive).
        unit: ``"tokens"``, ``"words"`` or ``"characters"``; default ``"tokens"`` when a tokenizer is given, else
            ``"words"``.
        shape: ``"linear"``, ``"gaussian"`` or ``"cap"``.
        width: the Gaussian's width (positive); only with ``shape="gaussian"``.
        tokenizer: a Hugging Face tokenizer or a local tokenizer directory; only with ``unit="tokens"``.

    Raises:
        ValueError: invalid parameters; at call time, ``unit="tokens"`` without a tokenizer and without
            ``completion_ids``.
    """

    UNITS = ("tokens", "words", "characters")
    SHAPES = ("linear", "gaussian", "cap")

    def __init__(
        self,
        target: float,
        unit: str | None = None,
        shape: str = "linear",
        width: float | None = None,
        tokenizer: Any = None,
    ):
        self.__name__ = "length"
        self.target = _positive_number(target, "target", self.__name__)
        if unit is None:
            unit = "tokens" if tokenizer is not None else "words"
        self.unit = _choice(unit, self.UNITS, "unit", self.__name__)
        self.shape = _choice(shape, self.SHAPES, "shape", self.__name__)
        if width is not None and shape != "gaussian":
            raise ValueError(f"{self.__name__} reward: width applies only to shape='gaussian', not {shape!r}")
        self.width = self.target / 2 if width is None else _positive_number(width, "width", self.__name__)
        if tokenizer is not None and self.unit != "tokens":
            raise ValueError(f"{self.__name__} reward: a tokenizer is used only with unit='tokens', not {unit!r}")
        self.tokenizer = None if tokenizer is None else _load_tokenizer(tokenizer, self.__name__)

    def _lengths(self, completions: list, completion_ids: Any) -> list[int]:
        texts = [completion_text(c) for c in completions]
        if self.unit == "words":
            return [len(text.split()) for text in texts]
        if self.unit == "characters":
            return [len(text) for text in texts]
        if self.tokenizer is not None:
            return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        if completion_ids is None or len(completion_ids) != len(completions):
            raise ValueError(
                f"{self.__name__} reward: unit='tokens' without a tokenizer counts the completion_ids passed by "
                "GRPOTrainer, and none (or not one per completion) were passed; give tokenizer=..."
            )
        return [len(ids) for ids in completion_ids]

    def score(self, length: float) -> float:
        """The reward for a completion of ``length`` units (the formula of ``shape``)."""
        deviation = length - self.target
        if self.shape == "linear":
            return max(0.0, 1.0 - abs(deviation) / self.target)
        if self.shape == "gaussian":
            return math.exp(-((deviation / self.width) ** 2) / 2)
        return 1.0 if deviation <= 0 else max(0.0, 1.0 - deviation / self.target)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [self.score(length) for length in self._lengths(completions, kwargs.get("completion_ids"))]


def conciseness_reward(target: float, unit: str | None = None, tokenizer: Any = None) -> LengthReward:
    """``LengthReward(target, unit, shape="cap", tokenizer=tokenizer)`` named ``"conciseness"``:
    ``1 if L <= T else max(0, 1 - (L - T) / T)``."""
    reward = LengthReward(target, unit=unit, shape="cap", tokenizer=tokenizer)
    reward.__name__ = "conciseness"
    return reward


def _keyword_list(value: Any, parameter: str, reward_name: str) -> tuple[str, ...]:
    """Keywords as a tuple; a single string is one keyword."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(word, str) and word.strip() for word in value):
        raise ValueError(f"{reward_name} reward: {parameter} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


class KeywordReward:
    """The fraction of keyword conditions a completion satisfies.

    ``reward = (number of required keywords present + number of forbidden keywords absent)
    / (len(required) + len(forbidden))``. A keyword is present when it occurs as a substring, or with
    ``whole_words=True`` when it occurs with no word character (letter, digit, ``_``) directly before or after
    it. Matching ignores case unless ``case_sensitive=True``. An empty completion satisfies exactly the
    forbidden conditions.

    Args:
        required: keywords that should occur (a list, or one string).
        forbidden: keywords that should not occur (a list, or one string).
        case_sensitive: match case exactly.
        whole_words: match whole words only.

    Raises:
        ValueError: no keyword at all, or a keyword that is not a non-empty string.
    """

    def __init__(
        self,
        required: Sequence[str] | str | None = None,
        forbidden: Sequence[str] | str | None = None,
        case_sensitive: bool = False,
        whole_words: bool = False,
    ):
        self.__name__ = "keyword"
        self.required = _keyword_list(required, "required", self.__name__)
        self.forbidden = _keyword_list(forbidden, "forbidden", self.__name__)
        if not self.required and not self.forbidden:
            raise ValueError(f"{self.__name__} reward: give at least one required or forbidden keyword")
        self.case_sensitive = _flag(case_sensitive, "case_sensitive", self.__name__)
        self.whole_words = _flag(whole_words, "whole_words", self.__name__)
        self._required = [self._pattern(word) for word in self.required]
        self._forbidden = [self._pattern(word) for word in self.forbidden]

    def _pattern(self, word: str) -> re.Pattern:
        escaped = re.escape(word)
        if self.whole_words:
            escaped = rf"(?<!\w){escaped}(?!\w)"
        return re.compile(escaped, 0 if self.case_sensitive else re.IGNORECASE)

    def _score(self, text: str) -> float:
        satisfied = sum(pattern.search(text) is not None for pattern in self._required)
        satisfied += sum(pattern.search(text) is None for pattern in self._forbidden)
        return satisfied / (len(self._required) + len(self._forbidden))

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [self._score(completion_text(c)) for c in completions]


class SentimentReward:
    """Sentiment of the completion by VADER (Hutto and Gilbert 2014, ``vaderSentiment``).

    ``compound = SentimentIntensityAnalyzer().polarity_scores(text)["compound"]`` in ``[-1, 1]`` (negative to
    positive); the reward is ``compound``, or ``(compound + 1) / 2`` in ``[0, 1]`` with ``unit_interval=True``.
    An empty or whitespace-only completion has no sentiment: ``None``.

    Args:
        unit_interval: map the score to ``[0, 1]``.
    """

    def __init__(self, unit_interval: bool = False):
        self.__name__ = "sentiment"
        self.unit_interval = _flag(unit_interval, "unit_interval", self.__name__)
        self.analyzer = SentimentIntensityAnalyzer()

    def _score(self, text: str) -> float | None:
        if not text.strip():
            return None
        compound = float(self.analyzer.polarity_scores(text)["compound"])
        return (compound + 1) / 2 if self.unit_interval else compound

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [self._score(completion_text(c)) for c in completions]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _SequenceClassifier:
    """A Hugging Face sequence-classification model, local or on the Hub, run in batches under ``torch.no_grad``.

    Shared by :class:`RewardModel` and :class:`PairClassifier`: loading (:func:`paretoalign.models.load_pretrained`),
    the pad token (the tokenizer's EOS when it has none; the model's ``pad_token_id`` set to the tokenizer's), the
    device, ``prompt_pattern`` (the text a judge reads of a prompt) and the batched forward pass.
    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        batch_size: int,
        max_length: int,
        device: str | torch.device | None,
        dtype: str | None,
        revision: str | None,
        prompt_pattern: str | None,
        truncation_side: str,
    ):
        self.__name__ = name
        source = resolve_model(path)
        if source.hub_id is None and not source.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "reward model directory not found", str(source.path))
        self.model_name = source.location
        self.batch_size = _positive_integer(batch_size, "batch_size", name)
        self.max_length = _positive_integer(max_length, "max_length", name)
        if dtype is not None:
            _choice(dtype, tuple(DTYPES), "dtype", name)
        _choice(truncation_side, ("left", "right"), "truncation_side", name)
        try:
            self.prompt_pattern = re.compile(prompt_pattern) if prompt_pattern is not None else None
        except re.error as error:
            raise ValueError(f"{name} reward: prompt_pattern is not a regular expression ({error})") from error
        if self.prompt_pattern is not None and self.prompt_pattern.groups < 1:
            raise ValueError(f"{name} reward: prompt_pattern needs a group, the part of the prompt the judge reads")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = load_pretrained(AutoTokenizer, source, revision=revision)
        self.model = load_pretrained(
            AutoModelForSequenceClassification, source, revision=revision,
            **({"dtype": DTYPES[dtype]} if dtype is not None else {}),
        )
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{name}: the tokenizer of {self.model_name} has neither a pad nor an EOS token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = truncation_side
        text_config = self.model.config.get_text_config()
        if text_config.pad_token_id is None:
            text_config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval().requires_grad_(False)

    def _label(self, label: int | None, what: str) -> int:
        """A checked logit index; ``None`` needs a model with one label and gives 0."""
        num_labels = self.model.config.num_labels
        if label is None:
            if num_labels != 1:
                raise ValueError(
                    f"{self.__name__}: {self.model_name} has {num_labels} labels; choose the {what} with label_index"
                )
            return 0
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_labels:
            raise ValueError(
                f"{self.__name__}: label_index must be an integer from 0 to {num_labels - 1}, got {label!r}"
            )
        return label

    def passage(self, prompt: Any) -> str:
        """The text of `prompt` a judge reads: the first group of ``prompt_pattern``'s first match in the prompt text
        (the whole text when there is no pattern or no match)."""
        text = _prompt_text(prompt)
        match = self.prompt_pattern.search(text) if self.prompt_pattern is not None else None
        return text if match is None or match.group(1) is None else match.group(1)

    def logits(self, count: int, encode: Callable[[int, int], dict]) -> torch.Tensor:
        """float32 logits [count, labels] of the batches ``encode(start, stop)`` gives (tokenizer outputs, padded)."""
        rows = []
        with torch.no_grad():
            for start in range(0, count, self.batch_size):
                batch = encode(start, min(start + self.batch_size, count))
                rows.append(self.model(**batch.to(self.device)).logits.float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.model.config.num_labels)

    def _check_lengths(self, prompts: list, completions: list) -> None:
        if len(prompts) != len(completions):
            raise ValueError(f"{self.__name__}: got {len(prompts)} prompts for {len(completions)} completions")


class RewardModel(_SequenceClassifier):
    r"""Scores a completion of a prompt with a Hugging Face sequence-classification model, local or on the Hub.

    The text of a pair is, with ``template``, the template filled in: ``{prompt}`` (the prompt text, or the part
    ``prompt_pattern`` selects), ``{completion}``, ``{bos}`` and ``{eos}`` (the tokenizer's special tokens, empty when
    it has none), stripped of surrounding white space, tokenised with the tokenizer's special tokens. The RACO paper's
    summary-quality judge (``Tristan/gpt2_reward_summarization``) reads ``"{completion} {bos} {prompt}"`` with the
    post stripped of its instructions. Without a template: for a conversational prompt (a message list) and a
    tokenizer with a chat template, ``apply_chat_template(prompt + [{"role": "assistant", "content": completion
    text}], tokenize=False)``, tokenised without adding special tokens (the template writes them); otherwise the
    prompt text (message contents joined by newlines) followed directly by the completion text, tokenised with the
    tokenizer's special tokens. Sequences longer than ``max_length`` tokens lose tokens on ``truncation_side``
    (``left``, the default, keeps the end of the completion). Batches of ``batch_size`` are right-padded and run in
    eval mode; the reward is ``logits[label_index]`` of the model (which pools the last non-padding token).

    Args:
        path: a local model directory (``save_pretrained`` output with its tokenizer), or a Hugging Face Hub id
            ``ORG/NAME`` loaded through the Hugging Face cache (:func:`paretoalign.models.resolve_model`; with
            ``HF_HUB_OFFLINE=1`` only what is cached).
        revision: branch, tag or commit of a Hub model (default: ``main``).
        batch_size: pairs per forward pass.
        max_length: the most tokens of one pair.
        device: where the model runs; default ``"cuda"`` when available, else ``"cpu"``.
        label_index: which logit is the reward; ``None`` needs a model with ``num_labels == 1`` and uses 0.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default the dtype the model was saved in.
        template: the text of a pair, with ``{prompt}``, ``{completion}``, ``{bos}``, ``{eos}`` (see above).
        prompt_pattern: a regular expression whose first group is the part of the prompt text the judge reads
            (``"(Subreddit:[\s\S]*?)\s*(?:Please directly output your summarization\.)?\s*$"``).
        truncation_side: ``left`` or ``right``.

    Raises:
        FileNotFoundError: a local ``path`` that is not a directory, or a Hub id that is neither cached nor
            downloadable (the message names the ``hf download`` command).
        ValueError: invalid parameters, a ``revision`` with a local ``path``, ``label_index`` out of range,
            ``label_index=None`` with several labels, a template with another placeholder, or a tokenizer with
            neither a pad nor an EOS token.
    """

    TEMPLATE_FIELDS = ("prompt", "completion", "bos", "eos")

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 8,
        max_length: int = 1024,
        device: str | torch.device | None = None,
        label_index: int | None = None,
        dtype: str | None = None,
        revision: str | None = None,
        template: str | None = None,
        prompt_pattern: str | None = None,
        truncation_side: str = "left",
    ):
        super().__init__(
            "reward_model", path, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
            revision=revision, prompt_pattern=prompt_pattern, truncation_side=truncation_side,
        )
        self.label_index = self._label(label_index, "reward logit")
        if template is not None:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            unknown = sorted(fields - set(self.TEMPLATE_FIELDS))
            if not isinstance(template, str) or unknown or "completion" not in fields:
                raise ValueError(
                    f"{self.__name__}: template must be a string with {{completion}} and only the placeholders "
                    f"{{{'}, {'.join(self.TEMPLATE_FIELDS)}}}; got {template!r}"
                )
        self.template = template

    def text(self, prompt: Any, completion: Any) -> tuple[str, bool]:
        """The text the model reads for one pair, and whether the tokenizer adds its special tokens to it."""
        text = completion_text(completion)
        if self.template is not None:
            filled = self.template.format(
                prompt=self.passage(prompt), completion=text, bos=self.tokenizer.bos_token or "",
                eos=self.tokenizer.eos_token or "",
            )
            return filled.strip(), True
        if isinstance(prompt, list) and getattr(self.tokenizer, "chat_template", None):
            messages = [*prompt, {"role": "assistant", "content": text}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False), False
        return self.passage(prompt) + text, True

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        self._check_lengths(prompts, completions)
        ids = []
        for prompt, completion in zip(prompts, completions):
            text, add_special_tokens = self.text(prompt, completion)
            ids.append(self.tokenizer(
                text, add_special_tokens=add_special_tokens, truncation=True, max_length=self.max_length
            )["input_ids"])
        logits = self.logits(len(ids), lambda start, stop: self.tokenizer.pad(
            {"input_ids": ids[start:stop]}, padding_side="right", return_tensors="pt"
        ))
        return logits[:, self.label_index].tolist()


class PairClassifier(_SequenceClassifier):
    """P(label) of a sequence-pair classifier on (completion, prompt): a judge such as the RACO paper's faithfulness
    detector (``CogComp/bart-faithful-summary-detector``, label 1 = faithful, read on (summary, post)).

    The reward of a completion is ``softmax(logits)[label_index]`` of the model on the tokenizer's sequence pair
    ``(completion text, passage)`` (``completion_first=False`` swaps them), where the passage is the prompt text or the
    part ``prompt_pattern`` selects; the pair is truncated to ``max_length`` tokens longest-first, batched and padded
    by the tokenizer. Other arguments as :class:`RewardModel`.

    Raises:
        ValueError: as :class:`RewardModel`, and a model with fewer than two labels.
    """

    def __init__(
        self,
        path: str | Path,
        label_index: int = 1,
        batch_size: int = 8,
        max_length: int = 1024,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        revision: str | None = None,
        prompt_pattern: str | None = None,
        completion_first: bool = True,
    ):
        super().__init__(
            "pair_classifier", path, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
            revision=revision, prompt_pattern=prompt_pattern, truncation_side="right",
        )
        if self.model.config.num_labels < 2:
            raise ValueError(
                f"{self.__name__}: {self.model_name} has one label; a probability needs a classifier with two or more"
            )
        self.label_index = self._label(label_index, "class")
        self.completion_first = bool(completion_first)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        self._check_lengths(prompts, completions)
        texts = [completion_text(completion) for completion in completions]
        passages = [self.passage(prompt) for prompt in prompts]
        first, second = (texts, passages) if self.completion_first else (passages, texts)
        logits = self.logits(len(texts), lambda start, stop: self.tokenizer(
            first[start:stop], second[start:stop], padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        ))
        return torch.softmax(logits, dim=-1)[:, self.label_index].tolist()


REWARDS: dict[str, Callable[..., RewardFunction]] = {
    "answer": AnswerReward,
    "format": FormatReward,
    "length": LengthReward,
    "conciseness": conciseness_reward,
    "keyword": KeywordReward,
    "sentiment": SentimentReward,
    "reward_model": RewardModel,
    "pair_classifier": PairClassifier,
}
"""Built-in rewards by the name configs use; :func:`get_reward` builds them."""


def get_reward(name: str, **params: Any) -> RewardFunction:
    """Build the built-in reward ``name`` (a key of :data:`REWARDS`) with keyword parameters ``params``.

    Example: ``get_reward("length", target=40, unit="words", shape="cap")``, as a YAML config writes
    ``{name: length, target: 40, unit: words, shape: cap}``.

    Raises:
        ValueError: an unknown name (listing the valid ones), an unknown or missing parameter (listing the
            accepted ones), or an invalid parameter value.
    """
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {', '.join(REWARDS)}")
    factory = REWARDS[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(**params)
    except TypeError as error:
        raise ValueError(
            f"reward {name!r}: {error}; its parameters are {', '.join(signature.parameters)}"
        ) from error
    return factory(**params)
