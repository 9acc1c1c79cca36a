r"""``paretoalign data inspect`` and ``paretoalign data label``: what a training config's preference data holds, and a
new objective labelled by a judge, top to bottom.

``data inspect``:

Parse the config of ``paretoalign train`` -> load the model's tokenizer (only the tokenizer) -> for ``train_data``
and, when set, ``eval_data`` (every pair of the files; ``max_train_pairs`` / ``max_eval_pairs`` are not applied):
load the pairs and their label matrix ``S`` [N, K] (:func:`paretoalign.data.preferences.load_preferences_with_report`:
files, datasets, column mappings and presets alike)
-> labelled pairs and ties per objective (:func:`~paretoalign.data.preferences.labelled_counts`) and the conflict
matrix (:func:`~paretoalign.data.preferences.conflict_matrix`) -> prompt and response lengths in tokens, and the pairs
``max_length`` / ``max_prompt_length`` would cut, as training tokenises them
(:func:`paretoalign.data.tokenize.tokenize_preferences`) -> print the tables -> with ``--json``, write the report.

``data label --judge SPEC --objective NAME --output FILE [--split train|eval]``: load the split's pairs as training
reads them (prompts and responses as text, conversations rendered with the chat template) -> build the judge (a reward
spec: ``{name: pair_classifier, path: CogComp/bart-faithful-summary-detector}``, ``{name: reward_model, ...}``, any
reward) -> score both responses of every pair -> the new objective's label is the sign of the difference
(:func:`paretoalign.data.preferences.judged_labels`; a tie or a missing score: no label) -> write every pair with its
labels and the new one as multi-label JSON Lines (atomically) -> print the counts and how often the new objective
disagrees with each other one. This is how the RACO paper's third objective, faithfulness, is labelled.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
import numpy as np
from rich.console import Console
from rich.table import Table
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from paretoalign.config import parse_config
from paretoalign.data.preferences import (
    conflict_matrix,
    judged_labels,
    labelled_counts,
    load_preferences,
    load_preferences_with_report,
)
from paretoalign.data.tokenize import tokenize_preferences
from paretoalign.io import write_json_atomic, write_text_atomic
from paretoalign.models import GGUF_SUFFIX, load_pretrained, resolve_model
from paretoalign.rewards.specs import build_reward, parse_reward_spec, reward_label, scores_of
from paretoalign.trainers.preference import ParetoPreferenceConfig

__all__ = [
    "inspect_data", "inspect_split", "label_data", "label_main", "length_percentiles", "load_tokenizer", "main",
    "print_split",
]

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


def label_data(config: ParetoPreferenceConfig, judge_spec: Any, objective: str, split: str = "train") -> dict[str, Any]:
    """Label the pairs of ``train_data`` (``split="train"``) or ``eval_data`` with a judge as objective ``objective``
    (see the module docstring); returns ``{"rows": [...], "report": {...}}``: the multi-label rows to write and the
    counts (``labelled``, ``ties``, ``unscored``, ``disagreement`` with each existing objective on the pairs both
    label).

    Raises:
        ValueError: an unknown split, the split not set, ``objective`` empty or already an objective of the data, or
            a malformed judge spec.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"--split must be 'train' or 'eval', got {split!r}.")
    source = config.train_data if split == "train" else config.eval_data
    if source is None:
        raise ValueError(f"{split}_data is not set: there are no pairs to label.")
    if not objective or not objective.strip():
        raise ValueError("--objective names the new objective; got an empty name.")
    spec = parse_reward_spec(judge_spec, "--judge")
    tokenizer = load_tokenizer(config)
    pairs, names = load_preferences(source, objectives=config.objectives, tokenizer=tokenizer)
    if objective in names:
        raise ValueError(f"the data already has an objective {objective!r} (objectives: {names}); choose a new name.")
    judge = build_reward(spec, "--judge")
    prompts = list(pairs["prompt"])
    scores = {
        column: scores_of(judge(prompts=prompts, completions=list(pairs[column])), len(prompts), reward_label(spec))
        for column in ("response_a", "response_b")
    }
    new = judged_labels(scores["response_a"], scores["response_b"])
    rows = [
        {"prompt": row["prompt"], "response_0": row["response_a"], "response_1": row["response_b"],
         "labels": {**{name: None if s == 0 else 0 if s > 0 else 1 for name, s in zip(names, row["labels"])},
                    objective: label}}
        for row, label in zip(pairs, new)
    ]
    unscored = sum(1 for a, b in zip(*scores.values()) if not (_finite(a) and _finite(b)))
    labelled = sum(label is not None for label in new)
    signs = np.asarray([[*row["labels"], 0 if label is None else 1 - 2 * label] for row, label in zip(pairs, new)],
                       dtype=np.int64).reshape(len(new), len(names) + 1)
    conflict, both = conflict_matrix(signs)
    report = {
        "judge": reward_label(spec), "objective": objective, "split": split, "pairs": len(rows),
        "labelled": labelled, "ties": len(rows) - labelled - unscored, "unscored": unscored,
        "disagreement": {name: {"share": None if both[-1, k] == 0 else float(conflict[-1, k]),
                                "pairs": int(both[-1, k])} for k, name in enumerate(names)},
    }
    return {"rows": rows, "report": report}


def _finite(value: float | None) -> bool:
    return value is not None and bool(np.isfinite(value))


def label_main(config_file: str, judge: str, objective: str, output: str, split: str, argv: list[str],
               console: Console) -> int:
    """``paretoalign data label --config FILE --judge SPEC --objective NAME --output FILE [--split train|eval]``."""
    config = parse_config(ParetoPreferenceConfig, config_file, argv)
    result = label_data(config, judge, objective, split)
    report = result["report"]
    written = write_text_atomic(output, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result["rows"]))
    console.print(
        f"{report['objective']} labelled by {report['judge']!r} on {report['pairs']} {split} pairs: "
        f"{report['labelled']} labelled, {report['ties']} ties, {report['unscored']} unscored; wrote {written}",
        soft_wrap=True,
    )
    for name, entry in report["disagreement"].items():
        share = "-" if entry["share"] is None else f"{entry['share']:.2%}"
        console.print(f"disagrees with {name} on {share} of the {entry['pairs']} pairs both label", soft_wrap=True)
    return 0
