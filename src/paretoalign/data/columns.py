r"""Column mappings and dataset presets: the rows of the field's preference datasets as multi-label pairs.

A column mapping (the key ``columns:`` of a data source) turns the rows of any source into canonical multi-label rows
``{"prompt", "response_0", "response_1", "labels": {name: 0 | 1 | None}}`` (0: ``response_0`` preferred, ``None``:
no label), which :mod:`paretoalign.data.preferences` then validates as it validates the rows of a file. Three shapes:

- ``pair`` (default): one row holds two responses (``responses: [COL_0, COL_1]``) and an optional ``prompt`` column
  (without one the responses are full conversations); ``transcripts: text | messages`` cuts two HH-RLHF transcripts
  into prompt and responses (:mod:`paretoalign.data.transcripts`);
- ``scored_list`` (UltraFeedback): one row holds a prompt and a list of scored responses (``list``, ``response``);
- ``row_per_response`` (HelpSteer2): one response and its scores per row; consecutive rows with the same prompt form
  a group, paired like a scored list.

Label kinds of a ``pair`` row, each a pure function here: ``index`` (:func:`index_preference`), ``winner``
(:func:`winner_preference`), ``scores`` (:func:`score_preference` of two columns) and ``always``; a scored list's or
a group's label is ``score`` (a path inside each item, or a column), compared by :func:`score_preference` for every
pair that :func:`best_worst_pairs` or :func:`all_pairs` forms. Column names are dotted paths into nested rows
(``annotations.helpfulness.Rating``); errors name the source row and the raw column or path
(``completions[2].annotations.helpfulness.Rating``).

A preset (``src/paretoalign/resources/presets/NAME.yaml``, :func:`load_preset`) names a dataset, its splits and its
column mapping. :func:`resolve_data_source` turns every value a data field takes (a path, ``builtin:NAME``,
``{dataset: ...}``, ``{path: ...}``, ``{preset: ...}``, a mapping of objectives to those) into the sources the
loaders read.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from paretoalign.data.files import (
    BUILTIN_PREFIX,
    HUB_DATASET_KEYS,
    HubDataset,
    PreferenceDataError,
    RowLocation,
    builtin_data_path,
    iter_source_rows,
    read_messages,
    split_conversation,
    type_name,
)
from paretoalign.data.transcripts import ASSISTANT_TURN, split_transcript, transcript_messages

__all__ = [
    "LABEL_KINDS", "PAIRINGS", "SHAPES", "SOURCE_KEYS", "TRANSCRIPT_FORMS", "ColumnMapping", "LabelSpec",
    "MappedRow", "MappedSource", "Preset", "all_pairs", "best_worst_pairs", "data_source", "index_preference",
    "is_single_source", "iter_rows", "load_preset", "preset_names", "read_score", "resolve_data_source",
    "row_location", "score_gap", "score_preference", "winner_preference",
]

SHAPES = ("pair", "scored_list", "row_per_response")
"""Row shapes a column mapping reads (its ``shape``)."""

TRANSCRIPT_FORMS = ("none", "text", "messages")
"""Values of a ``pair`` mapping's ``transcripts``."""

PAIRINGS = ("best_worst", "all")
"""How a scored list or a group of rows becomes pairs (``pairs``)."""

LABEL_KINDS = ("index", "winner", "scores", "score", "always")
"""The key that names a label's kind; a label spec holds exactly one."""

SHAPE_KEYS = {
    "pair": ("shape", "prompt", "responses", "transcripts", "labels"),
    "scored_list": ("shape", "prompt", "list", "response", "pairs", "max_pairs", "labels"),
    "row_per_response": ("shape", "prompt", "response", "pairs", "max_pairs", "labels"),
}
"""The keys of a column mapping of each shape."""

SHAPE_LABEL_KINDS = {"pair": ("index", "winner", "scores", "always"), "scored_list": ("score",),
                     "row_per_response": ("score",)}
"""The label kinds each shape takes."""

LABEL_KEYS = {
    "index": ("index",),
    "winner": ("winner", "values"),
    "scores": ("scores", "min_margin", "higher_is_better"),
    "score": ("score", "min_margin", "higher_is_better"),
    "always": ("always",),
}
"""The keys of a label spec of each kind."""

SOURCE_KEYS = ("dataset", "path", "preset")
"""A mapping holding one of these keys is one source (:func:`is_single_source`); any other maps objectives to
sources."""

PATH_SOURCE_KEYS = ("path", "columns")
DATASET_SOURCE_KEYS = (*HUB_DATASET_KEYS, "columns")
PRESET_SOURCE_KEYS = ("preset", *HUB_DATASET_KEYS)
PRESET_FILE_KEYS = ("dataset", "name", "data_dir", "data_dirs", "splits", "columns")

PRESET_FOLDER = ("resources", "presets")
"""Folder of the preset files inside the ``paretoalign`` package."""

