r"""``paretoalign data inspect``: what a training config's preference data holds, before any training, top to bottom.

Parse the config of ``paretoalign train`` -> load the model's tokenizer (only the tokenizer) -> for ``train_data``
and, when set, ``eval_data`` (every pair of the files; ``max_train_pairs`` / ``max_eval_pairs`` are not applied):
load the pairs and their label matrix ``S`` [N, K] (:func:`paretoalign.data.preferences.load_preferences_with_report`:
files, datasets, column mappings and presets alike)
-> labelled pairs and ties per objective (:func:`~paretoalign.data.preferences.labelled_counts`) and the conflict
matrix (:func:`~paretoalign.data.preferences.conflict_matrix`) -> prompt and response lengths in tokens, and the pairs
``max_length`` / ``max_prompt_length`` would cut, as training tokenises them
(:func:`paretoalign.data.tokenize.tokenize_preferences`) -> print the tables -> with ``--json``, write the report.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
from rich.console import Console
from rich.table import Table
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from paretoalign.config import parse_config
from paretoalign.data.preferences import (
    conflict_matrix,
    labelled_counts,
    load_preferences_with_report,
)
from paretoalign.data.tokenize import tokenize_preferences
from paretoalign.io import write_json_atomic
from paretoalign.models import GGUF_SUFFIX, load_pretrained, resolve_model
from paretoalign.trainers.preference import ParetoPreferenceConfig

__all__ = ["inspect_data", "inspect_split", "length_percentiles", "load_tokenizer", "main", "print_split"]

PERCENTILES = (50, 90, 99)
"""The length percentiles reported, besides the maximum."""


def load_tokenizer(config: ParetoPreferenceConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of ``config.model_name_or_path`` without the model's weights: from a model folder or a Hub id
    (at ``model_revision``), or read from a ``.gguf`` file (``builtin:smollm2`` is one) as its cached copy is built.

    Raises:
        FileNotFoundError: a local model path that does not exist, or a Hub id neither cached nor downloadable.
    """
    source = resolve_model(config.model_name_or_path)
    if source.hub_id is not None:
        return load_pretrained(AutoTokenizer, source, revision=config.model_revision,
                               trust_remote_code=config.trust_remote_code)
    if not source.path.exists():
        raise FileNotFoundError(f"model_name_or_path: model path not found: {str(source.path)!r}.")
    if source.path.is_file() and source.path.suffix.lower() == GGUF_SUFFIX:
        return AutoTokenizer.from_pretrained(str(source.path.parent), gguf_file=str(source.path),
                                             local_files_only=True)
    return load_pretrained(AutoTokenizer, source, revision=config.model_revision,
                           trust_remote_code=config.trust_remote_code)


def length_percentiles(lengths: list[int]) -> dict[str, int]:
    """``p50``, ``p90``, ``p99`` and ``max`` of token counts; ``p_q`` is the smallest observed length ``L`` with at
    least q% of the lengths ``<= L`` (the inverted empirical CDF, so always a length that occurs)."""
    values = np.asarray(lengths, dtype=np.int64)
    summary = {f"p{q}": int(np.percentile(values, q, method="inverted_cdf")) for q in PERCENTILES}
    summary["max"] = int(values.max())
    return summary


def _token_lengths(config: ParetoPreferenceConfig, pairs: datasets.Dataset, tokenizer) -> dict[str, Any]:
    """Prompt and response lengths in tokens as training tokenises the pairs, and what ``max_length`` cuts.

    The pairs are tokenised once with the config's limits (its :class:`~paretoalign.data.tokenize.TokenizeReport`
    counts the truncated pairs) and once with a limit above the longest pair, which cuts nothing; a pair loses
    prompt tokens when its prompt is shorter in the first than in the second.
    """
    fitted, report = tokenize_preferences(pairs, tokenizer, config.max_length, config.max_prompt_length)
    whole, _ = tokenize_preferences(pairs, tokenizer, report.max_length_seen + 1)
    prompts = [len(ids) for ids in whole["prompt_input_ids"]]
    responses = [len(ids) for column in ("response_a_input_ids", "response_b_input_ids") for ids in whole[column]]
    prompt_cut = sum(len(ids) < length for ids, length in zip(fitted["prompt_input_ids"], prompts))
    return {
        "lengths": {"prompt": length_percentiles(prompts), "response": length_percentiles(responses)},
        "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length or config.max_length // 2,
        "truncated_pairs": report.truncated_rows,
        "prompt_truncated_pairs": prompt_cut,
    }


