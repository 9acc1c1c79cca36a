"""Prompts for generation and online RL: one loader for every prompt source, and the generated prompt sets.

:func:`load_prompts` reads prompts from a generated set (``builtin:arithmetic``, :func:`arithmetic_word_problems`),
data shipped with paretoalign (``builtin:NAME``), a text file (one prompt a line), a file of rows with a ``prompt``
column (JSON Lines, JSON, Parquet, a saved dataset, a Hugging Face dataset) or the prompt column of a mapped source or
a preset (:mod:`paretoalign.data.columns`), and returns them as a :class:`datasets.Dataset` whose other columns (an
``answer``, say) travel with the prompts to the reward functions.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from paretoalign.data.columns import (
    SOURCE_KEYS,
    MappedSource,
    is_single_source,
    iter_rows,
    resolve_data_source,
    row_location,
)
from paretoalign.data.files import (
    BUILTIN_PREFIX,
    HubDataset,
    PreferenceDataError,
    RowLocation,
    is_blank,
    read_messages,
    type_name,
)

__all__ = [
    "ARITHMETIC_SYSTEM_PROMPT", "BUILTIN_PROMPT_SETS", "PROMPT_FEATURES", "arithmetic_word_problems", "load_prompts",
]

BUILTIN_PROMPT_SETS = ("arithmetic",)
"""Generated prompt sets, named ``builtin:NAME`` in :func:`load_prompts`."""


ARITHMETIC_SYSTEM_PROMPT = (
    "Solve the arithmetic word problem. Think it through inside <think></think>, then write only the final "
    "number inside <answer></answer>, for example: <think>reasoning</think> <answer>number</answer>"
)
"""System message of :func:`arithmetic_word_problems`."""

PROMPT_FEATURES = datasets.Features(
    {
        "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "answer": datasets.Value("string"),
    }
)
"""Columns and types of the dataset returned by :func:`arithmetic_word_problems`."""

_PEOPLE = (
    ("Ana", "she", "her"),
    ("Ben", "he", "him"),
    ("Chloe", "she", "her"),
    ("David", "he", "him"),
    ("Emma", "she", "her"),
    ("Farid", "he", "him"),
    ("Grace", "she", "her"),
    ("Hugo", "he", "him"),
)
"""(name, subject pronoun, object pronoun) of the people in the problems."""

_ITEMS = (
    ("apple", "apples", "basket", "baskets"),
    ("book", "books", "shelf", "shelves"),
    ("coin", "coins", "jar", "jars"),
)
"""(singular, plural, container, containers) of the things counted in the problems."""

MAX_FACTOR = 10
"""Largest factor of a multiplication in :func:`arithmetic_word_problems`."""


def _uniform_index(rng, count: int) -> int:
    """An index in ``0..count-1`` from ``rng.random()``, whose sequence Python keeps the same across versions."""
    return min(int(rng.random() * count), count - 1)


def _uniform_integer(rng, low: int, high: int) -> int:
    """An integer in ``low..high`` (inclusive)."""
    return low + _uniform_index(rng, high - low + 1)


def _counted(count: int, item: tuple[str, str, str, str]) -> str:
    return f"{count} {item[0] if count == 1 else item[1]}"


def _arithmetic_problem(rng, steps: int, max_operand: int) -> tuple[str, int]:
    """One word problem with ``steps`` operations and its answer."""
    name, subject, object_ = _PEOPLE[_uniform_index(rng, len(_PEOPLE))]
    friends = [person[0] for person in _PEOPLE if person[0] != name]
    friend_name = friends[_uniform_index(rng, len(friends))]
    item = _ITEMS[_uniform_index(rng, len(_ITEMS))]
    operations = [("add", "subtract", "multiply")[_uniform_index(rng, 3)]]
    operations += [("add", "subtract")[_uniform_index(rng, 2)] for _ in range(steps - 1)]
    if operations[0] == "multiply":
        containers = _uniform_integer(rng, 2, min(max_operand, MAX_FACTOR))
        per_container = _uniform_integer(rng, 2, min(max_operand, MAX_FACTOR))
        total = containers * per_container
        sentences = [f"{name} has {containers} {item[3]} with {_counted(per_container, item)} in each {item[2]}."]
        operations = operations[1:]
    else:
        total = _uniform_integer(rng, 1, max_operand)
        sentences = [f"{name} has {_counted(total, item)}."]
    for operation in operations:
        if operation == "add" or total == 0:
            amount = _uniform_integer(rng, 1, max_operand)
            total += amount
            if _uniform_index(rng, 2):
                sentences.append(f"{friend_name} gives {object_} {_counted(amount, item)}.")
            else:
                sentences.append(f"{subject.capitalize()} finds {amount} more.")
        else:
            amount = _uniform_integer(rng, 1, min(total, max_operand))
            total -= amount
            if _uniform_index(rng, 2):
                sentences.append(f"{subject.capitalize()} gives {_counted(amount, item)} to {friend_name}.")
            else:
                sentences.append(f"{subject.capitalize()} loses {amount}.")
    question = f"How many {item[1]} does {name} have {'in total' if not operations else 'now'}?"
    return " ".join(sentences + [question]), total


def arithmetic_word_problems(
    num_problems: int,
    seed: int = 0,
    max_operand: int = 20,
    steps: int = 1,
    system_prompt: str = ARITHMETIC_SYSTEM_PROMPT,
) -> datasets.Dataset:
    """Generated arithmetic word problems with exact answers, as prompts for online RL with an answer reward.

    Each problem counts apples, books or coins of one person through ``steps`` operations. The first operation
    is addition, subtraction or multiplication (equally likely); a second one is addition or subtraction:

    - addition: ``"Ana has 5 apples. Ben gives her 3 apples. How many apples does Ana have now?"`` (8);
    - subtraction, never below zero (a subtraction from zero becomes an addition): ``"Ben has 9 coins. He loses
      4. How many coins does Ben have now?"`` (5);
    - multiplication of factors from 2 to ``min(max_operand, 10)``: ``"Emma has 3 shelves with 4 books in each
      shelf. How many books does Emma have in total?"`` (12).

    Start amounts and added or subtracted amounts are integers from 1 to ``max_operand``. Problems depend only
    on ``seed`` (drawn from ``random.Random(seed).random()``, whose sequence is the same on every Python
    version).

    Args:
        num_problems: how many problems (at least 1).
        seed: the random seed.
        max_operand: the largest operand (at least 2).
        steps: operations per problem, 1 or 2.
        system_prompt: the system message; by default it asks for reasoning in ``<think></think>`` and only the
            number in ``<answer></answer>``.

    Returns:
        A :class:`datasets.Dataset` with columns ``prompt`` (``[{"role": "system", ...}, {"role": "user",
        "content": problem}]``) and ``answer`` (the exact result as a string, e.g. ``"17"``).

    Raises:
        ValueError: ``num_problems < 1``, ``max_operand < 2``, ``steps`` not 1 or 2, or a non-string
            ``system_prompt``.
    """
    for name, value, minimum in (("num_problems", num_problems, 1), ("max_operand", max_operand, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if steps not in (1, 2) or isinstance(steps, bool):
        raise ValueError(f"steps must be 1 or 2, got {steps!r}")
    if not isinstance(system_prompt, str):
        raise ValueError(f"system_prompt must be a string, got {type_name(system_prompt)}")
    rng = random.Random(seed)
    columns: dict[str, list] = {"prompt": [], "answer": []}
    for _ in range(num_problems):
        problem, answer = _arithmetic_problem(rng, steps, max_operand)
        columns["prompt"].append([{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}])
        columns["answer"].append(str(answer))
    return datasets.Dataset.from_dict(columns, features=PROMPT_FEATURES)


def _read_prompt(row: Any, where: RowLocation, kind_so_far: str | None) -> tuple[str | list[dict], str]:
    """Validate a prompt row's ``prompt``; return it and its kind (``"string"`` or ``"messages"``)."""
    if not isinstance(row, Mapping):
        raise where.error(f"expected a JSON object, got {type_name(row)}")
    if "prompt" not in row:
        raise where.error("missing field", "prompt")
    value = row["prompt"]
    if isinstance(value, str):
        if not value.strip():
            raise where.error("empty or whitespace-only prompt", "prompt")
        prompt, kind = value, "string"
    elif isinstance(value, list):
        prompt, kind = read_messages(value, "prompt", where), "messages"
        if not prompt or is_blank(prompt):
            raise where.error("empty message list or messages without content", "prompt")
    else:
        raise where.error(f"expected a string or a list of messages, got {type_name(value)}", "prompt")
    if kind_so_far is not None and kind != kind_so_far:
        raise where.error(f"a {kind} prompt in a file whose earlier prompts are {kind_so_far}s", "prompt")
    return prompt, kind


