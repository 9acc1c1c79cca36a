"""Preference pairs -> token ids -> padded batches.

:func:`tokenize_preferences` turns the rows of :func:`~paretoalign.data.preferences.load_preferences` into token ids
fitted to a length budget (:class:`TokenizeReport` counts what was truncated), and :class:`PreferenceCollator` pads
N tokenised rows into one batch of ``2N`` sequences (prompt + response_a, then prompt + response_b) with the masks
the preference losses need.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from paretoalign.data.files import RowLocation
from paretoalign.data.preferences import PREFERENCE_FEATURES

__all__ = [
    "REFERENCE_COLUMNS", "PreferenceCollator", "TokenizeReport", "has_reference_logps", "prompt_token_ids",
    "tokenize_preferences", "with_reference_logps",
]

#: The columns holding each pair's reference log-probabilities (response a, response b), read by the collator.
REFERENCE_COLUMNS = ("reference_logps_a", "reference_logps_b")


def with_reference_logps(dataset, logps):
    """``dataset`` with the reference log-probabilities ``logps`` [N, 2] (a, b) as its :data:`REFERENCE_COLUMNS`."""
    for column, values in zip(REFERENCE_COLUMNS, logps.T):
        dataset = dataset.add_column(column, values.tolist())
    return dataset


def has_reference_logps(dataset) -> bool:
    """Whether ``dataset``'s pairs carry their reference log-probabilities (both :data:`REFERENCE_COLUMNS`)."""
    columns = getattr(dataset, "column_names", None) or []
    return all(column in columns for column in REFERENCE_COLUMNS)

logger = logging.getLogger(__name__)


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
            where = RowLocation(None, index + 1, "row")
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
        with_reference = [all(column in row for column in REFERENCE_COLUMNS) for row in rows]
        if any(with_reference):
            if not all(with_reference):
                raise ValueError("some rows carry reference_logps_a / reference_logps_b and others do not")
            batch["reference_logps"] = torch.tensor(
                [float(row["reference_logps_a"]) for row in rows] + [float(row["reference_logps_b"]) for row in rows],
                dtype=torch.float32,
            )
        return batch