MAX_ROWS_IN_WARNING = 5
"""How many row numbers a warning about source rows that give no pair lists before it only counts."""

# ---------------------------------------------------------------------------------------------------------
# Labels: pure functions of the raw values
# ---------------------------------------------------------------------------------------------------------


def index_preference(value: Any) -> int | None:
    """The preferred response's index ``0`` or ``1`` as it stands; ``None`` (null) is no label.

    Raises:
        ValueError: any other value.
    """
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    raise ValueError(f"the preferred response's index must be 0, 1 or null, got {value!r}")


def _normalised(text: str) -> str:
    return text.strip().casefold()


def winner_preference(value: Any, values: Mapping[str, int | None]) -> int | None:
    """``values[v]`` for a string ``v`` naming the winner, compared case-insensitively after stripping whitespace
    (``values``' keys are already normalised so); ``None`` (null) is no label.

    Raises:
        ValueError: a value that is not a string, or a string ``values`` does not list (the message lists them).
    """
    if value is None:
        return None
    if isinstance(value, str) and _normalised(value) in values:
        return values[_normalised(value)]
    raise ValueError(f"unknown winner {value!r}; accepted values (any case): {', '.join(values)} or null")


def read_score(value: Any) -> float | None:
    """A score as a number: ints and floats as they are, numeric strings (``"4"``) parsed; ``None`` (no score) for
    null, NaN and strings that are no number (``"N/A"``).

    Raises:
        TypeError: a bool, list, dict or any other type.
    """
    if isinstance(value, bool):
        raise TypeError(f"a score must be a number, a numeric string or null, got the bool {value!r}")
    if value is None:
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        raise TypeError(f"a score must be a number, a numeric string or null, got {type_name(value)}")
    return None if math.isnan(number) else number


def score_preference(
    score_0: float | None, score_1: float | None, min_margin: float = 0.0, higher_is_better: bool = True
) -> int | None:
    """The label of two scored responses: with ``d = s_0 - s_1`` (``s_1 - s_0`` when lower is better), ``0``
    (response 0 preferred) if ``d > m``, ``1`` if ``d < -m``, ``None`` (a tie: no label) if ``|d| <= m`` or a score
    is missing; ``m = min_margin``."""
    if score_0 is None or score_1 is None:
        return None
    difference = score_0 - score_1 if higher_is_better else score_1 - score_0
    if abs(difference) <= min_margin:
        return None
    return 0 if difference > 0 else 1


def best_worst_pairs(scores: Sequence[Sequence[float | None]]) -> list[tuple[int, int]]:
    """Pairs of items, one per objective: for each objective ``k`` (``scores[k][i]`` is item ``i``'s score, ``None``
    when missing) with two different scores, the first item with the highest score and the first with the lowest,
    ordered by list position; a pair of the same two items is kept once, in order of first appearance."""
    pairs: list[tuple[int, int]] = []
    for row in scores:
        present = [(score, index) for index, score in enumerate(row) if score is not None]
        if len({score for score, _ in present}) < 2:
            continue
        highest = max(score for score, _ in present)
        lowest = min(score for score, _ in present)
        best = next(index for score, index in present if score == highest)
        worst = next(index for score, index in present if score == lowest)
        pair = (min(best, worst), max(best, worst))
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def score_gap(scores: Sequence[Sequence[float | None]], first: int, second: int) -> float:
    """``sum_k |s_k,first - s_k,second|`` over the objectives ``k`` that score both items."""
    return sum(
        abs(row[first] - row[second]) for row in scores if row[first] is not None and row[second] is not None
    )


