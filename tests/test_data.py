"""Tests of paretoalign.data: loading and validation, tokenisation, collation, sampling, shipped data."""

from __future__ import annotations

import json
import pickle
import warnings
from collections import Counter

import datasets
import pyarrow
import pyarrow.parquet
import pytest
import torch
from tokenizers import processors
from torch.utils.data import DataLoader

from conftest import build_tiny_tokenizer
from paretoalign.data import (
    LoadReport,
    ObjectiveBalancedSampler,
    PreferenceCollator,
    PreferenceDataError,
    builtin_data_path,
    load_preferences,
    load_preferences_with_report,
    tokenize_preferences,
)

HH = "hh-rlhf"
USER = {"role": "user", "content": "How do I bake bread?"}
ASSISTANT_GOOD = {"role": "assistant", "content": "Mix flour, water, salt and yeast."}
ASSISTANT_BAD = {"role": "assistant", "content": "No."}
RENDERED_PROMPT = "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def multi_label_row(prompt="Human: hi\n\nAssistant:", response_0="Hello!", response_1="Go away.", **labels):
    return {"prompt": prompt, "response_0": response_0, "response_1": response_1, "labels": labels}


def pair_row(prompt="Human: hi\n\nAssistant:", chosen="Hello!", rejected="Go away."):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def assert_located(error: PreferenceDataError, path, line, field):
    """The error carries and names the file, the line (or row) and the field."""
    assert error.path == str(path)
    assert error.line == line
    assert error.field == field
    message = str(error)
    assert path.name in message
    assert f"{error.unit} {line}" in message
    if field is not None:
        assert repr(field) in message


# ---------------------------------------------------------------------------------------------------------
# Real data, both shapes
# ---------------------------------------------------------------------------------------------------------


def test_multi_label_file_from_shared_data(shared_data):
    path = shared_data / HH / "harmless-concise" / "train.jsonl"
    dataset, names, report = load_preferences_with_report(path)
    assert names == ["harmless", "concise"]
    assert len(dataset) == 1190
    assert dataset.column_names == ["prompt", "response_a", "response_b", "labels"]
    label_counts = Counter((name, labels[k]) for labels in dataset["labels"] for k, name in enumerate(names))
    assert label_counts == {
        ("harmless", 1): 596,
        ("harmless", -1): 594,
        ("concise", 1): 595,
        ("concise", -1): 569,
        ("concise", 0): 26,
    }
    agreeing = sum(1 for harmless, concise in dataset["labels"] if concise != 0 and concise == harmless)
    assert agreeing == 653  # the README's "agree on 653 of 1,164 labelled pairs"
    assert report == LoadReport(
        sources=(str(path),),
        rows_read=1190,
        rows_kept=1190,
        dropped_identical=0,
        kept_identical=0,
        dropped_unlabelled=0,
        labelled_rows={"harmless": 1190, "concise": 1164},
    )
    first = read_jsonl(path)[0]
    assert dataset[0] == {
        "prompt": first["prompt"],
        "response_a": first["response_0"],
        "response_b": first["response_1"],
        "labels": [1, 1],  # both labels are 0: response_0 (= response_a) preferred
    }


def test_objectives_argument_sets_the_label_column_order(shared_data):
    path = shared_data / HH / "harmless-concise" / "test.jsonl"
    default, default_names = load_preferences(path)
    reordered, names = load_preferences(path, objectives=["concise", "harmless"])
    assert default_names == ["harmless", "concise"] and names == ["concise", "harmless"]
    assert reordered["labels"] == [[concise, harmless] for harmless, concise in default["labels"]]


def test_one_dataset_per_objective_from_shared_data(shared_data):
    paths = {
        "helpful": shared_data / HH / "helpful" / "train.jsonl",
        "harmless": shared_data / HH / "harmless" / "train.jsonl",
    }
    dataset, names, report = load_preferences_with_report(paths)
    assert names == ["helpful", "harmless"]
    assert len(dataset) == 1077 + 1190
    assert dataset["labels"] == [[1, 0]] * 1077 + [[0, 1]] * 1190
    assert report.labelled_rows == {"helpful": 1077, "harmless": 1190}
    first_harmless = read_jsonl(paths["harmless"])[0]
    assert dataset[1077]["prompt"] == first_harmless["prompt"]
    assert dataset[1077]["response_a"] == first_harmless["chosen"]
    assert dataset[1077]["response_b"] == first_harmless["rejected"]
    swapped, swapped_names = load_preferences(paths, objectives=["harmless", "helpful"])
    assert swapped_names == ["harmless", "helpful"] and swapped["labels"][0] == [1, 0] and len(swapped) == 2267


