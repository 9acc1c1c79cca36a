"""Reading rows from data files, with errors that name the file, the line (or row) and the field at fault.

Every loader of :mod:`paretoalign.data` reads its sources here: JSON Lines (``.jsonl``), JSON (``.json``: an array
of rows, or JSON Lines when it does not start with ``[``), Parquet (``.parquet``) and folders written by
``datasets.Dataset.save_to_disk``, each row numbered by its physical line (JSON Lines) or its 1-based row index, and
Hugging Face datasets (:class:`HubDataset`, a Hub id or a local clone of a Hub dataset repository, loaded by
``datasets.load_dataset``), each row numbered by its 0-based index in the split.

Data shipped with paretoalign lives under ``src/paretoalign/resources/`` and is named ``builtin:NAME`` with ``NAME``
relative to that folder (``builtin:hh-rlhf/helpful/test.jsonl``); :func:`builtin_data_path` gives its path, and
:func:`paretoalign.data.columns.resolve_data_source` turns every form of source into what these readers read.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pyarrow
import pyarrow.parquet

__all__ = [
    "BUILTIN_PREFIX", "DATA_FILE_SUFFIXES", "HUB_DATASET_KEYS", "HubDataset", "PreferenceDataError", "RowLocation",
    "builtin_data_path", "iter_source_rows", "read_messages", "split_conversation",
]

DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
"""File formats :func:`iter_source_rows` reads, besides directories written by ``Dataset.save_to_disk``."""

BUILTIN_PREFIX = "builtin:"
"""Prefix of a source that names data shipped with paretoalign (``builtin:hh-rlhf/helpful/test.jsonl``)."""

HUB_DATASET_KEYS = ("dataset", "name", "split", "revision", "data_dir")
"""Keys of a mapping that names a Hugging Face dataset (:class:`HubDataset`)."""


@dataclass(frozen=True)
class HubDataset:
    """A Hugging Face dataset source, read as
    ``datasets.load_dataset(dataset, name, split=split, revision=revision, data_dir=data_dir)``.

    Attributes:
        dataset: a Hub id ``ORG/NAME`` or a local folder holding a clone of a Hub dataset repository.
        name: the dataset's config, or ``None`` for its default one.
        split: the split read.
        revision: a branch, tag or commit of the dataset repository, or ``None`` for its default branch.
        data_dir: a folder of the repository whose files alone are read (Anthropic/hh-rlhf's ``harmless-base``),
            or ``None`` for the config's files.
    """

    dataset: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_dir: str | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> HubDataset:
        """The source a mapping ``{dataset, name (optional), split (default train), revision (optional), data_dir
        (optional)}`` names.

        Raises:
            ValueError: an unknown key, a missing ``dataset``, or a value of the wrong type.
        """
        unknown = sorted(str(key) for key in mapping if key not in HUB_DATASET_KEYS)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in the dataset source {dict(mapping)}; its keys are "
                f"{', '.join(HUB_DATASET_KEYS)}"
            )
        if "dataset" not in mapping:
            raise ValueError(
                f"the dataset source {dict(mapping)} has no 'dataset' (a Hub id ORG/NAME or a local folder)"
            )
        dataset = mapping["dataset"]
        if isinstance(dataset, os.PathLike):
            dataset = os.fspath(dataset)
        values = {"dataset": dataset, **{key: mapping[key] for key in HUB_DATASET_KEYS[1:] if key in mapping}}
        for key, value in values.items():
            optional = key in ("name", "revision", "data_dir")
            if not (isinstance(value, str) and value.strip()) and not (optional and value is None):
                raise ValueError(
                    f"the dataset source's {key!r} must be a non-empty string{' or null' if optional else ''}, "
                    f"got {value!r}"
                )
        return cls(**values)

    def __str__(self) -> str:
        text = f"dataset {self.dataset!r}"
        if self.name is not None:
            text += f", config {self.name!r}"
        text += f", split {self.split!r}"
        if self.revision is not None:
            text += f", revision {self.revision!r}"
        if self.data_dir is not None:
            text += f", data_dir {self.data_dir!r}"
        return text


class PreferenceDataError(ValueError):
    """Bad data (preference pairs or prompts), located by file, line (or row) and field.

    Attributes:
        problem: what is wrong, without the location.
        path: the file or directory at fault, any other source as its text (a :class:`HubDataset`: its dataset,
            config, split and revision), or ``None`` for an in-memory dataset.
        line: 1-based line number for JSON Lines files and JSON syntax errors, the 0-based row index for a
            :class:`HubDataset`, otherwise the 1-based row number (row index + 1); ``None`` when the problem is
            not tied to one row.
        field: the field at fault (``"labels.harmless"`` for one label, ``"prompt[2].role"`` for a message),
            or ``None`` when the whole row or file is at fault.
        unit: ``"line"`` or ``"row"``, the word the message uses for ``line``.
    """

    def __init__(
        self,
        problem: str,
        path: str | os.PathLike | object | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ):
        self.problem = problem
        self.path = None if path is None else os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
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
class RowLocation:
    """Where a row came from (file, line or row number, and the word for that number); builds errors that name it.

    ``raw_field`` names a field of a row built from another one (a column mapping,
    :mod:`paretoalign.data.columns`) by the column or path of the source row it was read from; ``None``: fields are
    named as they are.
    """

    path: str | None
    line: int | None
    unit: str
    raw_field: Callable[[str], str] | None = None

    def error(self, problem: str, field: str | None = None) -> PreferenceDataError:
        """A :class:`PreferenceDataError` for ``problem`` at this row and ``field`` (``None``: the whole row)."""
        if field is not None and self.raw_field is not None:
            field = self.raw_field(field)
        return PreferenceDataError(problem, self.path, self.line, field, self.unit)


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


def _iter_hub_dataset(source: HubDataset) -> Iterator[tuple[int, Any]]:
    try:
        dataset = datasets.load_dataset(
            source.dataset, source.name, split=source.split, revision=source.revision, data_dir=source.data_dir
        )
    except FileNotFoundError as error:
        raise FileNotFoundError(errno.ENOENT, f"dataset not found ({error})", str(source)) from error
    except ConnectionError as error:
        if not datasets.config.HF_HUB_OFFLINE:
            raise PreferenceDataError(f"cannot be loaded: {error}", source) from error
        raise PreferenceDataError(
            f"is not in the datasets cache ({datasets.config.HF_DATASETS_CACHE}) and HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE forbid downloading it; load it once online, or clone the repository "
            f"(hf download --repo-type dataset {source.dataset} --local-dir DIR) and give the folder as 'dataset'",
            source,
        ) from error
    except (OSError, ValueError) as error:
        raise PreferenceDataError(f"cannot be loaded: {error}", source) from error
    return enumerate(dataset)


def iter_source_rows(path: Path | HubDataset) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The rows of one source as ``(line or row number, row)`` and the word for that number.

    ``path`` is a file with one of the :data:`DATA_FILE_SUFFIXES`, a directory written by
    ``datasets.Dataset.save_to_disk``, or a :class:`HubDataset`, loaded here, whose rows are numbered from 0. File
    rows are read lazily, so a row's error is raised when the iterator reaches it.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the Hugging Face dataset is not found.
        PreferenceDataError: an unsupported file type, a directory that is not a saved dataset (or holds several
            splits), a Hugging Face dataset that cannot be loaded (an unknown config or split, say), and, while
            iterating, malformed JSON or UTF-8 at its line.
    """
    if isinstance(path, HubDataset):
        return "row", _iter_hub_dataset(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "data file not found", str(path))
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


def type_name(value: Any) -> str:
    """The JSON-ish name of a value's type for error messages (``"null"`` for ``None``)."""
    return "null" if value is None else type(value).__name__


def read_messages(value: Any, field: str, where: RowLocation) -> list[dict]:
    """Validate a conversational message list ``[{"role": str, "content": str | list}, ...]``."""
    if not isinstance(value, list):
        raise where.error(f"expected a list of messages, got {type_name(value)}", field)
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise where.error(f"expected a message object, got {type_name(message)}", f"{field}[{index}]")
        for key, expected_types, description in (
            ("role", (str,), "a string"),
            ("content", (str, list), "a string or a list"),
        ):
            if key not in message:
                raise where.error("missing field", f"{field}[{index}].{key}")
            if not isinstance(message[key], expected_types):
                raise where.error(f"expected {description}, got {type_name(message[key])}", f"{field}[{index}].{key}")
        messages.append(dict(message))
    return messages


def split_conversation(messages: list[dict], field: str, where: RowLocation) -> tuple[list[dict], list[dict]]:
    """A full conversation as (prompt messages, the final run of assistant messages); errors name ``field``."""
    start = len(messages)
    while start > 0 and messages[start - 1]["role"] == "assistant":
        start -= 1
    if start == len(messages):
        raise where.error("a conversation without a prompt must end with an assistant message", field)
    if start == 0:
        raise where.error("conversation has no prompt messages before the assistant reply", field)
    return messages[:start], messages[start:]


def is_blank(messages: list[dict]) -> bool:
    """True when no message has content (empty or whitespace-only strings, empty lists)."""
    return all(
        not message["content"].strip() if isinstance(message["content"], str) else not message["content"]
        for message in messages
    )


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