def all_pairs(
    scores: Sequence[Sequence[float | None]], num_items: int, max_pairs: int | None = None
) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, of ``num_items`` items in list order; with ``max_pairs``, only the
    ``max_pairs`` pairs of largest :func:`score_gap` (ties broken by list order), still in list order."""
    pairs = [(first, second) for first in range(num_items) for second in range(first + 1, num_items)]
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    ranked = sorted(pairs, key=lambda pair: (-score_gap(scores, *pair), pair))
    return sorted(ranked[:max_pairs])


# ---------------------------------------------------------------------------------------------------------
# The mapping itself, validated when a config is read
# ---------------------------------------------------------------------------------------------------------


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _column(value: Any, where: str) -> str:
    if not _is_name(value):
        raise ValueError(f"{where} must be a column name (a dotted path for nested rows), got {value!r}")
    return value


def _margin(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where} must be a non-negative number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LabelSpec:
    """How one objective's label is read (one entry of a mapping's ``labels``).

    Attributes:
        kind: one of :data:`LABEL_KINDS`.
        columns: the columns or paths read: ``(COL,)`` for ``index``, ``winner`` and ``score`` (a path inside each
            item of a scored list), ``(COL_0, COL_1)`` for ``scores``, ``()`` for ``always``.
        values: ``winner`` only: normalised raw value -> ``0``, ``1`` or ``None``.
        min_margin: ``scores`` / ``score``: a score difference of at most this is a tie (no label).
        higher_is_better: ``scores`` / ``score``: ``False`` prefers the lower score.
        always: ``always`` only: the index of the response every row prefers.
    """

    kind: str
    columns: tuple[str, ...]
    values: Mapping[str, int | None] | None = None
    min_margin: float = 0.0
    higher_is_better: bool = True
    always: int | None = None

    @classmethod
    def from_mapping(cls, spec: Any, shape: str, responses: tuple[str, str] | None, where: str) -> LabelSpec:
        """The label spec ``spec`` (``where`` names it in errors, ``labels.NAME``) of a mapping of ``shape`` whose
        ``pair`` responses are ``responses`` (the default winner values name them).

        Raises:
            ValueError: naming the key at fault and listing the valid ones.
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a mapping such as {{index: COLUMN}}, got {type_name(spec)}")
        kinds = [kind for kind in LABEL_KINDS if kind in spec]
        if len(kinds) != 1:
            found = f"both {' and '.join(kinds)}" if kinds else "none"
            raise ValueError(f"{where} needs exactly one of {', '.join(LABEL_KINDS)}; it has {found}")
        kind = kinds[0]
        if kind not in SHAPE_LABEL_KINDS[shape]:
            raise ValueError(
                f"{where}: a {kind!r} label does not apply to shape {shape}; shape {shape} takes "
                f"{', '.join(SHAPE_LABEL_KINDS[shape])}"
            )
        unknown = [str(key) for key in spec if key not in LABEL_KEYS[kind]]
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown} for a {kind!r} label; its keys: {', '.join(LABEL_KEYS[kind])}"
            )
        if kind == "always":
            value = spec["always"]
            if isinstance(value, bool) or value not in (0, 1):
                raise ValueError(f"{where}.always must be 0 or 1 (the response every row prefers), got {value!r}")
            return cls(kind, (), always=int(value))
        if kind == "scores":
            columns = spec["scores"]
            if not (isinstance(columns, list) and len(columns) == 2 and all(_is_name(name) for name in columns)):
                raise ValueError(f"{where}.scores must be a list of two column names [COL_0, COL_1], got {columns!r}")
            columns = tuple(columns)
        else:
            columns = (_column(spec[kind], f"{where}.{kind}"),)
        if kind in ("scores", "score"):
            higher_is_better = spec.get("higher_is_better", True)
            if not isinstance(higher_is_better, bool):
                raise ValueError(f"{where}.higher_is_better must be true or false, got {higher_is_better!r}")
            return cls(kind, columns, min_margin=_margin(spec.get("min_margin", 0), f"{where}.min_margin"),
                       higher_is_better=higher_is_better)
        if kind == "winner":
            return cls(kind, columns, values=_winner_values(spec.get("values"), responses, f"{where}.values"))
        return cls(kind, columns)

    def pair_label(self, row: Mapping, where: RowLocation) -> int | None:
        """The label of a ``pair`` row: 0, 1 or ``None``; errors name the row and the raw column."""
        if self.kind == "always":
            return self.always
        if self.kind == "scores":
            scores = [_score_at(row, column, where) for column in self.columns]
            return score_preference(*scores, self.min_margin, self.higher_is_better)
        value = value_at(row, self.columns[0], where)
        try:
            return index_preference(value) if self.kind == "index" else winner_preference(value, self.values)
        except ValueError as error:
            raise where.error(str(error), self.columns[0]) from error


def _winner_values(values: Any, responses: tuple[str, str] | None, where: str) -> dict[str, int | None]:
    if values is None:
        values = {"a": 0, "b": 1, "tie": None}
        if responses is not None:
            values.update({responses[0]: 0, responses[1]: 1})
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{where} must map each raw value to 0, 1 or null, got {values!r}")
    normalised: dict[str, int | None] = {}
    for raw, label in values.items():
        if not _is_name(raw):
            raise ValueError(f"{where}: a raw value must be a non-empty string, got {raw!r}")
        if label is not None and (isinstance(label, bool) or label not in (0, 1)):
            raise ValueError(f"{where}.{raw} must be 0, 1 or null, got {label!r}")
        key = _normalised(raw)
        if key in normalised and normalised[key] != label:
            raise ValueError(f"{where}: {raw!r} and another value equal to it in any case map to different labels")
        normalised[key] = None if label is None else int(label)
    return normalised


def _required(mapping: Mapping, key: str, shape: str, where: str) -> Any:
    if key not in mapping:
        raise ValueError(f"{where}: shape {shape} needs {key!r}; its keys: {', '.join(SHAPE_KEYS[shape])}")
    return mapping[key]


