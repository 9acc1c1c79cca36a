"""Atomic writes of files and folders: a crash never leaves a half-written metrics file, config or checkpoint."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "replace_directory", "staging_directory", "write_bytes_atomic", "write_json_atomic", "write_text_atomic",
    "write_yaml_atomic",
]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _plain(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (non-finite floats written as null)."""
    return write_text_atomic(path, json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")


def write_yaml_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as YAML."""
    return write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


@contextmanager
def staging_directory(destination: Path) -> Iterator[Path]:
    """A new hidden sibling directory of `destination`, removed on exit unless it was renamed away."""
    staging = destination.with_name(f".{destination.name}.partial-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: Path, destination: Path) -> None:
    """Rename `staging` to `destination`, first moving any existing `destination` aside and deleting it."""
    if destination.exists():
        discarded = destination.with_name(f".{destination.name}.discarded-{uuid.uuid4().hex[:8]}")
        os.replace(destination, discarded)
        shutil.rmtree(discarded, ignore_errors=True)
    os.replace(staging, destination)