def test_single_one_objective_file_needs_its_objective_name(shared_data):
    path = shared_data / HH / "harmless" / "test.jsonl"
    dataset, names = load_preferences(path, objectives=["harmless"])
    assert names == ["harmless"] and len(dataset) == 300 and dataset["labels"] == [[1]] * 300
    with pytest.raises(PreferenceDataError, match=r"objectives=\['name'\]"):
        load_preferences(path)


def test_dict_source_objectives_must_match_its_keys(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [pair_row()])
    with pytest.raises(ValueError, match="must name exactly the objectives"):
        load_preferences({"helpful": path}, objectives=["harmless"])
    with pytest.raises(ValueError, match="more than once"):
        load_preferences({"helpful": path}, objectives=["helpful", "helpful"])


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------


def test_json_parquet_and_saved_dataset_match_json_lines(shared_data, tmp_path):
    rows = read_jsonl(shared_data / HH / "harmless-concise" / "train.jsonl")[:40]
    rows[3]["labels"] = {"concise": None, "harmless": 1}  # another key order
    rows[5]["labels"] = {"harmless": 0}  # a missing label means "no label"
    jsonl = write_jsonl(tmp_path / "rows.jsonl", rows)
    json_array = tmp_path / "rows.json"
    json_array.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    json_lines_in_json = write_jsonl(tmp_path / "lines.json", rows)
    parquet = tmp_path / "rows.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))

    reference, names = load_preferences(jsonl)
    assert names == ["harmless", "concise"]
    assert reference[3]["labels"] == [-1, 0] and reference[5]["labels"] == [1, 0]
    for path in (json_array, json_lines_in_json, parquet, saved):
        dataset, other_names = load_preferences(path)
        assert other_names == names
        assert dataset.to_dict() == reference.to_dict(), path
        assert dataset.features == reference.features


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(multi_label_row(a=0)) + "\n\n" + json.dumps(multi_label_row(a=2)) + "\n")
    with pytest.raises(PreferenceDataError) as caught:
        load_preferences(path)
    assert_located(caught.value, path, 4, "labels.a")


# ---------------------------------------------------------------------------------------------------------
# Conversational rows
# ---------------------------------------------------------------------------------------------------------