@dataclass(frozen=True)
class ColumnMapping:
    """A validated column mapping (see the module docstring); :meth:`from_mapping` reads the YAML form.

    Attributes:
        shape: one of :data:`SHAPES`.
        labels: objective name -> :class:`LabelSpec`, in the mapping's order.
        prompt: the prompt column (``pair``: ``None`` when the responses are full conversations or transcripts).
        responses: ``pair``: the two response columns.
        transcripts: ``pair``: one of :data:`TRANSCRIPT_FORMS`.
        items: ``scored_list``: the column holding the list of scored responses (YAML key ``list``).
        response: ``scored_list``: the path of the response inside each item; ``row_per_response``: its column.
        pairs: ``scored_list`` / ``row_per_response``: one of :data:`PAIRINGS`.
        max_pairs: with ``pairs: all``, the most pairs per prompt (``None``: all of them).
    """

    shape: str
    labels: Mapping[str, LabelSpec]
    prompt: str | None = None
    responses: tuple[str, str] | None = None
    transcripts: str = "none"
    items: str | None = None
    response: str | None = None
    pairs: str = "best_worst"
    max_pairs: int | None = None

    @classmethod
    def from_mapping(cls, mapping: Any, where: str = "columns") -> ColumnMapping:
        """The mapping a ``columns:`` value describes; ``where`` names it in errors.

        Raises:
            ValueError: before any data is read, naming the key at fault and listing the valid ones: an unknown key,
                a key of another shape, a missing required key, a value of the wrong type, a label spec with none or
                two of ``index`` / ``winner`` / ``scores`` / ``score`` / ``always``, or a label kind the shape does
                not take.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{where} must be a mapping such as {{responses: [A, B], labels: ...}}, "
                             f"got {type_name(mapping)}")
        shape = mapping.get("shape", "pair")
        if shape not in SHAPES:
            raise ValueError(f"{where}.shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        valid = SHAPE_KEYS[shape]
        for key in mapping:
            if key in valid:
                continue
            owners = [other for other in SHAPES if key in SHAPE_KEYS[other]]
            if owners:
                raise ValueError(f"{where}: {key!r} is a key of shape {' and '.join(owners)}, not of shape {shape}; "
                                 f"the keys of shape {shape}: {', '.join(valid)}")
            raise ValueError(f"{where}: unknown key {str(key)!r}; the keys of shape {shape}: {', '.join(valid)}")
        values: dict[str, Any] = {"shape": shape}
        if shape == "pair":
            responses = _required(mapping, "responses", shape, where)
            if not (isinstance(responses, list) and len(responses) == 2 and all(map(_is_name, responses))):
                raise ValueError(f"{where}.responses must be a list of two column names, got {responses!r}")
            values["responses"] = tuple(responses)
            transcripts = mapping.get("transcripts", "none")
            if transcripts not in TRANSCRIPT_FORMS:
                raise ValueError(f"{where}.transcripts must be one of {', '.join(TRANSCRIPT_FORMS)}, "
                                 f"got {transcripts!r}")
            values["transcripts"] = transcripts
            if "prompt" in mapping and transcripts != "none":
                raise ValueError(f"{where}: 'prompt' and transcripts: {transcripts} exclude each other: the prompt "
                                 "is cut from the transcripts")
            if "prompt" in mapping:
                values["prompt"] = _column(mapping["prompt"], f"{where}.prompt")
        else:
            values["prompt"] = _column(_required(mapping, "prompt", shape, where), f"{where}.prompt")
            values["response"] = _column(_required(mapping, "response", shape, where), f"{where}.response")
            if shape == "scored_list":
                values["items"] = _column(_required(mapping, "list", shape, where), f"{where}.list")
            pairs = mapping.get("pairs", "best_worst")
            if pairs not in PAIRINGS:
                raise ValueError(f"{where}.pairs must be one of {', '.join(PAIRINGS)}, got {pairs!r}")
            values["pairs"] = pairs
            if "max_pairs" in mapping:
                max_pairs = mapping["max_pairs"]
                if pairs != "all":
                    raise ValueError(f"{where}.max_pairs applies to pairs: all only (best_worst gives at most one "
                                     "pair per objective)")
                if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
                    raise ValueError(f"{where}.max_pairs must be a positive integer, got {max_pairs!r}")
                values["max_pairs"] = max_pairs
        labels = _required(mapping, "labels", shape, where)
        if not isinstance(labels, Mapping) or not labels:
            raise ValueError(f"{where}.labels must map at least one objective name to a label spec, got {labels!r}")
        for name in labels:
            if not _is_name(name):
                raise ValueError(f"{where}.labels: objective names must be non-empty strings, got {name!r}")
        values["labels"] = {
            name: LabelSpec.from_mapping(spec, shape, values.get("responses"), f"{where}.labels.{name}")
            for name, spec in labels.items()
        }
        return cls(**values)

    @property
    def objectives(self) -> list[str]:
        """The objective names, in the mapping's order."""
        return list(self.labels)

    def select(self, objectives: Sequence[str]) -> ColumnMapping:
        """This mapping with only the labels of ``objectives``, in that order.

        Raises:
            ValueError: an objective the mapping does not label (naming those it does).
        """
        missing = [name for name in objectives if name not in self.labels]
        if missing:
            raise ValueError(f"the column mapping labels no objective(s) {missing}; it labels {self.objectives}")
        return replace(self, labels={name: self.labels[name] for name in objectives})

    def map_rows(self, rows: Iterator[tuple[int, Any]], path: str, unit: str) -> Iterator[tuple[int, MappedRow]]:
        """The canonical rows of the source rows ``rows`` (``(line or row number, row)`` of the source ``path``),
        each numbered by its source row (for ``row_per_response``, the group's first row).

        Source rows that give no pair (a scored list with fewer than two items or no two different scores, a group
        of one row) are dropped with a warning that counts them.
        """
        no_pair: list[int] = []
        if self.shape == "pair":
            for line, row in rows:
                yield line, self._pair_row(row, RowLocation(path, line, unit))
        elif self.shape == "scored_list":
            for line, row in rows:
                mapped = self._scored_list_rows(row, RowLocation(path, line, unit))
                if not mapped:
                    no_pair.append(line)
                yield from ((line, one) for one in mapped)
        else:
            for group in _groups(rows, self.prompt, path, unit):
                mapped = self._group_rows(group, path, unit)
                if not mapped:
                    no_pair.append(group[0][0])
                yield from ((group[0][0], one) for one in mapped)
        if no_pair:
            cause = ("is a group of one row or whose rows' scores never differ"
                     if self.shape == "row_per_response" else "holds fewer than two items or no two different scores")
            shown = ", ".join(str(line) for line in no_pair[:MAX_ROWS_IN_WARNING])
            warnings.warn(
                f"{path}: dropped {len(no_pair)} source row(s) that give no pair: each {cause} "
                f"({unit}s {shown}{', ...' if len(no_pair) > MAX_ROWS_IN_WARNING else ''})",
                stacklevel=2,
            )

    def prompt_rows(self, rows: Iterator[tuple[int, Any]], path: str, unit: str) -> Iterator[tuple[int, MappedRow]]:
        """One row ``{"prompt"}`` per source row: its ``prompt`` column, or for a ``pair`` mapping without one the
        prompt part of its transcripts or of its first full conversation. Duplicates are kept."""
        for line, row in rows:
            where = RowLocation(path, line, unit)
            if self.prompt is not None:
                yield line, MappedRow({"prompt": value_at(row, self.prompt, where)}, {"prompt": self.prompt})
                continue
            if self.transcripts != "none":
                prompt, _ = self._split_transcripts(row, where)
            else:
                conversation = value_at(row, self.responses[0], where)
                if not isinstance(conversation, list):
                    raise where.error(
                        f"without a prompt column the responses must be full conversations (lists of messages), got "
                        f"{type_name(conversation)}",
                        self.responses[0],
                    )
                prompt, _ = split_conversation(
                    read_messages(conversation, self.responses[0], where), self.responses[0], where
                )
            yield line, MappedRow({"prompt": prompt}, {"prompt": self.responses[0]}, rewritten=True)

    def _split_transcripts(self, row: Any, where: RowLocation) -> tuple[Any, tuple[Any, Any]]:
        """Prompt and the two responses cut from the two transcripts of a row (as text, or as messages)."""
        cuts = []
        for column in self.responses:
            transcript = value_at(row, column, where)
            if not isinstance(transcript, str):
                raise where.error(f"expected a transcript string, got {type_name(transcript)}", column)
            cut = split_transcript(transcript)
            if cut is None:
                raise where.error(f"a transcript needs an assistant turn ({ASSISTANT_TURN!r})", column)
            cuts.append(cut)
        (prompt, first), (other_prompt, second) = cuts
        if prompt != other_prompt:
            raise where.error(
                f"the prompt part (up to the last {ASSISTANT_TURN!r}) differs from that of {self.responses[0]!r}",
                self.responses[1],
            )
        if self.transcripts == "text":
            return prompt, (first, second)
        replies = tuple([{"role": "assistant", "content": response.strip()}] for response in (first, second))
        return transcript_messages(prompt), replies

    def _pair_row(self, row: Any, where: RowLocation) -> MappedRow:
        raw = {"response_0": self.responses[0], "response_1": self.responses[1]}
        if self.transcripts != "none":
            prompt, (first, second) = self._split_transcripts(row, where)
            values = {"prompt": prompt, "response_0": first, "response_1": second}
            raw["prompt"] = self.responses[0]
        else:
            values = {"response_0": value_at(row, self.responses[0], where),
                      "response_1": value_at(row, self.responses[1], where)}
            if self.prompt is not None:
                values["prompt"] = value_at(row, self.prompt, where)
                raw["prompt"] = self.prompt
        values["labels"] = {name: spec.pair_label(row, where) for name, spec in self.labels.items()}
        return MappedRow(values, raw, rewritten=self.transcripts != "none")

    def _scored_list_rows(self, row: Any, where: RowLocation) -> list[MappedRow]:
        prompt = value_at(row, self.prompt, where)
        items = value_at(row, self.items, where)
        if not isinstance(items, list):
            raise where.error(f"expected a list of scored responses, got {type_name(items)}", self.items)
        prefixes = [f"{self.items}[{index}]" for index in range(len(items))]
        responses = [value_at(item, self.response, where, prefix) for item, prefix in zip(items, prefixes)]
        scores = [[_score_at(item, spec.columns[0], where, prefix) for item, prefix in zip(items, prefixes)]
                  for spec in self.labels.values()]
        raw_responses = [f"{prefix}.{self.response}" for prefix in prefixes]
        return self._scored_pairs(prompt, responses, scores, raw_responses)

    def _group_rows(self, group: list[tuple[int, Any]], path: str, unit: str) -> list[MappedRow]:
        first_line = group[0][0]
        locations = [RowLocation(path, line, unit) for line, _ in group]
        responses = [value_at(row, self.response, where) for (_, row), where in zip(group, locations)]
        scores = [[_score_at(row, spec.columns[0], where) for (_, row), where in zip(group, locations)]
                  for spec in self.labels.values()]
        raw_responses = [self.response if line == first_line else f"{self.response} ({unit} {line})"
                         for line, _ in group]
        return self._scored_pairs(value_at(group[0][1], self.prompt, locations[0]), responses, scores, raw_responses)

    def _scored_pairs(self, prompt: Any, responses: list, scores: list[list[float | None]],
                      raw_responses: list[str]) -> list[MappedRow]:
        """The pairs of scored responses, each labelled for every objective by :func:`score_preference`."""
        if self.pairs == "best_worst":
            pairs = best_worst_pairs(scores)
        else:
            pairs = all_pairs(scores, len(responses), self.max_pairs)
        mapped = []
        for first, second in pairs:
            labels = {
                name: score_preference(row[first], row[second], spec.min_margin, spec.higher_is_better)
                for (name, spec), row in zip(self.labels.items(), scores)
            }
            mapped.append(MappedRow(
                {"prompt": prompt, "response_0": responses[first], "response_1": responses[second], "labels": labels},
                {"prompt": self.prompt, "response_0": raw_responses[first], "response_1": raw_responses[second]},
            ))
        return mapped


