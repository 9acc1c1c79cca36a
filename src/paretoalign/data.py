"""Preference data: loading, validation, tokenisation, collation and objective-balanced sampling.

Both real-world shapes of preference data (DESIGN.md, "Preference data") load into one representation:

1. one dataset per objective, ``{objective_name: path}``, rows ``{"prompt", "chosen", "rejected"}``
   (TRL's explicit-prompt preference format);
2. multi-labelled pairs, one path, rows
   ``{"prompt", "response_0", "response_1", "labels": {"helpful": 0, "harmless": 1}}`` where each label is
   the index of the preferred response and a missing or null label means "no opinion".

:func:`load_preferences` returns a :class:`datasets.Dataset` with columns ``prompt``, ``response_a``,
``response_b`` (strings) and ``labels`` (one int per objective: +1 = response_a preferred, -1 = response_b
preferred, 0 = no label), i.e. the rows of the label matrix ``S``. Prompts and responses may also be
conversational message lists; they are rendered to text with the tokenizer's chat template.
:func:`tokenize_preferences` turns those rows into token ids, :class:`PreferenceCollator` pads them into
one batch of ``2N`` sequences, and :class:`ObjectiveBalancedSampler` fixes how many pairs of each objective
a batch holds when every pair carries a single label.

Every problem with the input is reported as a :class:`PreferenceDataError` naming the file, the line (or
row) and the field at fault; rows that are dropped (identical responses, no label at all) are counted in
a :class:`LoadReport`, warned about and logged, never dropped silently.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "PreferenceDataError",
    "LoadReport",
    "TokenizeReport",
    "load_preferences",
    "load_preferences_with_report",
    "tokenize_preferences",
    "PreferenceCollator",
    "ObjectiveBalancedSampler",
    "builtin_data_path",
    "arithmetic_word_problems",
    "load_prompts",
    "prompt_token_ids",
]

logger = logging.getLogger(__name__)

PREFERENCE_FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "response_a": datasets.Value("string"),
        "response_b": datasets.Value("string"),
        "labels": datasets.List(datasets.Value("int64")),
    }
)
"""Columns and types of the dataset returned by :func:`load_preferences`."""

DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
"""File formats :func:`load_preferences` reads, besides directories written by ``Dataset.save_to_disk``."""

ONE_OBJECTIVE_FIELDS = ("chosen", "rejected")
MULTI_LABEL_FIELDS = ("response_0", "response_1")

MAX_LINES_IN_WARNING = 5
"""How many offending line numbers a warning about dropped rows lists before it only counts."""


class PreferenceDataError(ValueError):
    """Bad preference data, located by file, line (or row) and field.

    Attributes:
        problem: what is wrong, without the location.
        path: the file or directory at fault, or ``None`` for an in-memory dataset.
        line: 1-based line number for JSON Lines files and JSON syntax errors, otherwise the 1-based row
            number (row index + 1); ``None`` when the problem is not tied to one row.
        field: the field at fault (``"labels.harmless"`` for one label, ``"prompt[2].role"`` for a message),
            or ``None`` when the whole row or file is at fault.
        unit: ``"line"`` or ``"row"``, the word the message uses for ``line``.
    """

    def __init__(
        self,
        problem: str,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field
        self.unit = unit
        super().__init__(self._message())

    def _message(self) -> str:
        location = self.path if self.path is not None else "dataset"
        if self.line is not None:
            location += f", {self.unit} {self.line}"
        if self.field is not None:
            location += f", field {self.field!r}"
        return f"{location}: {self.problem}"

    def __reduce__(self):
        return (type(self), (self.problem, self.path, self.line, self.field, self.unit))


@dataclass(frozen=True)
class _Location:
    """Where a row came from; builds errors that name it."""

    path: str | None
    line: int | None
    unit: str

    def error(self, problem: str, field: str | None = None) -> PreferenceDataError:
        return PreferenceDataError(problem, self.path, self.line, field, self.unit)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_preferences_with_report` read, kept and dropped.

    Attributes:
        sources: the files or directories read, in order.
        rows_read: rows found in all sources (blank JSON Lines lines are not rows).
        rows_kept: rows in the returned dataset.
        dropped_identical: rows dropped because both responses are identical (``drop_identical=True``).
        kept_identical: rows kept although both responses are identical (``drop_identical=False``).
        dropped_unlabelled: multi-label rows dropped because every label is null or missing.
        labelled_rows: per objective (in objective order), kept rows with a non-zero label.
    """

    sources: tuple[str, ...]
    rows_read: int
    rows_kept: int
    dropped_identical: int
    kept_identical: int
    dropped_unlabelled: int
    labelled_rows: dict[str, int]

    def summary(self) -> str:
        """One line for logs: rows kept and dropped, labelled rows per objective."""
        labelled = ", ".join(f"{name}: {count}" for name, count in self.labelled_rows.items())
        text = (
            f"preference data from {', '.join(self.sources)}: read {self.rows_read} rows, kept {self.rows_kept} "
            f"(dropped {self.dropped_identical} with identical responses, "
            f"{self.dropped_unlabelled} without any label); "
            f"labelled rows per objective: {labelled}"
        )
        if self.kept_identical:
            text += f"; {self.kept_identical} kept rows have identical responses"
        return text


@dataclass(frozen=True)
class TokenizeReport:
    """What :func:`tokenize_preferences` did.

    Attributes:
        rows: rows tokenised.
        truncated_rows: rows shortened to fit ``max_length`` (prompt, responses or both).
        max_length_seen: longest ``prompt + longer response`` in tokens before truncation, for choosing
            ``max_length``.
        max_length: the limit applied.
    """

    rows: int
    truncated_rows: int
    max_length_seen: int
    max_length: int

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"tokenised {self.rows} preference rows: {self.truncated_rows} truncated to max_length={self.max_length} "
            f"(longest row before truncation: {self.max_length_seen} tokens)"
        )


