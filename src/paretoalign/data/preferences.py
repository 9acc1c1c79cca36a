"""Preference pairs: rows of files -> the label matrix ``S`` of K objectives.

Both real-world shapes of preference data (DESIGN.md, "Preference data") load into one representation:

1. one dataset per objective, ``{objective_name: path}``, rows ``{"prompt", "chosen", "rejected"}``
   (TRL's explicit-prompt preference format);
2. multi-labelled pairs, one path, rows
   ``{"prompt", "response_0", "response_1", "labels": {"helpful": 0, "harmless": 1}}`` where each label is
   the index of the preferred response and a missing or null label means "no opinion".

Any other dataset (PKU-SafeRLHF, UltraFeedback, HelpSteer2, HH-RLHF, ...) reaches shape 2 through a column mapping
or a preset (:mod:`paretoalign.data.columns`), whose rows are then validated here like a file's.

:func:`load_preferences` returns a :class:`datasets.Dataset` with columns ``prompt``, ``response_a``,
``response_b`` (strings) and ``labels`` (one int per objective: +1 = response_a preferred, -1 = response_b
preferred, 0 = no label), i.e. the rows of the label matrix ``S``. Prompts and responses may also be
conversational message lists; they are rendered to text with the tokenizer's chat template.

Every problem with the input is reported as a :class:`~paretoalign.data.files.PreferenceDataError` naming the
file, the line (or row) and the field at fault; rows that are dropped (identical responses, no label at all) are
counted in a :class:`LoadReport`, warned about and logged, never dropped silently.
"""

from __future__ import annotations

import itertools
import logging
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from paretoalign.data.columns import MappedSource, data_source, iter_rows, resolve_data_source, row_location
from paretoalign.data.files import (
    HubDataset,
    PreferenceDataError,
    RowLocation,
    is_blank,
    read_messages,
    split_conversation,
    type_name,
)