def _groups(rows: Iterator[tuple[int, Any]], prompt: str, path: str, unit: str) -> Iterator[list[tuple[int, Any]]]:
    """Runs of consecutive rows whose ``prompt`` values are equal."""
    group: list[tuple[int, Any]] = []
    group_prompt = None
    for line, row in rows:
        value = value_at(row, prompt, RowLocation(path, line, unit))
        if group and value != group_prompt:
            yield group
            group = []
        group.append((line, row))
        group_prompt = value
    if group:
        yield group


def value_at(row: Any, path: str, where: RowLocation, prefix: str = "") -> Any:
    """The value at the dotted ``path`` inside ``row`` (``annotations.helpfulness.Rating``); errors name the field
    ``prefix.path`` (``prefix``: where ``row`` sits inside the source row, ``completions[2]``)."""
    value = row
    reached = prefix
    for step in path.split("."):
        if not isinstance(value, Mapping):
            expected = "an object" if reached else "a JSON object"
            raise where.error(f"expected {expected}, got {type_name(value)}", reached or None)
        reached = f"{reached}.{step}" if reached else step
        if step not in value:
            raise where.error("missing field", reached)
        value = value[step]
    return value


def _score_at(row: Any, path: str, where: RowLocation, prefix: str = "") -> float | None:
    try:
        return read_score(value_at(row, path, where, prefix))
    except TypeError as error:
        raise where.error(str(error), f"{prefix}.{path}" if prefix else path) from error