# ---------------------------------------------------------------------------------------------------------
# Reading rows from files
# ---------------------------------------------------------------------------------------------------------


def _iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            try:
                text = raw_line.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise PreferenceDataError(f"not valid UTF-8 ({error.reason})", path, line_number) from error
            if not text.strip():
                continue
            try:
                yield line_number, json.loads(text)
            except json.JSONDecodeError as error:
                raise PreferenceDataError(
                    f"malformed JSON: {error.msg} at column {error.colno}", path, line_number
                ) from error


def _iter_json_file(path: Path) -> tuple[str, Iterator[tuple[int, Any]]]:
    """A ``.json`` file holds a JSON array of rows, or JSON Lines when it does not start with ``[``."""
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8-sig", errors="replace").lstrip()
    if not head.startswith("["):
        return "line", _iter_json_lines(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise PreferenceDataError(f"not valid UTF-8 ({error.reason})", path) from error
    except json.JSONDecodeError as error:
        raise PreferenceDataError(f"malformed JSON: {error.msg} at column {error.colno}", path, error.lineno) from error
    return "row", ((index + 1, row) for index, row in enumerate(rows))


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow
    import pyarrow.parquet

    try:
        parquet_file = pyarrow.parquet.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise PreferenceDataError(f"cannot be read as Parquet: {error}", path) from error
    row_number = 0
    for batch in parquet_file.iter_batches():
        for row in batch.to_pylist():
            row_number += 1
            yield row_number, row


def _iter_saved_dataset(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        saved = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise PreferenceDataError(
            f"is a directory but not one written by datasets.Dataset.save_to_disk ({error})", path
        ) from error
    if isinstance(saved, datasets.DatasetDict):
        raise PreferenceDataError(
            f"holds a DatasetDict with splits {list(saved)}; pass the folder of one split, "
            f"e.g. {path / next(iter(saved))}",
            path,
        )
    return ((index + 1, row) for index, row in enumerate(saved))


def _iter_source_rows(path: Path) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The rows of one source as ``(line or row number, row)`` and the word for that number."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "preference data file not found", str(path))
    if path.is_dir():
        return "row", _iter_saved_dataset(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "line", _iter_json_lines(path)
    if suffix == ".json":
        return _iter_json_file(path)
    if suffix == ".parquet":
        return "row", _iter_parquet(path)
    raise PreferenceDataError(
        f"unsupported file type {path.suffix or '(no extension)'!r}; expected one of {', '.join(DATA_FILE_SUFFIXES)} "
        "or a directory written by datasets.Dataset.save_to_disk",
        path,
    )


# ---------------------------------------------------------------------------------------------------------
# Validating and rendering one row
# ---------------------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _messages(value: Any, field: str, where: _Location) -> list[dict]:
    """Validate a conversational message list ``[{"role": str, "content": str | list}, ...]``."""
    if not isinstance(value, list):
        raise where.error(f"expected a list of messages, got {_type_name(value)}", field)
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise where.error(f"expected a message object, got {_type_name(message)}", f"{field}[{index}]")
        for key, expected_types, description in (
            ("role", (str,), "a string"),
            ("content", (str, list), "a string or a list"),
        ):
            if key not in message:
                raise where.error("missing field", f"{field}[{index}].{key}")
            if not isinstance(message[key], expected_types):
                raise where.error(f"expected {description}, got {_type_name(message[key])}", f"{field}[{index}].{key}")
        messages.append(dict(message))
    return messages


def _is_blank(messages: list[dict]) -> bool:
    return all(
        not message["content"].strip() if isinstance(message["content"], str) else not message["content"]
        for message in messages
    )


def _first_difference(left: list, right: list) -> int:
    return next((index for index, (a, b) in enumerate(zip(left, right)) if a != b), min(len(left), len(right)))


def _split_conversation(messages: list[dict], field: str, where: _Location) -> tuple[list[dict], list[dict]]:
    """Split a full conversation into (prompt messages, final run of assistant messages)."""
    start = len(messages)
    while start > 0 and messages[start - 1]["role"] == "assistant":
        start -= 1
    if start == len(messages):
        raise where.error("a conversation without a prompt must end with an assistant message", field)
    if start == 0:
        raise where.error("conversation has no prompt messages before the assistant reply", field)
    return messages[:start], messages[start:]


class _ChatRenderer:
    """Renders conversational rows to text with a tokenizer's chat template."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def _template(self, messages: list[dict], add_generation_prompt: bool, field: str, where: _Location) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as error:  # a template raises whatever its author chose; report it with the row
            raise where.error(f"the chat template cannot render this conversation: {error}", field) from error

    def render(
        self, prompt: list[dict], responses: tuple[list[dict], list[dict]], fields: tuple[str, str], where: _Location
    ) -> tuple[str, str, str]:
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise where.error(
                "conversational rows (message lists) are rendered with a chat template; "
                + ("pass tokenizer=..." if self.tokenizer is None else "the tokenizer given has no chat_template"),
                "prompt",
            )
        prompt_text = self._template(prompt, True, "prompt", where)
        response_texts = []
        for response, field in zip(responses, fields):
            full_text = self._template(prompt + response, False, field, where)
            if not full_text.startswith(prompt_text):
                raise where.error(
                    "the chat template renders the prompt differently when a response follows it, so the "
                    "response text cannot be separated from the prompt text",
                    field,
                )
            response_texts.append(full_text[len(prompt_text) :])
        return prompt_text, response_texts[0], response_texts[1]


def _read_pair(row: Any, fields: tuple[str, str], renderer: _ChatRenderer, where: _Location) -> tuple[str, str, str]:
    """Validate a row's prompt and two responses and return them as texts ``(prompt, response_a, response_b)``.

    String rows are taken as they are. Conversational rows hold message lists: an explicit ``prompt`` with
    responses that are either the reply messages or full conversations starting with the prompt, or no
    ``prompt`` and two full conversations whose messages before the final assistant reply must be equal.
    """
    if not isinstance(row, Mapping):
        raise where.error(f"expected a JSON object, got {_type_name(row)}")
    for field in fields:
        if field not in row:
            raise where.error("missing field", field)
    first, second = row[fields[0]], row[fields[1]]
    if "prompt" not in row:
        if not (isinstance(first, list) and isinstance(second, list)):
            raise where.error("missing field (only conversational rows may leave the prompt implicit)", "prompt")
        conversations = [_messages(value, field, where) for value, field in zip((first, second), fields)]
        (prompt, first_reply), (second_prompt, second_reply) = (
            _split_conversation(messages, field, where) for messages, field in zip(conversations, fields)
        )
        if prompt != second_prompt:
            raise where.error(
                f"the prompt part differs from that of {fields[0]!r} "
                f"(first difference at message {_first_difference(prompt, second_prompt)})",
                fields[1],
            )
        replies = (first_reply, second_reply)
    elif isinstance(row["prompt"], str):
        for value, field in zip((first, second), fields):
            if not isinstance(value, str):
                raise where.error(f"expected a string like the prompt, got {_type_name(value)}", field)
            if not value.strip():
                raise where.error("empty or whitespace-only response", field)
        return row["prompt"], first, second
    elif isinstance(row["prompt"], list):
        prompt = _messages(row["prompt"], "prompt", where)
        if not prompt:
            raise where.error("empty message list", "prompt")
        replies = []
        for value, field in zip((first, second), fields):
            if not isinstance(value, list):
                raise where.error(f"expected a list of messages like the prompt, got {_type_name(value)}", field)
            messages = _messages(value, field, where)
            if messages and messages[0]["role"] != "assistant":
                if messages[: len(prompt)] != prompt:
                    raise where.error(
                        "a full conversation must start with the prompt messages "
                        f"(first difference at message {_first_difference(messages, prompt)})",
                        field,
                    )
                messages = messages[len(prompt) :]
            replies.append(messages)
    else:
        raise where.error(f"expected a string or a list of messages, got {_type_name(row['prompt'])}", "prompt")
    for reply, field in zip(replies, fields):
        if _is_blank(reply):
            raise where.error("empty or whitespace-only response", field)
    return renderer.render(prompt, tuple(replies), fields, where)


def _read_labels(row: Mapping, known_objectives: Sequence[str] | None, where: _Location) -> dict[str, int]:
    """Validate a multi-label row's ``labels`` and return ``{name: +1 | -1 | 0}`` for every name it lists."""
    if "labels" not in row:
        raise where.error("missing field", "labels")
    labels = row["labels"]
    if not isinstance(labels, Mapping):
        raise where.error(
            f"expected an object mapping objective names to 0, 1 or null, got {_type_name(labels)}", "labels"
        )
    signs = {}
    for name, value in labels.items():
        field = f"labels.{name}"
        if known_objectives is not None and name not in known_objectives:
            raise where.error(f"unknown objective {name!r}; known objectives: {list(known_objectives)}", field)
        if value is None:
            signs[name] = 0
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in (0, 1):
            signs[name] = 1 if value == 0 else -1
        else:
            raise where.error(f"a label must be 0, 1 or null (index of the preferred response), got {value!r}", field)
    return signs


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Counts:
    rows_read: int = 0
    dropped_identical: int = 0
    kept_identical: int = 0
    dropped_unlabelled: int = 0


def _line_list(lines: list[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:MAX_LINES_IN_WARNING])
    return shown + (", ..." if len(lines) > MAX_LINES_IN_WARNING else "")


def _warn_dropped(path: Path, unit: str, identical: list[int], unlabelled: list[int], dropping_identical: bool):
    if identical:
        action = "dropped" if dropping_identical else "kept (drop_identical=False)"
        warnings.warn(
            f"{path}: {action} {len(identical)} pair(s) with identical responses ({unit}s {_line_list(identical)})",
            stacklevel=4,
        )
    if unlabelled:
        warnings.warn(
            f"{path}: dropped {len(unlabelled)} row(s) whose labels are all null or missing "
            f"({unit}s {_line_list(unlabelled)})",
            stacklevel=4,
        )


def _objective_list(objectives: Sequence[str] | None) -> list[str] | None:
    if objectives is None:
        return None
    if isinstance(objectives, str) or not all(isinstance(name, str) and name for name in objectives):
        raise ValueError(f"objectives must be a list of non-empty objective names, got {objectives!r}")
    names = list(objectives)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"objectives lists {duplicates} more than once")
    if not names:
        raise ValueError("objectives must name at least one objective")
    return names


def _skip_identical(
    response_a: str, response_b: str, line: int, identical_lines: list[int], drop_identical: bool, counts: _Counts
) -> bool:
    """Count a pair with identical responses; True when it is to be dropped."""
    if response_a != response_b:
        return False
    identical_lines.append(line)
    if drop_identical:
        counts.dropped_identical += 1
        return True
    counts.kept_identical += 1
    return False


def _load_one_objective_file(
    path: Path,
    unit: str,
    rows: Iterator[tuple[int, Any]],
    objective_index: int,
    num_objectives: int,
    renderer: _ChatRenderer,
    drop_identical: bool,
    columns: dict[str, list],
    counts: _Counts,
) -> None:
    """Append the rows of one ``{prompt, chosen, rejected}`` source, labelled +1 for ``objective_index``."""
    label = [0] * num_objectives
    label[objective_index] = 1
    identical_lines = []
    rows_before = counts.rows_read
    for line, row in rows:
        counts.rows_read += 1
        where = _Location(str(path), line, unit)
        prompt, response_a, response_b = _read_pair(row, ONE_OBJECTIVE_FIELDS, renderer, where)
        if _skip_identical(response_a, response_b, line, identical_lines, drop_identical, counts):
            continue
        _append(columns, prompt, response_a, response_b, list(label))
    if counts.rows_read == rows_before:
        raise PreferenceDataError("contains no rows", path)
    _warn_dropped(path, unit, identical_lines, [], drop_identical)


def _load_multi_label_file(
    path: Path,
    unit: str,
    rows: Iterator[tuple[int, Any]],
    known_objectives: list[str] | None,
    renderer: _ChatRenderer,
    drop_identical: bool,
    counts: _Counts,
) -> tuple[dict[str, list], list[str]]:
    """Read a ``{prompt, response_0, response_1, labels}`` source; objectives in first-appearance order unless known."""
    names: dict[str, None] = dict.fromkeys(known_objectives or [])
    kept: list[tuple[str, str, str, dict[str, int]]] = []
    identical_lines, unlabelled_lines = [], []
    for line, row in rows:
        counts.rows_read += 1
        where = _Location(str(path), line, unit)
        prompt, response_a, response_b = _read_pair(row, MULTI_LABEL_FIELDS, renderer, where)
        signs = _read_labels(row, known_objectives, where)
        names.update(dict.fromkeys(signs))
        if not any(signs.values()):
            unlabelled_lines.append(line)
            counts.dropped_unlabelled += 1
            continue
        if _skip_identical(response_a, response_b, line, identical_lines, drop_identical, counts):
            continue
        kept.append((prompt, response_a, response_b, signs))
    _warn_dropped(path, unit, identical_lines, unlabelled_lines, drop_identical)
    objective_names = list(names)
    columns = _empty_columns()
    for prompt, response_a, response_b, signs in kept:
        _append(columns, prompt, response_a, response_b, [signs.get(name, 0) for name in objective_names])
    return columns, objective_names


def _empty_columns() -> dict[str, list]:
    return {name: [] for name in PREFERENCE_FEATURES}


def _append(columns: dict[str, list], prompt: str, response_a: str, response_b: str, labels: list[int]) -> None:
    columns["prompt"].append(prompt)
    columns["response_a"].append(response_a)
    columns["response_b"].append(response_b)
    columns["labels"].append(labels)


def load_preferences_with_report(
    source: str | os.PathLike | Mapping[str, str | os.PathLike],
    objectives: Sequence[str] | None = None,
    tokenizer: Any = None,
    drop_identical: bool = True,
) -> tuple[datasets.Dataset, list[str], LoadReport]:
    """Load preference pairs as in :func:`load_preferences`, and also return a :class:`LoadReport`."""
    known_objectives = _objective_list(objectives)
    renderer = _ChatRenderer(tokenizer)
    counts = _Counts()
    if isinstance(source, Mapping):
        if not source:
            raise ValueError("source maps no objective to a file; give at least one {objective_name: path}")
        for name in source:
            if not isinstance(name, str) or not name:
                raise ValueError(f"objective names must be non-empty strings, got {name!r}")
        if known_objectives is not None and set(known_objectives) != set(source):
            raise ValueError(
                f"objectives {known_objectives} must name exactly the objectives of the source {list(source)}"
            )
        objective_names = known_objectives or list(source)
        paths = [Path(source[name]) for name in objective_names]
        columns = _empty_columns()
        for index, path in enumerate(paths):
            unit, rows = _iter_source_rows(path)
            _load_one_objective_file(
                path, unit, rows, index, len(objective_names), renderer, drop_identical, columns, counts
            )
    else:
        path = Path(source)
        paths = [path]
        unit, rows = _iter_source_rows(path)
        first = next(rows, None)
        if first is None:
            raise PreferenceDataError("contains no rows", path)
        rows = itertools.chain([first], rows)
        first_row = first[1]
        if (
            isinstance(first_row, Mapping)
            and "labels" not in first_row
            and any(f in first_row for f in ONE_OBJECTIVE_FIELDS)
        ):
            if known_objectives is None or len(known_objectives) != 1:
                raise PreferenceDataError(
                    "rows are in the one-objective format {prompt, chosen, rejected}; name their objective with "
                    "objectives=['name'] or pass {'name': path}",
                    path,
                )
            objective_names = known_objectives
            columns = _empty_columns()
            _load_one_objective_file(path, unit, rows, 0, 1, renderer, drop_identical, columns, counts)
        else:
            columns, objective_names = _load_multi_label_file(
                path, unit, rows, known_objectives, renderer, drop_identical, counts
            )
    labelled_rows = {
        name: sum(1 for labels in columns["labels"] if labels[index] != 0) for index, name in enumerate(objective_names)
    }
    unlabelled_objectives = [name for name, count in labelled_rows.items() if count == 0]
    if unlabelled_objectives:
        first_unlabelled = objective_names.index(unlabelled_objectives[0])
        raise PreferenceDataError(
            f"no labelled rows for objective(s) {', '.join(map(repr, unlabelled_objectives))}",
            paths[first_unlabelled if len(paths) > 1 else 0],
        )
    report = LoadReport(
        sources=tuple(str(path) for path in paths),
        rows_read=counts.rows_read,
        rows_kept=len(columns["prompt"]),
        dropped_identical=counts.dropped_identical,
        kept_identical=counts.kept_identical,
        dropped_unlabelled=counts.dropped_unlabelled,
        labelled_rows=labelled_rows,
    )
    logger.info(report.summary())
    return datasets.Dataset.from_dict(columns, features=PREFERENCE_FEATURES), objective_names, report


def load_preferences(
    source: str | os.PathLike | Mapping[str, str | os.PathLike],
    objectives: Sequence[str] | None = None,
    tokenizer: Any = None,
    drop_identical: bool = True,
) -> tuple[datasets.Dataset, list[str]]:
    """Load and validate preference pairs for K objectives.

    Args:
        source: a path to one file of multi-labelled pairs
            ``{"prompt", "response_0", "response_1", "labels": {name: 0 | 1 | null}}``, or a dict
            ``{objective_name: path}`` of one-objective files with rows ``{"prompt", "chosen", "rejected"}``.
            A single path whose first row has ``chosen`` / ``rejected`` and no ``labels`` is read as one
            objective named by ``objectives`` (which must then hold exactly one name). A path is a ``.jsonl``
            file, a ``.json`` file (a JSON array, or JSON Lines when it does not start with ``[``), a
            ``.parquet`` file, or a directory written by ``datasets.Dataset.save_to_disk``. Fields other than
            the ones named here are ignored.
        objectives: objective names and their order. For a multi-label file, a label name outside this list is
            an error and every listed objective must have a labelled row; by default the objectives are the
            label names in order of first appearance. For a dict source it must list the dict's keys (in any
            order, which becomes the objective order); by default the dict order is used.
        tokenizer: needed only for conversational rows (message lists ``{"role", "content"}``), which are
            rendered with its chat template: the prompt text is the template of the prompt messages with the
            generation prompt, a response text is the template of prompt plus response messages with the
            prompt text removed from its front. Responses may be the reply messages or full conversations that
            start with the prompt; a row without ``prompt`` holds two full conversations whose messages before
            the final run of assistant messages form the prompt and must be equal.
        drop_identical: drop pairs whose two responses are identical (after rendering), with a warning that
            counts them; ``False`` keeps them (they carry no preference signal) and still warns.

    Returns:
        ``(dataset, objective_names)``: a :class:`datasets.Dataset` with columns ``prompt``, ``response_a``,
        ``response_b`` (str) and ``labels`` (K ints: +1 = response_a preferred, -1 = response_b preferred,
        0 = no label), and the K objective names in column order of ``labels``. ``chosen`` becomes
        ``response_a`` (+1 for its objective, 0 for the others; a dict source's files are concatenated in
        objective order); ``response_0`` becomes ``response_a``, so a label 0 becomes +1 and 1 becomes -1.
        Multi-label rows whose labels are all null or missing are dropped with a warning that counts them.
        A one-line summary is logged; :func:`load_preferences_with_report` returns the counts as well.

    Raises:
        FileNotFoundError: a source path does not exist.
        PreferenceDataError: naming file, line (JSON Lines) or row (other formats) and field, for: malformed
            JSON, a missing field, a field of the wrong type, a label other than 0, 1 or null, an unknown
            objective name, an empty or whitespace-only response, prompt parts that differ between the two
            full conversations of a row, a conversational row without a tokenizer with a chat template, an
            empty source, or an objective with no labelled row.
        ValueError: ``objectives`` is malformed or does not match a dict source's keys.
    """
    dataset, objective_names, _ = load_preferences_with_report(source, objectives, tokenizer, drop_identical)
    return dataset, objective_names


# ---------------------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------------------


def prompt_token_ids(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of prompt texts as ``tokenizer(prompt)`` gives them (with the tokenizer's BOS), without a second BOS
    before a BOS the text already starts with (as chat templates render it): how :func:`tokenize_preferences`
    tokenises prompts."""
    bos_id, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    ids = tokenizer(prompts)["input_ids"]
    if bos_id is None or not bos_text:
        return ids
    return [
        row_ids[1:] if row_ids[:2] == [bos_id, bos_id] and prompt.startswith(bos_text) else row_ids
        for row_ids, prompt in zip(ids, prompts)
    ]


class _PairTokenizer:
    """``datasets.map`` function (batched, with indices) that tokenises and fits rows to ``max_length``."""

    def __init__(self, tokenizer: Any, max_length: int, max_prompt_length: int, truncate: bool, add_eos: bool):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.truncate = truncate
        self.add_eos = add_eos

    def _response_ids(self, responses: list[str]) -> list[list[int]]:
        """Token ids without special tokens, then EOS unless the text already ends with it (chat templates)."""
        ids = self.tokenizer(responses, add_special_tokens=False)["input_ids"]
        if not self.add_eos:
            return ids
        eos_id, eos_text = self.tokenizer.eos_token_id, self.tokenizer.eos_token
        return [
            row_ids if response.rstrip().endswith(eos_text) else row_ids + [eos_id]
            for row_ids, response in zip(ids, responses)
        ]

    def _keep_prompt_end(self, prompt_ids: list[int], keep: int) -> list[int]:
        """The last ``keep`` prompt tokens; a leading BOS stays in front and counts towards ``keep``."""
        bos_id = self.tokenizer.bos_token_id
        if bos_id is not None and prompt_ids and prompt_ids[0] == bos_id:
            return [bos_id] + prompt_ids[len(prompt_ids) - (keep - 1) :]
        return prompt_ids[len(prompt_ids) - keep :]

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        prompts = prompt_token_ids(self.tokenizer, batch["prompt"])
        responses_a = self._response_ids(batch["response_a"])
        responses_b = self._response_ids(batch["response_b"])
        output = {name: [] for name in ("prompt_input_ids", "response_a_input_ids", "response_b_input_ids")}
        output["_untruncated_length"], output["_was_truncated"] = [], []
        for index, prompt_ids, a_ids, b_ids in zip(indices, prompts, responses_a, responses_b):
            where = _Location(None, index + 1, "row")
            if not prompt_ids:
                raise where.error("the prompt has no tokens, so the first response token cannot be scored", "prompt")
            longest = max(len(a_ids), len(b_ids))
            length = len(prompt_ids) + longest
            truncated = length > self.max_length
            if truncated:
                if not self.truncate:
                    raise where.error(
                        f"prompt ({len(prompt_ids)} tokens) + response ({longest} tokens) = {length} tokens exceeds "
                        f"max_length={self.max_length}",
                        "response_a" if len(a_ids) >= len(b_ids) else "response_b",
                    )
                prompt_keep = max(self.max_length - longest, self.max_prompt_length)
                if len(prompt_ids) > prompt_keep:
                    prompt_ids = self._keep_prompt_end(prompt_ids, prompt_keep)
                response_budget = self.max_length - len(prompt_ids)
                a_ids, b_ids = a_ids[:response_budget], b_ids[:response_budget]
            for field, ids in (("response_a", a_ids), ("response_b", b_ids)):
                if not ids:
                    raise where.error("the response has no tokens", field)
            output["prompt_input_ids"].append(prompt_ids)
            output["response_a_input_ids"].append(a_ids)
            output["response_b_input_ids"].append(b_ids)
            output["_untruncated_length"].append(length)
            output["_was_truncated"].append(truncated)
        return output


def tokenize_preferences(
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_length: int,
    max_prompt_length: int | None = None,
    on_overflow: str = "truncate",
    add_eos: bool = True,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, TokenizeReport]:
    """Tokenise the rows of :func:`load_preferences` for training.

    The prompt is tokenised once as ``tokenizer(prompt)`` does it (including the tokenizer's BOS; a prompt
    that already starts with the BOS text, as chat templates render it, does not get a second one). Each
    response is tokenised without special tokens and, with ``add_eos``, gets ``tokenizer.eos_token_id``
    appended unless its text already ends with the EOS token (ignoring trailing whitespace), as responses
    rendered by a chat template do.

    A row longer than ``max_length`` (prompt plus the longer response) is, with ``on_overflow="truncate"``,
    fitted by first dropping tokens from the *start* of the prompt (a leading BOS is kept), down to
    ``max_prompt_length`` at most and only as far as needed, then cutting both responses at their end.
    With ``on_overflow="error"`` it raises instead.

    Args:
        dataset: columns ``prompt``, ``response_a``, ``response_b`` and ``labels``; other columns (for example
            ``reference_logps_a`` / ``reference_logps_b``) are kept.
        tokenizer: a Hugging Face tokenizer.
        max_length: the most tokens of prompt plus one response.
        max_prompt_length: the shortest the prompt is cut to when truncating; default ``max_length // 2``.
        on_overflow: ``"truncate"`` or ``"error"``.
        add_eos: append EOS to responses as described above.
        num_proc: processes for ``datasets.map``.

    Returns:
        ``(tokenised, report)``: the dataset with columns ``prompt_input_ids``, ``response_a_input_ids``,
        ``response_b_input_ids``, ``labels`` (and any other input column except the three texts), and a
        :class:`TokenizeReport`; a summary is logged, as a warning when rows were truncated.

    Raises:
        PreferenceDataError: naming the 1-based row of ``dataset`` and the field, for a row over
            ``max_length`` with ``on_overflow="error"``, a prompt without tokens, or a response without tokens.
        ValueError: bad arguments or missing columns.
    """
    missing = [name for name in PREFERENCE_FEATURES if name not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset lacks the column(s) {missing}; load it with load_preferences")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer of at least 2, got {max_length!r}")
    if max_prompt_length is None:
        max_prompt_length = max_length // 2
    if not isinstance(max_prompt_length, int) or not 1 <= max_prompt_length < max_length:
        raise ValueError(
            f"max_prompt_length must be an integer from 1 to max_length - 1 = {max_length - 1}, "
            f"got {max_prompt_length!r}"
        )
    if on_overflow not in ("truncate", "error"):
        raise ValueError(f"on_overflow must be 'truncate' or 'error', got {on_overflow!r}")
    if add_eos and tokenizer.eos_token_id is None:
        raise ValueError("add_eos=True needs a tokenizer with an eos_token; set one or pass add_eos=False")
    pair_tokenizer = _PairTokenizer(tokenizer, max_length, max_prompt_length, on_overflow == "truncate", add_eos)
    tokenised = dataset.map(
        pair_tokenizer,
        batched=True,
        with_indices=True,
        remove_columns=["prompt", "response_a", "response_b"],
        num_proc=num_proc,
        desc="Tokenising preference pairs",
    )
    untruncated_lengths = np.asarray(tokenised["_untruncated_length"], dtype=np.int64)
    report = TokenizeReport(
        rows=len(tokenised),
        truncated_rows=int(np.asarray(tokenised["_was_truncated"], dtype=bool).sum()),
        max_length_seen=int(untruncated_lengths.max()) if len(untruncated_lengths) else 0,
        max_length=max_length,
    )
    tokenised = tokenised.remove_columns(["_untruncated_length", "_was_truncated"])
    logger.log(logging.WARNING if report.truncated_rows else logging.INFO, report.summary())
    return tokenised, report


# ---------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------


class PreferenceCollator:
    """Pads tokenised preference rows into one batch of ``2N`` sequences.

    Called on N rows of :func:`tokenize_preferences`, it returns:

    - ``input_ids`` (long, ``[2N, T]``): rows ``0..N-1`` are prompt + response_a, rows ``N..2N-1`` prompt +
      response_b, right-padded with ``pad_token_id``; T is the longest sequence, rounded up to a multiple
      of ``pad_to_multiple_of`` when given;
    - ``attention_mask`` (long, ``[2N, T]``): 1 on prompt and response tokens, 0 on padding;
    - ``response_mask`` (long, ``[2N, T]``): 1 exactly on response tokens;
    - ``labels`` (long, ``[N, K]``): the label matrix S;
    - ``reference_logps`` (float, ``[2N]``, a then b) when the rows carry ``reference_logps_a`` and
      ``reference_logps_b``.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if not isinstance(pad_token_id, numbers.Integral) or isinstance(pad_token_id, bool):
            raise ValueError(
                f"pad_token_id must be a token id, got {pad_token_id!r}; a tokenizer without a pad token can use "
                "its EOS token (tokenizer.pad_token = tokenizer.eos_token)"
            )
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"pad_to_multiple_of must be a positive integer or None, got {pad_to_multiple_of!r}")
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        prompts = [list(row["prompt_input_ids"]) for row in rows]
        responses = [list(row["response_a_input_ids"]) for row in rows] + [
            list(row["response_b_input_ids"]) for row in rows
        ]
        prompts = prompts + prompts
        length = max(len(prompt) + len(response) for prompt, response in zip(prompts, responses))
        if self.pad_to_multiple_of is not None:
            length = math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(responses), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(responses), length), dtype=torch.long)
        response_mask = torch.zeros((len(responses), length), dtype=torch.long)
        for index, (prompt, response) in enumerate(zip(prompts, responses)):
            end = len(prompt) + len(response)
            input_ids[index, :end] = torch.tensor(prompt + response, dtype=torch.long)
            attention_mask[index, :end] = 1
            response_mask[index, len(prompt) : end] = 1
        label_rows = [list(row["labels"]) for row in rows]
        if len({len(labels) for labels in label_rows}) != 1:
            raise ValueError(
                f"rows carry different numbers of labels: {sorted({len(labels) for labels in label_rows})}"
            )
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "labels": torch.tensor(label_rows, dtype=torch.long),
        }
        with_reference = [("reference_logps_a" in row and "reference_logps_b" in row) for row in rows]
        if any(with_reference):
            if not all(with_reference):
                raise ValueError("some rows carry reference_logps_a / reference_logps_b and others do not")
            batch["reference_logps"] = torch.tensor(
                [float(row["reference_logps_a"]) for row in rows] + [float(row["reference_logps_b"]) for row in rows],
                dtype=torch.float32,
            )
        return batch


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------