def inspect_split(config: ParetoPreferenceConfig, source, tokenizer, objectives) -> tuple[dict[str, Any], list[str]]:
    """The report of one split (see the module docstring) and its objective names.

    ``objectives.<name>``: ``labelled`` (pairs with ``S_ik != 0``) and ``ties`` (pairs in the data whose label for
    that objective is null or missing, ``S_ik = 0``: no preference between the two responses); ``conflict.<a>.<b>``:
    the share of the pairs labelled by both on which a and b disagree (null when none is), with the counts in
    ``labelled_by_both.<a>.<b>``.
    """
    pairs, names, load_report = load_preferences_with_report(source, objectives=objectives, tokenizer=tokenizer)
    labels = np.asarray(pairs["labels"], dtype=np.int64)
    labelled = labelled_counts(labels)
    conflict, both = conflict_matrix(labels)
    report = {
        "sources": list(load_report.sources),
        "pairs": len(pairs),
        "rows_read": load_report.rows_read,
        "dropped_identical": load_report.dropped_identical,
        "dropped_unlabelled": load_report.dropped_unlabelled,
        "objectives": {name: {"labelled": int(labelled[k]), "ties": len(pairs) - int(labelled[k])}
                       for k, name in enumerate(names)},
        "conflict": {a: {b: None if np.isnan(conflict[i, j]) else float(conflict[i, j]) for j, b in enumerate(names)}
                     for i, a in enumerate(names)},
        "labelled_by_both": {a: {b: int(both[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
        **_token_lengths(config, pairs, tokenizer),
    }
    return report, names


def inspect_data(config: ParetoPreferenceConfig) -> dict[str, Any]:
    """The training split's report (:func:`inspect_split`) with the held-out split's under ``eval`` when
    ``eval_data`` is set."""
    if config.train_data is None:
        raise ValueError("train_data is not set: give a file of multi-labelled pairs, a dataset or preset "
                         "({dataset: ...}, {preset: NAME, split: ...}) or a mapping objective -> source.")
    tokenizer = load_tokenizer(config)
    report, names = inspect_split(config, config.train_data, tokenizer, config.objectives)
    if config.eval_data is not None:
        report["eval"], _ = inspect_split(config, config.eval_data, tokenizer, names)
    return report


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def print_split(report: dict[str, Any], split: str, console: Console) -> None:
    """The tables of one split: labels per objective, the conflict matrix, lengths, and what max_length cuts."""
    names = list(report["objectives"])
    labels = Table(title=f"{split}: {report['pairs']} pairs from {', '.join(report['sources'])}")
    for column in ("objective", "labelled", "ties (no label)"):
        labels.add_column(column, justify="left" if column == "objective" else "right", no_wrap=True)
    for name, counts in report["objectives"].items():
        labels.add_row(name, str(counts["labelled"]), str(counts["ties"]))
    console.print(labels)
    conflict = Table(title=f"{split}: share of the pairs labelled by both that the two objectives disagree on "
                           "(pairs labelled by both)")
    conflict.add_column("objective", no_wrap=True)
    for name in names:
        conflict.add_column(name, justify="right", no_wrap=True)
    for a in names:
        conflict.add_row(a, *(f"{_share(report['conflict'][a][b])} ({report['labelled_by_both'][a][b]})"
                              for b in names))
    console.print(conflict)
    lengths = Table(title=f"{split}: lengths in tokens")
    lengths.add_column("text", no_wrap=True)
    for column in report["lengths"]["prompt"]:
        lengths.add_column(column, justify="right", no_wrap=True)
    for text, summary in report["lengths"].items():
        lengths.add_row(text, *(str(value) for value in summary.values()))
    console.print(lengths)
    console.print(f"{split}: max_length={report['max_length']} truncates {report['truncated_pairs']} of "
                  f"{report['pairs']} pairs; {report['prompt_truncated_pairs']} lose prompt tokens "
                  f"(max_prompt_length={report['max_prompt_length']})", soft_wrap=True)


def main(config_file: str, json_path: str | None, argv: list[str], console: Console) -> int:
    """``paretoalign data inspect --config FILE [--json OUT] [--field value ...]``."""
    config = parse_config(ParetoPreferenceConfig, config_file, argv)
    report = inspect_data(config)
    print_split(report, "train", console)
    if "eval" in report:
        print_split(report["eval"], "eval", console)
    if json_path is not None:
        console.print(f"wrote {write_json_atomic(json_path, report)}", soft_wrap=True)
    return 0