__all__ = [
    "PREFERENCE_FEATURES",
    "LoadReport",
    "conflict_matrix",
    "judged_labels",
    "labelled_counts",
    "load_preferences",
    "load_preferences_with_report",
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

ONE_OBJECTIVE_FIELDS = ("chosen", "rejected")
MULTI_LABEL_FIELDS = ("response_0", "response_1")

MAX_LINES_IN_WARNING = 5
"""How many offending line numbers a warning about dropped rows lists before it only counts."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_preferences_with_report` read, kept and dropped.

    Attributes:
        sources: the files, directories or Hugging Face datasets read, in order.
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


def _first_difference(left: list, right: list) -> int:
    return next((index for index, (a, b) in enumerate(zip(left, right)) if a != b), min(len(left), len(right)))


class _ChatRenderer:
    """Renders conversational rows to text with a tokenizer's chat template."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def _template(self, messages: list[dict], add_generation_prompt: bool, field: str, where: RowLocation) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as error:  # a template raises whatever its author chose; report it with the row
            raise where.error(f"the chat template cannot render this conversation: {error}", field) from error

    def render(
        self, prompt: list[dict], responses: tuple[list[dict], list[dict]], fields: tuple[str, str], where: RowLocation
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


def _read_pair(
    row: Any, fields: tuple[str, str], renderer: _ChatRenderer, where: RowLocation
) -> tuple[str, str, str]:
    """Validate a row's prompt and two responses and return them as texts ``(prompt, response_a, response_b)``.

    String rows are taken as they are. Conversational rows hold message lists: an explicit ``prompt`` with
    responses that are either the reply messages or full conversations starting with the prompt, or no
    ``prompt`` and two full conversations whose messages before the final assistant reply must be equal.
    """
    if not isinstance(row, Mapping):
        raise where.error(f"expected a JSON object, got {type_name(row)}")
    for field in fields:
        if field not in row:
            raise where.error("missing field", field)
    first, second = row[fields[0]], row[fields[1]]
    if "prompt" not in row:
        if not (isinstance(first, list) and isinstance(second, list)):
            raise where.error("missing field (only conversational rows may leave the prompt implicit)", "prompt")
        conversations = [read_messages(value, field, where) for value, field in zip((first, second), fields)]
        (prompt, first_reply), (second_prompt, second_reply) = (
            split_conversation(messages, field, where) for messages, field in zip(conversations, fields)
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
                raise where.error(f"expected a string like the prompt, got {type_name(value)}", field)
            if not value.strip():
                raise where.error("empty or whitespace-only response", field)
        return row["prompt"], first, second
    elif isinstance(row["prompt"], list):
        prompt = read_messages(row["prompt"], "prompt", where)
        if not prompt:
            raise where.error("empty message list", "prompt")
        replies = []
        for value, field in zip((first, second), fields):
            if not isinstance(value, list):
                raise where.error(f"expected a list of messages like the prompt, got {type_name(value)}", field)
            messages = read_messages(value, field, where)
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
        raise where.error(f"expected a string or a list of messages, got {type_name(row['prompt'])}", "prompt")
    for reply, field in zip(replies, fields):
        if is_blank(reply):
            raise where.error("empty or whitespace-only response", field)
    return renderer.render(prompt, tuple(replies), fields, where)


def _read_labels(row: Mapping, known_objectives: Sequence[str] | None, where: RowLocation) -> dict[str, int]:
    """Validate a multi-label row's ``labels`` and return ``{name: +1 | -1 | 0}`` for every name it lists."""
    if "labels" not in row:
        raise where.error("missing field", "labels")
    labels = row["labels"]
    if not isinstance(labels, Mapping):
        raise where.error(
            f"expected an object mapping objective names to 0, 1 or null, got {type_name(labels)}", "labels"
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


@dataclass
class _Counts:
    rows_read: int = 0
    dropped_identical: int = 0
    kept_identical: int = 0
    dropped_unlabelled: int = 0


def _line_list(lines: list[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:MAX_LINES_IN_WARNING])
    return shown + (", ..." if len(lines) > MAX_LINES_IN_WARNING else "")


def _warn_dropped(path: Path | HubDataset | MappedSource, unit: str, identical: list[int], unlabelled: list[int], dropping_identical: bool):
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
    path: Path | HubDataset | MappedSource,
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
        where = row_location(str(path), line, unit, row)
        prompt, response_a, response_b = _read_pair(row, ONE_OBJECTIVE_FIELDS, renderer, where)
        if _skip_identical(response_a, response_b, line, identical_lines, drop_identical, counts):
            continue
        _append(columns, prompt, response_a, response_b, list(label))
    if counts.rows_read == rows_before:
        raise PreferenceDataError("contains no rows", path)
    _warn_dropped(path, unit, identical_lines, [], drop_identical)


def _load_multi_label_file(
    path: Path | HubDataset | MappedSource,
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
        where = row_location(str(path), line, unit, row)
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


def _append_one_objective(columns: dict[str, list], part: dict[str, list], index: int, num_objectives: int) -> None:
    """Append the rows of ``part`` (labels of one objective) with their label in column ``index`` of K."""
    for prompt, response_a, response_b, (sign,) in zip(*(part[name] for name in PREFERENCE_FEATURES)):
        labels = [0] * num_objectives
        labels[index] = sign
        _append(columns, prompt, response_a, response_b, labels)


def load_preferences_with_report(
    source: str | os.PathLike | HubDataset | MappedSource | Mapping[str, Any],
    objectives: Sequence[str] | None = None,
    tokenizer: Any = None,
    drop_identical: bool = True,
) -> tuple[datasets.Dataset, list[str], LoadReport]:
    """Load preference pairs as in :func:`load_preferences`, and also return a :class:`LoadReport`."""
    source = resolve_data_source(source)
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
        paths = [data_source(source[name]) for name in objective_names]
        paths = [path.renamed(name) if isinstance(path, MappedSource) else path
                 for name, path in zip(objective_names, paths)]
        columns = _empty_columns()
        for index, (name, path) in enumerate(zip(objective_names, paths)):
            unit, rows = iter_rows(path)
            if isinstance(path, MappedSource):
                part, _ = _load_multi_label_file(path, unit, rows, [name], renderer, drop_identical, counts)
                _append_one_objective(columns, part, index, len(objective_names))
            else:
                _load_one_objective_file(
                    path, unit, rows, index, len(objective_names), renderer, drop_identical, columns, counts
                )
    else:
        path = data_source(source)
        if isinstance(path, MappedSource) and known_objectives is not None:
            path = path.select(known_objectives)
        paths = [path]
        unit, rows = iter_rows(path)
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
    source: str | os.PathLike | HubDataset | MappedSource | Mapping[str, Any],
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
            ``.parquet`` file, a directory written by ``datasets.Dataset.save_to_disk``, or ``builtin:NAME``, the
            data shipped with paretoalign (:func:`~paretoalign.data.columns.resolve_data_source`, e.g.
            ``builtin:hh-rlhf/harmless-concise/train.jsonl``). In place of a path, a Hugging Face dataset
            :class:`~paretoalign.data.files.HubDataset` or its mapping ``{dataset: ORG/NAME or a local clone,
            name, split, revision, data_dir}`` has the same rows, numbered from 0; ``{path: FILE}`` is the file.
            Either with ``columns: {...}``, or a preset ``{preset: NAME, split, ...}``, is read through a column
            mapping (:mod:`paretoalign.data.columns`) into multi-labelled pairs whose objectives are its label
            names; in a dict source such a source labels exactly one objective, which takes the dict key's name.
            A mapping with a ``dataset``, ``path`` or ``preset`` key is one source; any other mapping is
            ``{objective_name: source}``. Fields other than the ones named here are ignored.
        objectives: objective names and their order. For a multi-label file, a label name outside this list is
            an error and every listed objective must have a labelled row; by default the objectives are the
            label names in order of first appearance. A mapped source keeps only the labels of these objectives
            (one it does not label is an error). For a dict source it must list the dict's keys (in any
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
        FileNotFoundError: a source path or dataset does not exist, or a ``builtin:NAME`` is not shipped (listing
            what is).
        PreferenceDataError: naming file (or dataset, config and split), line (JSON Lines) or row (other formats)
            and field, for: a dataset that cannot be loaded, malformed
            JSON, a missing field, a field of the wrong type, a label other than 0, 1 or null, an unknown
            objective name, an empty or whitespace-only response, prompt parts that differ between the two
            full conversations of a row, a conversational row without a tokenizer with a chat template, an
            empty source, or an objective with no labelled row.
        ValueError: ``objectives`` is malformed or does not match a dict source's keys, or names an objective a
            mapped source does not label, or a source mapping, column mapping or preset is malformed (an unknown
            key, a missing ``dataset``).
    """
    dataset, objective_names, _ = load_preferences_with_report(source, objectives, tokenizer, drop_identical)
    return dataset, objective_names



def _label_matrix(labels: Any) -> np.ndarray:
    """``labels`` (a tensor, array or nested list) as an int64 array [N, K]; a ValueError for any other shape."""
    matrix = np.asarray(labels, dtype=np.int64)
    if matrix.ndim != 2:
        raise ValueError(f"a label matrix S has shape [N, K], got an array of shape {matrix.shape}")
    return matrix


def labelled_counts(labels: Any) -> np.ndarray:
    """Labelled pairs per objective of a label matrix ``S`` [N, K] (+1, -1, or 0 for no label).

    ``labelled_k = #{i : S_ik != 0}``; the pairs without a label for objective k (a null or missing label although
    the pair is in the data) number ``N - labelled_k``.

    Returns:
        int64 array [K].
    """
    return (_label_matrix(labels) != 0).sum(axis=0)


def conflict_matrix(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """How often two objectives disagree on the pairs both label, from a label matrix ``S`` [N, K].

    For objectives a and b, ``both_ab = #{i : S_ia S_ib != 0}`` (pairs labelled by both) and
    ``conflict_ab = #{i : S_ia S_ib < 0} / both_ab`` (the share of those pairs on which their preferred responses
    differ); NaN where ``both_ab = 0``. Both matrices are symmetric; ``conflict_aa = 0`` and ``both_aa`` is the
    number of pairs labelled for a.

    Returns:
        ``(conflict, both)``: float64 [K, K] shares and int64 [K, K] counts.
    """
    signs = np.sign(_label_matrix(labels))
    labelled = (signs != 0).astype(np.int64)
    both = labelled.T @ labelled
    disagree = (signs < 0).astype(np.int64).T @ (signs > 0).astype(np.int64)
    disagree = disagree + disagree.T
    with np.errstate(invalid="ignore", divide="ignore"):
        conflict = np.where(both > 0, disagree / np.maximum(both, 1), np.nan)
    return conflict, both


def judged_labels(scores_a: Sequence[float | None], scores_b: Sequence[float | None]) -> list[int | None]:
    """A judge's preference label of each pair from its scores of the two responses: ``0`` (response_0 preferred)
    when ``s_a > s_b``, ``1`` when ``s_b > s_a``, ``None`` (no label) on a tie or when either score is missing or not a
    finite number."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"{len(scores_a)} scores of response_0 against {len(scores_b)} of response_1.")

    def finite(value: float | None) -> bool:
        return value is not None and np.isfinite(value)

    return [
        None if not (finite(a) and finite(b)) or a == b else 0 if a > b else 1 for a, b in zip(scores_a, scores_b)
    ]