def _label_matrix(labels: Any) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        matrix = labels.detach().cpu().numpy()
    else:
        matrix = np.asarray(labels if isinstance(labels, np.ndarray) else [list(row) for row in labels])
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"labels must be a non-empty label matrix of shape [rows, objectives], got shape {matrix.shape}"
        )
    return matrix


def _largest_remainder_counts(proportions: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total`` closest to ``proportions * total``; ties go to the lower index."""
    exact = proportions * total
    counts = np.floor(exact).astype(np.int64)
    remainders = exact - counts
    order = sorted(range(len(proportions)), key=lambda index: (-remainders[index], index))
    for index in order[: total - int(counts.sum())]:
        counts[index] += 1
    return counts


class ObjectiveBalancedSampler(Sampler[int]):
    """Row indices in blocks of ``batch_size`` with a fixed number of pairs per objective.

    **One label per row** (one dataset per objective): every consecutive block of ``batch_size`` indices
    holds ``counts[k]`` rows of objective k, where ``counts`` is ``proportions * batch_size`` rounded by the
    largest-remainder method (ties to the lower objective index), rows grouped by objective in objective
    order inside a block. Each objective's rows are drawn from a seeded random permutation of its rows,
    re-permuted whenever they run out, so smaller objectives repeat within an epoch and larger ones may not
    be visited in full. ``len(sampler)`` is the number of rows rounded up to whole blocks,
    ``ceil(rows / batch_size) * batch_size``. ``batch_size`` should equal the batch size of the data loader
    that draws from the sampler, so that blocks and batches coincide.

    **Several labels per row** (multi-labelled pairs): every row counts for each of its objectives, so no
    balancing applies; the sampler yields a seeded random permutation of all rows (``len`` = rows) and
    ``proportions``, if given, are validated but unused (with a warning).

    The order depends only on ``seed`` and the epoch set with :meth:`set_epoch` (0 by default).

    Args:
        labels: the label matrix ``[rows, objectives]`` (nested lists, a numpy array, a tensor or a dataset's
            ``labels`` column).
        batch_size: rows per block.
        proportions: share of each objective in a block, non-negative and summing to 1; default equal.
        seed: seed of the permutations.
    """

    def __init__(self, labels: Any, batch_size: int, proportions: Sequence[float] | None = None, seed: int = 0):
        matrix = _label_matrix(labels)
        num_rows, num_objectives = matrix.shape
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.proportions = self._validated_proportions(proportions, num_objectives)
        labelled = matrix != 0
        self.balanced = bool((labelled.sum(axis=1) == 1).all())
        if not self.balanced:
            if proportions is not None:
                warnings.warn(
                    "rows carry several labels, so the sampler yields a permutation of all rows "
                    "and ignores proportions",
                    stacklevel=2,
                )
            return
        objective_of_row = labelled.argmax(axis=1)
        self.rows_by_objective = [np.flatnonzero(objective_of_row == k) for k in range(num_objectives)]
        self.block_counts = _largest_remainder_counts(self.proportions, batch_size)
        for k, (rows, count) in enumerate(zip(self.rows_by_objective, self.block_counts)):
            if count > 0 and len(rows) == 0:
                raise ValueError(f"objective {k} has proportion {self.proportions[k]:g} but no rows")

    @staticmethod
    def _validated_proportions(proportions: Sequence[float] | None, num_objectives: int) -> np.ndarray:
        if proportions is None:
            return np.full(num_objectives, 1.0 / num_objectives)
        values = np.asarray(proportions, dtype=np.float64)
        if values.shape != (num_objectives,):
            raise ValueError(
                f"proportions must hold one value per objective ({num_objectives}), got {list(proportions)}"
            )
        if not np.isfinite(values).all() or (values < 0).any() or abs(values.sum() - 1.0) > 1e-6:
            raise ValueError(f"proportions must be non-negative and sum to 1, got {list(proportions)}")
        return values

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (called by the Hugging Face Trainer at each epoch start)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if not self.balanced:
            return self.num_rows
        return math.ceil(self.num_rows / self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = np.random.default_rng([self.seed, self.epoch])
        if not self.balanced:
            yield from (int(index) for index in generator.permutation(self.num_rows))
            return
        streams = [generator.permutation(rows) for rows in self.rows_by_objective]
        positions = [0] * len(streams)
        for _ in range(len(self) // self.batch_size):
            for k, count in enumerate(self.block_counts):
                for _ in range(count):
                    if positions[k] == len(streams[k]):
                        streams[k] = generator.permutation(self.rows_by_objective[k])
                        positions[k] = 0
                    yield int(streams[k][positions[k]])
                    positions[k] += 1


# ---------------------------------------------------------------------------------------------------------
# Shipped data
# ---------------------------------------------------------------------------------------------------------

BUILTIN_DATA_FOLDER = "resources"
"""Folder inside the ``paretoalign`` package that holds the shipped data slices."""


def _builtin_files(folder, prefix: str = "") -> list[str]:
    names = []
    for entry in folder.iterdir():
        if entry.is_dir():
            names.extend(_builtin_files(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(DATA_FILE_SUFFIXES):
            names.append(prefix + entry.name)
    return sorted(names)


def builtin_data_path(name: str) -> Path:
    """The path of a data slice shipped with paretoalign, e.g. ``"hh-rlhf/harmless-concise/train.jsonl"``.

    ``name`` is relative to the package's data folder, with ``/`` separators; a folder (``"hh-rlhf/helpful"``)
    is accepted too. Raises FileNotFoundError listing the shipped data files when there is no such entry.
    """
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"a shipped data name is a relative path such as 'hh-rlhf/helpful/train.jsonl', got {name!r}")
    root = resources.files("paretoalign").joinpath(BUILTIN_DATA_FOLDER)
    entry = root.joinpath(*relative.parts)
    if not (entry.is_file() or entry.is_dir()):
        available = _builtin_files(root) if root.is_dir() else []
        raise FileNotFoundError(
            errno.ENOENT,
            f"no shipped data named {name!r}; available: {', '.join(available) or 'none'}",
            str(entry),
        )
    return Path(os.fspath(entry))


# ---------------------------------------------------------------------------------------------------------
# Prompt datasets
# ---------------------------------------------------------------------------------------------------------

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
    import random

    for name, value, minimum in (("num_problems", num_problems, 1), ("max_operand", max_operand, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if steps not in (1, 2) or isinstance(steps, bool):
        raise ValueError(f"steps must be 1 or 2, got {steps!r}")
    if not isinstance(system_prompt, str):
        raise ValueError(f"system_prompt must be a string, got {_type_name(system_prompt)}")
    rng = random.Random(seed)
    columns: dict[str, list] = {"prompt": [], "answer": []}
    for _ in range(num_problems):
        problem, answer = _arithmetic_problem(rng, steps, max_operand)
        columns["prompt"].append([{"role": "system", "content": system_prompt}, {"role": "user", "content": problem}])
        columns["answer"].append(str(answer))
    return datasets.Dataset.from_dict(columns, features=PROMPT_FEATURES)


def _read_prompt(row: Any, where: _Location, kind_so_far: str | None) -> tuple[str | list[dict], str]:
    """Validate a prompt row's ``prompt``; return it and its kind (``"string"`` or ``"messages"``)."""
    if not isinstance(row, Mapping):
        raise where.error(f"expected a JSON object, got {_type_name(row)}")
    if "prompt" not in row:
        raise where.error("missing field", "prompt")
    value = row["prompt"]
    if isinstance(value, str):
        if not value.strip():
            raise where.error("empty or whitespace-only prompt", "prompt")
        prompt, kind = value, "string"
    elif isinstance(value, list):
        prompt, kind = _messages(value, "prompt", where), "messages"
        if not prompt or _is_blank(prompt):
            raise where.error("empty message list or messages without content", "prompt")
    else:
        raise where.error(f"expected a string or a list of messages, got {_type_name(value)}", "prompt")
    if kind_so_far is not None and kind != kind_so_far:
        raise where.error(f"a {kind} prompt in a file whose earlier prompts are {kind_so_far}s", "prompt")
    return prompt, kind


def load_prompts(source: str | os.PathLike) -> datasets.Dataset:
    """Load and validate prompts for online RL (``GRPOTrainer``) from a file.

    Args:
        source: a ``.jsonl`` file, a ``.json`` file (a JSON array, or JSON Lines when it does not start with
            ``[``), a ``.parquet`` file, or a directory written by ``datasets.Dataset.save_to_disk``. Rows hold a
            ``prompt`` (a non-blank string, or a non-empty list of ``{"role", "content"}`` messages; all rows of
            one file the same kind) and any other columns, passed through unchanged (for example ``answer`` for
            :class:`paretoalign.rewards.AnswerReward`). A column missing from some rows is ``None`` there.

    Returns:
        A :class:`datasets.Dataset` with the rows in file order; columns in order of first appearance.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        PreferenceDataError: naming file, line (JSON Lines) or row (other formats) and field, for malformed JSON,
            a row that is not an object, a missing, blank or malformed ``prompt``, string and message prompts
            mixed in one file, an empty file, or columns whose values cannot form one column type.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "prompt file not found", str(path))
    unit, rows = _iter_source_rows(path)
    columns: dict[str, list] = {}
    prompt_kind = None
    row_count = 0
    for line, row in rows:
        prompt, prompt_kind = _read_prompt(row, _Location(str(path), line, unit), prompt_kind)
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