def _read_prompt_rows(path: Path | HubDataset | MappedSource) -> datasets.Dataset:
    """The validated rows of a JSON Lines / JSON / Parquet file, a saved or a Hugging Face dataset, or the prompt rows
    of a mapped source (see :func:`load_prompts`)."""
    unit, rows = iter_rows(path, prompts=True)
    columns: dict[str, list] = {}
    prompt_kind = None
    row_count = 0
    for line, row in rows:
        prompt, prompt_kind = _read_prompt(row, row_location(str(path), line, unit, row), prompt_kind)
        for name in row:
            columns.setdefault(name, [None] * row_count)
        for name, values in columns.items():
            values.append(prompt if name == "prompt" else row.get(name))
        row_count += 1
    if not row_count:
        raise PreferenceDataError("contains no rows", path)
    try:
        return datasets.Dataset.from_dict(columns)
    except (TypeError, ValueError) as error:  # pyarrow's ArrowTypeError and ArrowInvalid derive from these
        raise PreferenceDataError(
            f"the values of this column do not share one type ({error}); write them all with one type, "
            "for example every answer as a string",
            path,
            field=_first_unstorable_column(columns),
            unit=unit,
        ) from error


def _first_unstorable_column(columns: dict[str, list]) -> str | None:
    """The first column that cannot be stored alone as a dataset column."""
    for name, values in columns.items():
        try:
            datasets.Dataset.from_dict({name: values})
        except (TypeError, ValueError):
            return name
    return None


