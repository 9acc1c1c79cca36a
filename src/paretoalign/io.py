"""Atomic file writes: a crash never leaves a half-written metrics or config file behind."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

__all__ = ["write_json_atomic", "write_text_atomic", "write_yaml_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


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
