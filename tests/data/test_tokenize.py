"""Tests of paretoalign.data.tokenize: token ids, truncation to max_length, and collation into 2N sequences."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from tokenizers import processors

from paretoalign.data.files import PreferenceDataError
from paretoalign.data.preferences import load_preferences
from paretoalign.data.tokenize import PreferenceCollator, tokenize_preferences

USER = {"role": "user", "content": "How do I bake bread?"}
ASSISTANT_GOOD = {"role": "assistant", "content": "Mix flour, water, salt and yeast."}
ASSISTANT_BAD = {"role": "assistant", "content": "No."}
RENDERED_PROMPT = "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n"


def preference_dataset(rows):
    """An in-memory dataset in the load_preferences layout from (prompt, response_a, response_b, labels)."""
    prompts, responses_a, responses_b, labels = zip(*rows)
    return datasets.Dataset.from_dict(
        {
            "prompt": list(prompts),
            "response_a": list(responses_a),
            "response_b": list(responses_b),
            "labels": list(labels),
        }
    )


def token_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------------------


def test_response_mask_marks_exactly_the_response_tokens(tmp_path, tiny_tokenizer):
    rows = [
        ("Human: How do I bake bread?\n\nAssistant:", " Mix flour and water.", " No.", [1, 0]),
        ("Human: Be kind.\n\nAssistant:", " Yes.", " I cannot help with that request.", [0, -1]),
    ]
    tokenised, report = tokenize_preferences(preference_dataset(rows), tiny_tokenizer, max_length=64)
    assert report.rows == 2 and report.truncated_rows == 0
    batch = PreferenceCollator(tiny_tokenizer.pad_token_id)([tokenised[0], tokenised[1]])
    texts = [(prompt, response) for prompt, response, _, _ in rows] + [
        (prompt, response) for prompt, _, response, _ in rows
    ]
    for index, (prompt, response) in enumerate(texts):
        ids = batch["input_ids"][index]
        in_response = batch["response_mask"][index].bool()
        attended = batch["attention_mask"][index].bool()
        assert tiny_tokenizer.decode(ids[in_response]) == response + "<|im_end|>"
        assert tiny_tokenizer.decode(ids[attended & ~in_response]) == prompt
        assert (ids[~attended] == tiny_tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [[1, 0], [0, -1]]


def test_chat_rendered_responses_get_no_second_eos(tmp_path, tiny_tokenizer, write_jsonl):
    path = write_jsonl(
        tmp_path / "chat.jsonl", [{"prompt": [USER], "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}]
    )
    dataset, _ = load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    tokenised, _ = tokenize_preferences(dataset, tiny_tokenizer, max_length=128)
    assert tiny_tokenizer.decode(tokenised[0]["response_b_input_ids"]) == "No.<|im_end|>\n"
    assert tokenised[0]["prompt_input_ids"] == tiny_tokenizer(RENDERED_PROMPT)["input_ids"]
    without_eos, _ = tokenize_preferences(
        preference_dataset([("Q:", " No.", " Yes.", [1])]), tiny_tokenizer, 16, add_eos=False
    )
    assert without_eos[0]["response_a_input_ids"] == token_ids(tiny_tokenizer, " No.")


def test_truncation_keeps_the_end_of_the_prompt_and_counts_rows(tiny_tokenizer):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 4 + "Human: bake?"
    long_response = " Mix flour, water, salt and yeast, then bake it." * 3
    rows = [
        ("Human: hi", " Yes.", " No.", [1]),
        (long_prompt, " Yes.", " No.", [1]),
        (long_prompt, long_response, " No.", [-1]),
    ]
    prompt_ids = tiny_tokenizer(long_prompt)["input_ids"]
    response_ids = token_ids(tiny_tokenizer, long_response) + [tiny_tokenizer.eos_token_id]
    short_ids = token_ids(tiny_tokenizer, " Yes.") + [tiny_tokenizer.eos_token_id]
    assert len(short_ids) >= len(token_ids(tiny_tokenizer, " No.")) + 1
    max_length, max_prompt_length = 24, 10
    assert len(prompt_ids) > max_length - len(short_ids) > max_prompt_length

    tokenised, report = tokenize_preferences(
        preference_dataset(rows), tiny_tokenizer, max_length=max_length, max_prompt_length=max_prompt_length
    )
    assert report.rows == 3 and report.truncated_rows == 2
    assert report.max_length_seen == len(prompt_ids) + len(response_ids)
    assert tokenised[0]["prompt_input_ids"] == tiny_tokenizer("Human: hi")["input_ids"]
    # short responses: the prompt loses only what is needed, from its start
    assert tokenised[1]["prompt_input_ids"] == prompt_ids[-(max_length - len(short_ids)) :]
    assert tokenised[1]["response_a_input_ids"] == short_ids
    # a long response: the prompt is cut to max_prompt_length, then the responses at their end
    assert tokenised[2]["prompt_input_ids"] == prompt_ids[-max_prompt_length:]
    assert tokenised[2]["response_a_input_ids"] == response_ids[: max_length - max_prompt_length]
    assert tiny_tokenizer.decode(tokenised[2]["prompt_input_ids"]).endswith("Human: bake?")
    for row in tokenised:
        assert (
            len(row["prompt_input_ids"]) + max(len(row["response_a_input_ids"]), len(row["response_b_input_ids"]))
            <= max_length
        )
    assert tokenised.column_names == ["labels", "prompt_input_ids", "response_a_input_ids", "response_b_input_ids"]


def test_left_truncation_keeps_the_bos_token_and_avoids_a_double_bos(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, bos)]
    )
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 4
    rows = [(long_prompt, " Yes.", " No.", [1]), (RENDERED_PROMPT, " Yes.", " No.", [1])]
    tokenised, _ = tokenize_preferences(preference_dataset(rows), tokenizer, max_length=16, max_prompt_length=8)
    plain_ids = token_ids(tokenizer, long_prompt)
    kept = 16 - (len(token_ids(tokenizer, " Yes.")) + 1)
    assert kept > 8 and len(token_ids(tokenizer, " No.")) <= len(token_ids(tokenizer, " Yes."))
    assert tokenised[0]["prompt_input_ids"] == [bos] + plain_ids[-(kept - 1) :]
    rendered = tokenize_preferences(preference_dataset(rows[1:]), tokenizer, max_length=64)[0][0]["prompt_input_ids"]
    assert rendered == token_ids(tokenizer, RENDERED_PROMPT) and rendered[0] == bos and rendered[1] != bos


def test_overflow_error_names_the_row(tiny_tokenizer):
    rows = [("Human: hi", " Yes.", " No.", [1]), ("Human: hi", " Yes.", " I cannot help with that request." * 3, [1])]
    with pytest.raises(PreferenceDataError, match="exceeds max_length=16") as caught:
        tokenize_preferences(preference_dataset(rows), tiny_tokenizer, max_length=16, on_overflow="error")
    assert (caught.value.path, caught.value.line, caught.value.field) == (None, 2, "response_b")
    assert str(caught.value).startswith("dataset, row 2, field 'response_b'")


def test_rows_without_tokens_are_errors(tiny_tokenizer):
    with pytest.raises(PreferenceDataError, match="the response has no tokens") as caught:
        tokenize_preferences(preference_dataset([("Q:", "A", "", [1])]), tiny_tokenizer, 16, add_eos=False)
    assert (caught.value.line, caught.value.field) == (1, "response_b")
    with pytest.raises(PreferenceDataError, match="prompt has no tokens") as caught:
        tokenize_preferences(preference_dataset([("Q:", "A", "B", [1]), ("", "A", "B", [1])]), tiny_tokenizer, 16)
    assert (caught.value.line, caught.value.field) == (2, "prompt")


def test_tokenize_argument_checks(tiny_tokenizer):
    dataset = preference_dataset([("Q:", "A", "B", [1])])
    with pytest.raises(ValueError, match="max_prompt_length"):
        tokenize_preferences(dataset, tiny_tokenizer, max_length=16, max_prompt_length=16)
    with pytest.raises(ValueError, match="on_overflow"):
        tokenize_preferences(dataset, tiny_tokenizer, max_length=16, on_overflow="drop")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['labels'\]"):
        tokenize_preferences(dataset.remove_columns("labels"), tiny_tokenizer, max_length=16)


# ---------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------


def test_collator_pads_and_stacks_exact_values():
    rows = [
        {
            "prompt_input_ids": [5, 6],
            "response_a_input_ids": [7],
            "response_b_input_ids": [8, 9, 10],
            "labels": [1, 0],
            "reference_logps_a": -1.5,
            "reference_logps_b": -2.0,
        },
        {
            "prompt_input_ids": [11],
            "response_a_input_ids": [12, 13],
            "response_b_input_ids": [14],
            "labels": [0, -1],
            "reference_logps_a": -3.0,
            "reference_logps_b": -0.5,
        },
    ]
    batch = PreferenceCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0], [11, 12, 13, 0, 0], [5, 6, 8, 9, 10], [11, 14, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["response_mask"].tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[1, 0], [0, -1]] and batch["labels"].dtype == torch.long
    assert batch["reference_logps"].tolist() == [-1.5, -3.0, -2.0, -0.5]
    assert batch["reference_logps"].dtype == torch.float32

    without_reference = [{key: value for key, value in row.items() if not key.startswith("reference")} for row in rows]
    padded = PreferenceCollator(pad_token_id=99, pad_to_multiple_of=4)(without_reference)
    assert "reference_logps" not in padded
    assert padded["input_ids"].tolist()[3] == [11, 14, 99, 99, 99, 99, 99, 99]


def test_collator_rejects_bad_input():
    with pytest.raises(ValueError, match="pad_token_id must be a token id"):
        PreferenceCollator(pad_token_id=None)
    row = {"prompt_input_ids": [1], "response_a_input_ids": [2], "response_b_input_ids": [3], "labels": [1]}
    with pytest.raises(ValueError, match="different numbers of labels"):
        PreferenceCollator(0)([row, {**row, "labels": [1, 0]}])
    with pytest.raises(ValueError, match="some rows carry reference_logps"):
        PreferenceCollator(0)([row, {**row, "reference_logps_a": 0.0, "reference_logps_b": 0.0}])