def _read_text_prompts(path: Path) -> datasets.Dataset:
    """One prompt per non-blank line of a UTF-8 text file, stripped of surrounding whitespace."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PreferenceDataError(f"not valid UTF-8 ({error.reason})", path) from error
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise PreferenceDataError("contains no prompts (every line is blank)", path)
    return datasets.Dataset.from_dict({"prompt": prompts})


def _prompt_path(source: str | os.PathLike, generated_sets: list[str]) -> Path:
    """The existing path of a prompt file or of shipped data ``builtin:NAME``."""
    try:
        path = Path(resolve_data_source(source))
    except FileNotFoundError as error:
        message = f"{error.strerror}; generated prompt sets: {', '.join(generated_sets)}"
        raise FileNotFoundError(error.errno, message, error.filename) from error
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "prompt file not found", str(path))
    return path


def load_prompts(
    source: str | os.PathLike | HubDataset | MappedSource | Mapping[str, Any],
    *,
    limit: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Load and validate prompts, with the other columns of their source, for generation and online RL.

    Args:
        source: one of

            - ``builtin:arithmetic``: ``limit`` generated word problems, :func:`arithmetic_word_problems` with
              ``seed`` (columns ``prompt``, message lists, and ``answer``);
            - ``builtin:NAME``: data shipped with paretoalign
              (:func:`~paretoalign.data.files.resolve_data_source`), e.g. ``builtin:hh-rlhf/helpful/test.jsonl``,
              read as the files below;
            - a ``.txt`` file: one prompt per non-blank line, stripped (column ``prompt`` only);
            - a ``.jsonl`` file, a ``.json`` file (a JSON array, or JSON Lines when it does not start with ``[``),
              a ``.parquet`` file, or a directory written by ``datasets.Dataset.save_to_disk``. Rows hold a
              ``prompt`` (a non-blank string, or a non-empty list of ``{"role", "content"}`` messages; all rows
              of one file the same kind) and any other columns, passed through unchanged (for example ``answer``
              for an answer reward). A column missing from some rows is ``None`` there;
            - a Hugging Face dataset, :class:`~paretoalign.data.files.HubDataset` or its mapping ``{dataset: ORG/NAME
              or a local clone, name, split, revision, data_dir}``: its rows, numbered from 0, read as the rows
              above; ``{path: FILE}``: the file;
            - either with ``columns: {...}``, or a preset ``{preset: NAME, split, ...}``
              (:mod:`paretoalign.data.columns`): one prompt per source row (duplicates kept), from the mapping's
              ``prompt`` column, or the prompt part of its transcripts or of its first full conversation; no other
              column.
        limit: keep the first ``limit`` rows (at least 1); required for a generated set, where it is the number
            of problems. ``None`` keeps every row of a file.
        seed: the seed of a generated set; files are read in order, whatever the seed.

    Returns:
        A :class:`datasets.Dataset` with the rows in source order and the columns in order of first appearance.

    Raises:
        FileNotFoundError: ``source`` does not exist, or names no shipped data (listing what is shipped and the
            generated sets).
        PreferenceDataError: a ``ValueError`` naming file (or dataset, config and split), line (JSON Lines) or row
            (other formats) and field, for a dataset that cannot be loaded,
            for malformed JSON, a row that is not an object, a missing, blank or malformed ``prompt``, string and
            message prompts mixed in one file, a source without prompts, an unsupported file type, or columns
            whose values cannot form one column type.
        ValueError: ``limit`` is not a positive integer, or is missing for a generated set, or a source mapping is
            malformed (an unknown key, none of ``dataset``, ``path``, ``preset``, a bad column mapping or preset).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    generated_sets = [BUILTIN_PREFIX + name for name in BUILTIN_PROMPT_SETS]
    if source in generated_sets:
        if limit is None:
            raise ValueError(
                f"{source} generates its prompts: say how many (limit=N; in a config max_prompts or max_eval_prompts)"
            )
        return arithmetic_word_problems(limit, seed=seed)
    if isinstance(source, Mapping):
        if not is_single_source(source):
            raise ValueError(
                f"the prompt source {dict(source)} has no {', '.join(map(repr, SOURCE_KEYS))}: a prompt source "
                "mapping names one dataset, file or preset"
            )
        source = resolve_data_source(source)
    if isinstance(source, (HubDataset, MappedSource)):
        rows = _read_prompt_rows(source)
    else:
        path = _prompt_path(source, generated_sets)
        rows = _read_text_prompts(path) if path.is_file() and path.suffix.lower() == ".txt" else _read_prompt_rows(path)
    return rows if limit is None else rows.select(range(min(limit, len(rows))))