def test_conversational_explicit_prompt_is_rendered_with_the_chat_template(tmp_path, tiny_tokenizer):
    path = write_jsonl(
        tmp_path / "chat.jsonl", [{"prompt": [USER], "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}]
    )
    dataset, _ = load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert dataset[0] == {
        "prompt": RENDERED_PROMPT,
        "response_a": "Mix flour, water, salt and yeast.<|im_end|>\n",
        "response_b": "No.<|im_end|>\n",
        "labels": [1],
    }


def test_conversational_implicit_prompt_and_full_conversations_agree(tmp_path, tiny_tokenizer):
    history = [USER, {"role": "assistant", "content": "Do you have yeast?"}, {"role": "user", "content": "Yes."}]
    explicit = {"prompt": history, "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}
    implicit = {"chosen": history + [ASSISTANT_GOOD], "rejected": history + [ASSISTANT_BAD]}
    full_with_prompt = {"prompt": history, "chosen": history + [ASSISTANT_GOOD], "rejected": history + [ASSISTANT_BAD]}
    path = write_jsonl(tmp_path / "chat.jsonl", [explicit, implicit, full_with_prompt])
    dataset, _ = load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    expected_prompt = (
        "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\nDo you have yeast?<|im_end|>\n"
        "<|im_start|>user\nYes.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert dataset[0]["prompt"] == expected_prompt
    assert dataset[0] == dataset[1] == dataset[2]


def test_conversational_multi_label_rows(tmp_path, tiny_tokenizer):
    row = {
        "prompt": [USER],
        "response_0": [ASSISTANT_BAD],
        "response_1": [ASSISTANT_GOOD],
        "labels": {"helpful": 1, "concise": 0},
    }
    dataset, names = load_preferences(write_jsonl(tmp_path / "chat.jsonl", [row]), tokenizer=tiny_tokenizer)
    assert names == ["helpful", "concise"]
    assert dataset[0]["prompt"] == RENDERED_PROMPT
    assert dataset[0]["response_a"] == "No.<|im_end|>\n"
    assert dataset[0]["labels"] == [-1, 1]


def test_conversational_rows_need_a_tokenizer_with_a_chat_template(tmp_path):
    path = write_jsonl(
        tmp_path / "chat.jsonl", [{"prompt": [USER], "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}]
    )
    with pytest.raises(PreferenceDataError, match="pass tokenizer=") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 1, "prompt")
    without_template = build_tiny_tokenizer()
    without_template.chat_template = None
    with pytest.raises(PreferenceDataError, match="no chat_template"):
        load_preferences({"helpful": path}, tokenizer=without_template)


def test_implicit_prompt_parts_that_differ_are_rejected(tmp_path, tiny_tokenizer):
    other_user = {"role": "user", "content": "How do I bake cake?"}
    rows = [
        {"chosen": [USER, ASSISTANT_GOOD], "rejected": [USER, ASSISTANT_BAD]},
        {"chosen": [USER, ASSISTANT_GOOD], "rejected": [other_user, ASSISTANT_BAD]},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(PreferenceDataError, match="prompt part differs") as caught:
        load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert_located(caught.value, path, 2, "rejected")


def test_full_conversation_must_start_with_the_prompt(tmp_path, tiny_tokenizer):
    other_user = {"role": "user", "content": "How do I bake cake?"}
    row = {"prompt": [USER], "chosen": [other_user, ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(PreferenceDataError, match="must start with the prompt messages") as caught:
        load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert_located(caught.value, path, 1, "chosen")


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        (
            {"prompt": [{"content": "hi"}], "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]},
            "prompt[0].role",
            "missing",
        ),
        (
            {"prompt": [USER], "chosen": [{"role": "assistant", "content": 3}], "rejected": [ASSISTANT_BAD]},
            "chosen[0].content",
            "expected a string or a list",
        ),
        (
            {"prompt": [USER], "chosen": "Mix flour.", "rejected": [ASSISTANT_BAD]},
            "chosen",
            "list of messages like the prompt",
        ),
        (
            {"prompt": [USER], "chosen": [ASSISTANT_GOOD], "rejected": [{"role": "assistant", "content": "  "}]},
            "rejected",
            "whitespace-only",
        ),
        (
            {"chosen": [USER, ASSISTANT_GOOD], "rejected": [USER, ASSISTANT_BAD, USER]},
            "rejected",
            "must end with an assistant message",
        ),
        (
            {"chosen": "Mix flour.", "rejected": "No."},
            "prompt",
            "only conversational rows may leave the prompt implicit",
        ),
    ],
)
def test_bad_conversational_rows(tmp_path, tiny_tokenizer, row, field, problem):
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(PreferenceDataError, match=problem) as caught:
        load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert_located(caught.value, path, 1, field)


# ---------------------------------------------------------------------------------------------------------
# Bad input: one test per case, each naming file, line and field
# ---------------------------------------------------------------------------------------------------------


def test_malformed_json_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps(multi_label_row(a=0)) + "\n" + json.dumps(multi_label_row(a=1)) + "\n" + '{"prompt": "x",\n'
    )
    with pytest.raises(PreferenceDataError, match="malformed JSON") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 3, None)


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "x"},\n  {"prompt": }\n]\n')
    with pytest.raises(PreferenceDataError, match="malformed JSON") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 3, None)


@pytest.mark.parametrize("field", ["prompt", "response_0", "response_1", "labels"])
def test_missing_multi_label_field(tmp_path, field):
    row = multi_label_row(a=0)
    del row[field]
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(a=0), row])
    with pytest.raises(PreferenceDataError, match="missing field") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 2, field)


@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected"])
def test_missing_one_objective_field(tmp_path, field):
    row = pair_row()
    del row[field]
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), pair_row(), row])
    with pytest.raises(PreferenceDataError, match="missing field") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 3, field)


def test_multi_label_file_given_as_one_objective_file(shared_data):
    path = shared_data / HH / "harmless-concise" / "test.jsonl"
    with pytest.raises(PreferenceDataError, match="missing field") as caught:
        load_preferences({"harmless": path})
    assert_located(caught.value, path, 1, "chosen")


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        (pair_row(prompt=7), "prompt", "expected a string or a list of messages, got int"),
        (pair_row(chosen=["Hello"]), "chosen", "expected a string like the prompt, got list"),
        (pair_row(rejected=None), "rejected", "expected a string like the prompt, got null"),
        (["prompt", "chosen", "rejected"], None, "expected a JSON object, got list"),
    ],
)
def test_field_of_the_wrong_type(tmp_path, row, field, problem):
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), row])
    with pytest.raises(PreferenceDataError, match=problem) as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 2, field)