class MappedRow(dict):
    """A canonical row built by a column mapping, which knows the raw column or path each of its fields was read from
    (:meth:`raw_field`)."""

    def __init__(self, values: Mapping[str, Any], raw_fields: Mapping[str, str], rewritten: bool = False):
        super().__init__(values)
        self.raw_fields = dict(raw_fields)
        self.rewritten = rewritten

    def raw_field(self, field: str) -> str:
        """The raw name of a canonical field: ``response_0[1].content`` -> ``chosen[1].content``; for values the
        mapping rewrote (cut from transcripts) the raw column alone; labels as they are."""
        for name, raw in self.raw_fields.items():
            if field == name:
                return raw
            if field.startswith((f"{name}.", f"{name}[")):
                return raw if self.rewritten else raw + field[len(name):]
        return field


def row_location(path: str, line: int, unit: str, row: Any) -> RowLocation:
    """Where ``row`` came from; a :class:`MappedRow`'s errors name its raw fields."""
    return RowLocation(path, line, unit, row.raw_field if isinstance(row, MappedRow) else None)


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A dataset of the field with its column mapping, read from ``resources/presets/NAME.yaml``.

    Attributes:
        name: the preset's name (its file name without ``.yaml``).
        dataset: the Hub id.
        config: the dataset's config (``name`` in the file), or ``None`` for its default one.
        data_dir: the repository folder read by default, or ``None``.
        data_dirs: the folders a ``data_dir`` may name (empty: any).
        splits: the dataset card's split names.
        columns: the column mapping.
    """

    name: str
    dataset: str
    config: str | None
    data_dir: str | None
    data_dirs: tuple[str, ...]
    splits: tuple[str, ...]
    columns: ColumnMapping

    def source(self, overrides: Mapping[str, Any]) -> MappedSource:
        """The source ``{preset: NAME, **overrides}`` names (``dataset``, ``name``, ``split``, ``revision``,
        ``data_dir`` replace the preset's).

        Raises:
            ValueError: an unknown split or data_dir (listing the card's), or a malformed override.
        """
        values = {"dataset": self.dataset, "name": self.config, "data_dir": self.data_dir, **overrides}
        hub = HubDataset.from_mapping({key: value for key, value in values.items() if value is not None})
        if hub.split not in self.splits:
            raise ValueError(f"preset {self.name}: unknown split {hub.split!r}; its splits: {', '.join(self.splits)}")
        if self.data_dirs and hub.data_dir is not None and hub.data_dir not in self.data_dirs:
            raise ValueError(
                f"preset {self.name}: unknown data_dir {hub.data_dir!r}; its data_dirs: {', '.join(self.data_dirs)}"
            )
        return MappedSource(hub, self.columns, preset=self.name)


def _preset_folder():
    return resources.files("paretoalign").joinpath(*PRESET_FOLDER)


def preset_names() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(entry.name.removesuffix(".yaml") for entry in _preset_folder().iterdir()
                  if entry.name.endswith(".yaml"))


def load_preset(name: Any) -> Preset:
    """The shipped preset ``name`` (``resources/presets/NAME.yaml``).

    Raises:
        ValueError: an unknown name (listing the presets), or a malformed preset file (naming it and the key).
    """
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(names)}")
    where = f"preset {name}"
    values = yaml.safe_load(_preset_folder().joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: the preset file must be a mapping of {', '.join(PRESET_FILE_KEYS)}")
    unknown = [str(key) for key in values if key not in PRESET_FILE_KEYS]
    missing = [key for key in ("dataset", "splits", "columns") if key not in values]
    if unknown or missing:
        raise ValueError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}; its keys: "
                         f"{', '.join(PRESET_FILE_KEYS)}")
    return Preset(
        name=name,
        dataset=values["dataset"],
        config=values.get("name"),
        data_dir=values.get("data_dir"),
        data_dirs=tuple(values.get("data_dirs", ())),
        splits=tuple(values["splits"]),
        columns=ColumnMapping.from_mapping(values["columns"], f"{where}: columns"),
    )


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedSource:
    """A file or Hugging Face dataset read through a column mapping (from ``columns:`` or a preset).

    Attributes:
        source: the file or folder, or the :class:`~paretoalign.data.files.HubDataset`.
        columns: the column mapping.
        preset: the preset's name, or ``None`` for a mapping given in the config.
    """

    source: Path | HubDataset
    columns: ColumnMapping
    preset: str | None = None

    def __str__(self) -> str:
        return f"preset {self.preset} ({self.source})" if self.preset is not None else str(self.source)

    @property
    def objectives(self) -> list[str]:
        """The objectives the mapping labels, in its order."""
        return self.columns.objectives

    def select(self, objectives: Sequence[str]) -> MappedSource:
        """This source labelling only ``objectives`` (:meth:`ColumnMapping.select`); errors name the source."""
        try:
            return replace(self, columns=self.columns.select(objectives))
        except ValueError as error:
            raise ValueError(f"{self}: {error}") from error

    def renamed(self, objective: str) -> MappedSource:
        """This source's one objective renamed ``objective`` (the key of an ``{objective: source}`` mapping).

        Raises:
            ValueError: the mapping labels more than one objective.
        """
        if len(self.objectives) != 1:
            raise ValueError(
                f"{self}, the source of objective {objective!r}, labels {self.objectives}; in the {{objective: "
                "source}} form a source gives exactly one objective (or give the source alone, with objectives: "
                "[...] to choose among its objectives)"
            )
        (spec,) = self.columns.labels.values()
        return replace(self, columns=replace(self.columns, labels={objective: spec}))


def iter_rows(source: Path | HubDataset | MappedSource, prompts: bool = False) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The rows of one resolved source as ``(line or row number, row)`` and the word for that number: a file's or a
    dataset's rows (:func:`~paretoalign.data.files.iter_source_rows`), or a mapped source's canonical rows
    (:meth:`ColumnMapping.map_rows`; with ``prompts``, its prompt rows, :meth:`ColumnMapping.prompt_rows`)."""
    if not isinstance(source, MappedSource):
        return iter_source_rows(source)
    try:
        unit, rows = iter_source_rows(source.source)
    except PreferenceDataError as error:
        raise PreferenceDataError(error.problem, source, error.line, error.field, error.unit) from error
    mapping = source.columns.prompt_rows if prompts else source.columns.map_rows
    return unit, mapping(rows, str(source), unit)


def is_single_source(value: Any) -> bool:
    """True for a mapping that names one source (it holds ``dataset``, ``path`` or ``preset``); any other mapping of a
    data field maps objectives to sources."""
    return isinstance(value, Mapping) and any(key in value for key in SOURCE_KEYS)


def _check_source_keys(mapping: Mapping, valid: tuple[str, ...], kind: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in valid)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the {kind} source {dict(mapping)}; its keys: {', '.join(valid)}")


def _single_source(mapping: Mapping) -> str | os.PathLike | HubDataset | MappedSource:
    named = [key for key in SOURCE_KEYS if key in mapping]
    if len(named) > 1 and "preset" not in named:
        raise ValueError(f"the source {dict(mapping)} gives both 'dataset' and 'path'; give one")
    if "preset" in mapping:
        if "columns" in mapping:
            raise ValueError(f"the source {dict(mapping)} gives both 'preset' and 'columns'; a preset brings its own "
                             "column mapping: give one of them")
        _check_source_keys(mapping, PRESET_SOURCE_KEYS, "preset")
        return load_preset(mapping["preset"]).source({key: mapping[key] for key in HUB_DATASET_KEYS if key in mapping})
    if "path" in mapping:
        _check_source_keys(mapping, PATH_SOURCE_KEYS, "file")
        path = mapping["path"]
        if isinstance(path, str) and path.startswith(BUILTIN_PREFIX):
            path = str(builtin_data_path(path.removeprefix(BUILTIN_PREFIX)))
        elif not (isinstance(path, os.PathLike) or _is_name(path)):
            raise ValueError(f"the file source's 'path' must be a non-empty string, got {path!r}")
        if "columns" not in mapping:
            return path
        return MappedSource(Path(path), ColumnMapping.from_mapping(mapping["columns"]))
    _check_source_keys(mapping, DATASET_SOURCE_KEYS, "dataset")
    hub = HubDataset.from_mapping({key: value for key, value in mapping.items() if key != "columns"})
    if "columns" not in mapping:
        return hub
    return MappedSource(hub, ColumnMapping.from_mapping(mapping["columns"]))


def resolve_data_source(
    source: str | os.PathLike | HubDataset | MappedSource | Mapping[str, Any],
) -> str | os.PathLike | HubDataset | MappedSource | dict[str, str | os.PathLike | HubDataset | MappedSource]:
    """The source a data field's value names, read by :func:`iter_rows` after :func:`data_source`:

    - ``builtin:NAME``: the path of the shipped data (:func:`~paretoalign.data.files.builtin_data_path`, a string);
    - ``{dataset, name, split, revision, data_dir}``: a :class:`~paretoalign.data.files.HubDataset`;
      ``{path: FILE}``: the file;
    - the same with ``columns: {...}``, or ``{preset: NAME, split, ...}``: a :class:`MappedSource`;
    - any other mapping: ``{objective: source}``, each value resolved, in the same order;
    - any other value (a path, a resolved source) unchanged.

    Raises:
        FileNotFoundError: listing the shipped data files, for a ``builtin:NAME`` that is not shipped.
        ValueError: ``NAME`` is not a relative path, or a source mapping, its column mapping or its preset is
            malformed (naming the key at fault and listing the valid ones), or an objective's source is a mapping
            that names no source.
    """
    if is_single_source(source):
        return _single_source(source)
    if isinstance(source, Mapping):
        resolved = {}
        for name, value in source.items():
            if isinstance(value, Mapping) and not is_single_source(value):
                raise ValueError(f"the source of objective {name!r} is a mapping with none of "
                                 f"{', '.join(SOURCE_KEYS)}: {dict(value)}")
            resolved[name] = resolve_data_source(value)
        return resolved
    if isinstance(source, str) and source.startswith(BUILTIN_PREFIX):
        return str(builtin_data_path(source.removeprefix(BUILTIN_PREFIX)))
    return source


def data_source(source: str | os.PathLike | HubDataset | MappedSource) -> Path | HubDataset | MappedSource:
    """What :func:`iter_rows` reads for one resolved source: a dataset or a mapped source as it is, else its path."""
    return source if isinstance(source, (HubDataset, MappedSource)) else Path(source)