def test_labels_of_the_wrong_type(tmp_path):
    row = multi_label_row()
    row["labels"] = [0, 1]
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(PreferenceDataError, match="expected an object mapping objective names") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 1, "labels")


@pytest.mark.parametrize("value", [2, -1, "1", True, 0.5])
def test_label_value_outside_0_1_null(tmp_path, value):
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(a=0, b=1), multi_label_row(a=1, b=value)])
    with pytest.raises(PreferenceDataError, match="must be 0, 1 or null") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 2, "labels.b")


def test_unknown_objective_name(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(helpful=0), multi_label_row(helpful=1, harmles=0)])
    with pytest.raises(
        PreferenceDataError, match=r"unknown objective 'harmles'; known objectives: \['helpful', 'harmless'\]"
    ) as caught:
        load_preferences(path, objectives=["helpful", "harmless"])
    assert_located(caught.value, path, 2, "labels.harmles")


@pytest.mark.parametrize("response", ["", "   \n\t"])
def test_empty_or_whitespace_response(tmp_path, response):
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), pair_row(rejected=response)])
    with pytest.raises(PreferenceDataError, match="empty or whitespace-only response") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 2, "rejected")


def test_error_in_a_parquet_file_names_the_row(tmp_path):
    path = tmp_path / "rows.parquet"
    pyarrow.parquet.write_table(
        pyarrow.Table.from_pylist([multi_label_row(a=0), multi_label_row(response_1="", a=1)]), path
    )
    with pytest.raises(PreferenceDataError) as caught:
        load_preferences(path)
    assert caught.value.unit == "row"
    assert_located(caught.value, path, 2, "response_1")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "train.jsonl"
    with pytest.raises(FileNotFoundError, match="nowhere/train.jsonl"):
        load_preferences(path)
    with pytest.raises(FileNotFoundError, match="nowhere/train.jsonl"):
        load_preferences({"helpful": path})


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(PreferenceDataError, match="contains no rows") as caught:
        load_preferences(path)
    assert caught.value.path == str(path)
    with pytest.raises(PreferenceDataError, match="contains no rows"):
        load_preferences({"helpful": path})


def test_objective_without_labelled_rows(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(a=0, b=None), multi_label_row(a=1)])
    with pytest.raises(PreferenceDataError, match=r"no labelled rows for objective\(s\) 'b'$") as caught:
        load_preferences(path)
    assert caught.value.path == str(path)
    with pytest.raises(PreferenceDataError, match=r"no labelled rows for objective\(s\) 'b', 'c'$"):
        load_preferences(path, objectives=["a", "b", "c"])
    empty_after_drops = write_jsonl(tmp_path / "harmless.jsonl", [pair_row(rejected="Hello!")])
    with (
        pytest.warns(UserWarning, match="identical"),
        pytest.raises(PreferenceDataError, match="'harmless'$") as caught,
    ):
        load_preferences(
            {"helpful": write_jsonl(tmp_path / "helpful.jsonl", [pair_row()]), "harmless": empty_after_drops}
        )
    assert caught.value.path == str(empty_after_drops)


def test_unsupported_file_type_and_foreign_directories(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("prompt,chosen,rejected\n")
    with pytest.raises(PreferenceDataError, match="unsupported file type '.csv'"):
        load_preferences(csv)
    not_a_dataset = tmp_path / "folder"
    not_a_dataset.mkdir()
    with pytest.raises(PreferenceDataError, match="not one written by datasets.Dataset.save_to_disk"):
        load_preferences(not_a_dataset)
    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([multi_label_row(a=0)])}).save_to_disk(str(splits))
    with pytest.raises(PreferenceDataError, match=r"splits \['train'\]"):
        load_preferences(splits)


def test_error_survives_pickling():
    error = PreferenceDataError("bad label", "/data/x.jsonl", 4, "labels.a")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, copy.field, str(copy)) == ("/data/x.jsonl", 4, "labels.a", str(error))
    assert str(error) == "/data/x.jsonl, line 4, field 'labels.a': bad label"


# ---------------------------------------------------------------------------------------------------------
# Dropped rows are counted
# ---------------------------------------------------------------------------------------------------------


def test_identical_responses_are_dropped_counted_and_warned(tmp_path):
    rows = [pair_row(), pair_row(rejected="Hello!"), pair_row(chosen="Yes.", rejected="Yes."), pair_row(rejected="No.")]
    path = write_jsonl(tmp_path / "helpful.jsonl", rows)
    with pytest.warns(UserWarning, match=r"dropped 2 pair\(s\) with identical responses \(lines 2, 3\)"):
        dataset, _, report = load_preferences_with_report({"helpful": path})
    assert len(dataset) == 2 and dataset["response_b"] == ["Go away.", "No."]
    assert (report.rows_read, report.rows_kept, report.dropped_identical, report.kept_identical) == (4, 2, 2, 0)
    with pytest.warns(UserWarning, match=r"kept \(drop_identical=False\) 2 pair\(s\)"):
        kept, _, kept_report = load_preferences_with_report({"helpful": path}, drop_identical=False)
    assert len(kept) == 4 and (kept_report.dropped_identical, kept_report.kept_identical) == (0, 2)


def test_rows_without_any_label_are_dropped_counted_and_warned(tmp_path):
    rows = [multi_label_row(a=0, b=1), multi_label_row(a=None, b=None), multi_label_row(), multi_label_row(a=1)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.warns(UserWarning, match=r"dropped 2 row\(s\) whose labels are all null or missing \(lines 2, 3\)"):
        dataset, names, report = load_preferences_with_report(path)
    assert names == ["a", "b"] and dataset["labels"] == [[1, -1], [-1, 0]]
    assert (report.rows_read, report.rows_kept, report.dropped_unlabelled) == (4, 2, 2)
    assert report.labelled_rows == {"a": 2, "b": 1}


def test_clean_data_loads_without_warnings(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_preferences(shared_data / HH / "harmless-concise" / "test.jsonl")


# ---------------------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------------------


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


def test_chat_rendered_responses_get_no_second_eos(tmp_path, tiny_tokenizer):
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


def test_left_truncation_keeps_the_bos_token_and_avoids_a_double_bos():
    tokenizer = build_tiny_tokenizer()
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


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------


def one_label_matrix(rows_per_objective):
    """Rows of objective 0, then objective 1, ...: each row has a single non-zero label."""
    num_objectives = len(rows_per_objective)
    labels = []
    for k, count in enumerate(rows_per_objective):
        labels += [[1 if j == k else 0 for j in range(num_objectives)] for _ in range(count)]
    return labels


def objective_of(labels, index):
    return next(k for k, value in enumerate(labels[index]) if value != 0)


def blocks(sampler):
    indices = list(sampler)
    return [indices[start : start + sampler.batch_size] for start in range(0, len(indices), sampler.batch_size)]


@pytest.mark.parametrize(
    ("rows_per_objective", "batch_size", "proportions", "composition"),
    [
        ((10, 30), 4, None, [0, 0, 1, 1]),
        ((10, 30), 4, (0.75, 0.25), [0, 0, 0, 1]),
        ((12, 5, 7), 4, (0.5, 0.3, 0.2), [0, 0, 1, 2]),  # 2.0, 1.2, 0.8 -> 2, 1, 1
        ((12, 5, 7), 4, None, [0, 0, 1, 2]),  # 1.33 each -> the tie goes to objective 0
        ((12, 5, 7), 5, (0.6, 0.4, 0.0), [0, 0, 0, 1, 1]),
    ],
)
def test_every_block_has_the_requested_composition(rows_per_objective, batch_size, proportions, composition):
    labels = one_label_matrix(rows_per_objective)
    sampler = ObjectiveBalancedSampler(labels, batch_size, proportions, seed=3)
    assert sampler.balanced
    assert len(sampler) == -(-len(labels) // batch_size) * batch_size
    sampled_blocks = blocks(sampler)
    assert len(sampled_blocks) * batch_size == len(sampler)
    for block in sampled_blocks:
        assert [objective_of(labels, index) for index in block] == composition


def test_objectives_are_drawn_without_repeats_until_exhausted():
    labels = one_label_matrix((40, 3))
    sampler = ObjectiveBalancedSampler(labels, batch_size=4, seed=1)
    indices = list(sampler)
    small = [index for index in indices if objective_of(labels, index) == 1]
    large = [index for index in indices if objective_of(labels, index) == 0]
    assert len(small) == 22 and len(large) == 22
    for start in range(0, 21, 3):  # each run of 3 draws is a fresh permutation of the 3 rows
        assert sorted(small[start : start + 3]) == [40, 41, 42]
    assert len(set(large)) == 22


def test_sampler_is_deterministic_and_set_epoch_changes_the_order():
    labels = one_label_matrix((20, 20))
    first, second = ObjectiveBalancedSampler(labels, 4, seed=7), ObjectiveBalancedSampler(labels, 4, seed=7)
    epoch_0 = list(first)
    assert epoch_0 == list(second) == list(first)
    first.set_epoch(1)
    epoch_1 = list(first)
    assert epoch_1 != epoch_0 and sorted(epoch_1) == sorted(epoch_0) == list(range(40))
    second.set_epoch(1)
    assert list(second) == epoch_1
    first.set_epoch(0)
    assert list(first) == epoch_0
    assert list(ObjectiveBalancedSampler(labels, 4, seed=8)) != epoch_0


def test_multi_labelled_rows_are_permuted_as_a_whole():
    labels = [[1, -1], [1, 0], [-1, 1], [0, 1], [1, 1]]
    sampler = ObjectiveBalancedSampler(torch.tensor(labels), batch_size=2, seed=0)
    assert not sampler.balanced and len(sampler) == 5
    order = list(sampler)
    assert sorted(order) == [0, 1, 2, 3, 4] and order == list(ObjectiveBalancedSampler(labels, 2, seed=0))
    sampler.set_epoch(1)
    assert sorted(sampler) == [0, 1, 2, 3, 4]
    with pytest.warns(UserWarning, match="ignores proportions"):
        ObjectiveBalancedSampler(labels, 2, proportions=(0.5, 0.5))


@pytest.mark.parametrize(
    ("proportions", "problem"),
    [
        ((0.5, 0.6), "sum to 1"),
        ((1.5, -0.5), "non-negative"),
        ((1.0,), "one value per objective"),
        ((0.0, 1.0), "objective 1 has proportion 1 but no rows"),
    ],
)
def test_sampler_rejects_proportions_off_the_simplex(proportions, problem):
    labels = one_label_matrix((4, 0)) if problem.startswith("objective") else one_label_matrix((4, 4))
    with pytest.raises(ValueError, match=problem):
        ObjectiveBalancedSampler(labels, 4, proportions)


def test_balanced_batches_from_real_data_end_to_end(shared_data, tiny_tokenizer):
    paths = {
        "helpful": shared_data / HH / "helpful" / "test.jsonl",
        "harmless": shared_data / HH / "harmless" / "test.jsonl",
    }
    dataset, names = load_preferences(paths)
    subset = dataset.select(list(range(12)) + list(range(300, 320)))
    tokenised, _ = tokenize_preferences(subset, tiny_tokenizer, max_length=96)
    sampler = ObjectiveBalancedSampler(tokenised["labels"], batch_size=4, proportions=(0.75, 0.25))
    loader = DataLoader(
        tokenised, batch_size=4, sampler=sampler, collate_fn=PreferenceCollator(tiny_tokenizer.pad_token_id)
    )
    batches = list(loader)
    assert len(batches) == 8
    for batch in batches:
        assert batch["labels"].tolist() == [[1, 0], [1, 0], [1, 0], [0, 1]]
        assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 96
        assert (batch["response_mask"] <= batch["attention_mask"]).all()


# ---------------------------------------------------------------------------------------------------------
# Shipped data
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["harmless-concise", "helpful", "harmless"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_slices_equal_the_shared_data(shared_data, objective, split):
    shipped = builtin_data_path(f"{HH}/{objective}/{split}.jsonl")
    assert shipped.read_bytes() == (shared_data / HH / objective / split).with_suffix(".jsonl").read_bytes()


def test_shipped_folder_has_readme_and_licence():
    folder = builtin_data_path(HH)
    assert "Copyright (c) 2022 Anthropic" in (folder / "LICENSE").read_text()
    readme = (folder / "README.md").read_text()
    assert "arXiv 2204.05862" in readme and "MIT" in readme
    assert load_preferences(builtin_data_path(f"{HH}/harmless-concise/test.jsonl"))[1] == ["harmless", "concise"]


def test_unknown_shipped_name_lists_what_exists():
    with pytest.raises(
        FileNotFoundError, match="available: hh-rlhf/harmless-concise/test.jsonl, .*hh-rlhf/helpful/train.jsonl"
    ):
        builtin_data_path("hh-rlhf/helpfull/train.jsonl")
    with pytest.raises(ValueError, match="relative path"):
        builtin_data_path("../data.py")
