"""Tests of paretoalign.data.preferences: both shapes of preference data, conversational rows, bad and dropped rows."""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter

import pytest
import torch

from paretoalign.data.files import builtin_data_path, PreferenceDataError
from paretoalign.data.preferences import (
    conflict_matrix,
    labelled_counts,
    load_preferences,
    load_preferences_with_report,
    LoadReport,
)

USER = {"role": "user", "content": "How do I bake bread?"}
ASSISTANT_GOOD = {"role": "assistant", "content": "Mix flour, water, salt and yeast."}
ASSISTANT_BAD = {"role": "assistant", "content": "No."}
RENDERED_PROMPT = "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n"


def pair_row(prompt="Human: hi\n\nAssistant:", chosen="Hello!", rejected="Go away."):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# ---------------------------------------------------------------------------------------------------------
# Real data, both shapes
# ---------------------------------------------------------------------------------------------------------


def test_multi_label_file_from_shipped_data(shipped_data, hh_rlhf, read_jsonl):
    path = shipped_data / hh_rlhf / "harmless-concise" / "train.jsonl"
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


def test_objectives_argument_sets_the_label_column_order(shipped_data, hh_rlhf):
    path = shipped_data / hh_rlhf / "harmless-concise" / "test.jsonl"
    default, default_names = load_preferences(path)
    reordered, names = load_preferences(path, objectives=["concise", "harmless"])
    assert default_names == ["harmless", "concise"] and names == ["concise", "harmless"]
    assert reordered["labels"] == [[concise, harmless] for harmless, concise in default["labels"]]


def test_one_dataset_per_objective_from_shipped_data(shipped_data, hh_rlhf, read_jsonl):
    paths = {
        "helpful": shipped_data / hh_rlhf / "helpful" / "train.jsonl",
        "harmless": shipped_data / hh_rlhf / "harmless" / "train.jsonl",
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


def test_single_one_objective_file_needs_its_objective_name(shipped_data, hh_rlhf):
    path = shipped_data / hh_rlhf / "harmless" / "test.jsonl"
    dataset, names = load_preferences(path, objectives=["harmless"])
    assert names == ["harmless"] and len(dataset) == 300 and dataset["labels"] == [[1]] * 300
    with pytest.raises(PreferenceDataError, match=r"objectives=\['name'\]"):
        load_preferences(path)


def test_dict_source_objectives_must_match_its_keys(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", [pair_row()])
    with pytest.raises(ValueError, match="must name exactly the objectives"):
        load_preferences({"helpful": path}, objectives=["harmless"])
    with pytest.raises(ValueError, match="more than once"):
        load_preferences({"helpful": path}, objectives=["helpful", "helpful"])


def test_builtin_sources_load_the_shipped_data(shipped_data, hh_rlhf):
    dataset, names = load_preferences(f"builtin:{hh_rlhf}/harmless-concise/test.jsonl")
    reference, reference_names = load_preferences(shipped_data / hh_rlhf / "harmless-concise" / "test.jsonl")
    assert names == reference_names == ["harmless", "concise"]
    assert dataset.to_dict() == reference.to_dict()
    pairs, names, report = load_preferences_with_report(
        {
            "helpful": f"builtin:{hh_rlhf}/helpful/test.jsonl",
            "harmless": shipped_data / hh_rlhf / "harmless" / "test.jsonl",
        }
    )
    assert names == ["helpful", "harmless"] and len(pairs) == 600
    assert pairs["labels"] == [[1, 0]] * 300 + [[0, 1]] * 300
    assert report.sources[0] == str(builtin_data_path(f"{hh_rlhf}/helpful/test.jsonl"))
    with pytest.raises(FileNotFoundError, match="no shipped data named 'hh-rlhf/helpfull/test.jsonl'; available:"):
        load_preferences({"helpful": f"builtin:{hh_rlhf}/helpfull/test.jsonl"})


# ---------------------------------------------------------------------------------------------------------
# Conversational rows
# ---------------------------------------------------------------------------------------------------------


def test_conversational_explicit_prompt_is_rendered_with_the_chat_template(tmp_path, tiny_tokenizer, write_jsonl):
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


def test_conversational_implicit_prompt_and_full_conversations_agree(tmp_path, tiny_tokenizer, write_jsonl):
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


def test_conversational_multi_label_rows(tmp_path, tiny_tokenizer, write_jsonl):
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


def test_conversational_rows_need_a_tokenizer_with_a_chat_template(
    tmp_path, tiny_tokenizer, write_jsonl, assert_located
):
    path = write_jsonl(
        tmp_path / "chat.jsonl", [{"prompt": [USER], "chosen": [ASSISTANT_GOOD], "rejected": [ASSISTANT_BAD]}]
    )
    with pytest.raises(PreferenceDataError, match="pass tokenizer=") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 1, "prompt")
    without_template = copy.deepcopy(tiny_tokenizer)
    without_template.chat_template = None
    with pytest.raises(PreferenceDataError, match="no chat_template"):
        load_preferences({"helpful": path}, tokenizer=without_template)


def test_implicit_prompt_parts_that_differ_are_rejected(tmp_path, tiny_tokenizer, write_jsonl, assert_located):
    other_user = {"role": "user", "content": "How do I bake cake?"}
    rows = [
        {"chosen": [USER, ASSISTANT_GOOD], "rejected": [USER, ASSISTANT_BAD]},
        {"chosen": [USER, ASSISTANT_GOOD], "rejected": [other_user, ASSISTANT_BAD]},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(PreferenceDataError, match="prompt part differs") as caught:
        load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert_located(caught.value, path, 2, "rejected")


def test_full_conversation_must_start_with_the_prompt(tmp_path, tiny_tokenizer, write_jsonl, assert_located):
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
def test_bad_conversational_rows(tmp_path, tiny_tokenizer, row, field, problem, write_jsonl, assert_located):
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(PreferenceDataError, match=problem) as caught:
        load_preferences({"helpful": path}, tokenizer=tiny_tokenizer)
    assert_located(caught.value, path, 1, field)


# ---------------------------------------------------------------------------------------------------------
# Bad rows: one test per case, each naming file, line and field
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["prompt", "response_0", "response_1", "labels"])
def test_missing_multi_label_field(tmp_path, field, multi_label_row, write_jsonl, assert_located):
    row = multi_label_row(a=0)
    del row[field]
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(a=0), row])
    with pytest.raises(PreferenceDataError, match="missing field") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 2, field)


@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected"])
def test_missing_one_objective_field(tmp_path, field, write_jsonl, assert_located):
    row = pair_row()
    del row[field]
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), pair_row(), row])
    with pytest.raises(PreferenceDataError, match="missing field") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 3, field)


def test_multi_label_file_given_as_one_objective_file(shipped_data, hh_rlhf, assert_located):
    path = shipped_data / hh_rlhf / "harmless-concise" / "test.jsonl"
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
def test_field_of_the_wrong_type(tmp_path, row, field, problem, write_jsonl, assert_located):
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), row])
    with pytest.raises(PreferenceDataError, match=problem) as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 2, field)


def test_labels_of_the_wrong_type(tmp_path, multi_label_row, write_jsonl, assert_located):
    row = multi_label_row()
    row["labels"] = [0, 1]
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(PreferenceDataError, match="expected an object mapping objective names") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 1, "labels")


@pytest.mark.parametrize("value", [2, -1, "1", True, 0.5])
def test_label_value_outside_0_1_null(tmp_path, value, write_jsonl, multi_label_row, assert_located):
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(a=0, b=1), multi_label_row(a=1, b=value)])
    with pytest.raises(PreferenceDataError, match="must be 0, 1 or null") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 2, "labels.b")


def test_unknown_objective_name(tmp_path, write_jsonl, multi_label_row, assert_located):
    path = write_jsonl(tmp_path / "rows.jsonl", [multi_label_row(helpful=0), multi_label_row(helpful=1, harmles=0)])
    with pytest.raises(
        PreferenceDataError, match=r"unknown objective 'harmles'; known objectives: \['helpful', 'harmless'\]"
    ) as caught:
        load_preferences(path, objectives=["helpful", "harmless"])
    assert_located(caught.value, path, 2, "labels.harmles")


@pytest.mark.parametrize("response", ["", "   \n\t"])
def test_empty_or_whitespace_response(tmp_path, response, write_jsonl, assert_located):
    path = write_jsonl(tmp_path / "helpful.jsonl", [pair_row(), pair_row(rejected=response)])
    with pytest.raises(PreferenceDataError, match="empty or whitespace-only response") as caught:
        load_preferences({"helpful": path})
    assert_located(caught.value, path, 2, "rejected")


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(PreferenceDataError, match="contains no rows") as caught:
        load_preferences(path)
    assert caught.value.path == str(path)
    with pytest.raises(PreferenceDataError, match="contains no rows"):
        load_preferences({"helpful": path})


def test_objective_without_labelled_rows(tmp_path, write_jsonl, multi_label_row):
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


# ---------------------------------------------------------------------------------------------------------
# Dropped rows are counted
# ---------------------------------------------------------------------------------------------------------


def test_identical_responses_are_dropped_counted_and_warned(tmp_path, write_jsonl):
    rows = [pair_row(), pair_row(rejected="Hello!"), pair_row(chosen="Yes.", rejected="Yes."), pair_row(rejected="No.")]
    path = write_jsonl(tmp_path / "helpful.jsonl", rows)
    with pytest.warns(UserWarning, match=r"dropped 2 pair\(s\) with identical responses \(lines 2, 3\)"):
        dataset, _, report = load_preferences_with_report({"helpful": path})
    assert len(dataset) == 2 and dataset["response_b"] == ["Go away.", "No."]
    assert (report.rows_read, report.rows_kept, report.dropped_identical, report.kept_identical) == (4, 2, 2, 0)
    with pytest.warns(UserWarning, match=r"kept \(drop_identical=False\) 2 pair\(s\)"):
        kept, _, kept_report = load_preferences_with_report({"helpful": path}, drop_identical=False)
    assert len(kept) == 4 and (kept_report.dropped_identical, kept_report.kept_identical) == (0, 2)


def test_rows_without_any_label_are_dropped_counted_and_warned(tmp_path, multi_label_row, write_jsonl):
    rows = [multi_label_row(a=0, b=1), multi_label_row(a=None, b=None), multi_label_row(), multi_label_row(a=1)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.warns(UserWarning, match=r"dropped 2 row\(s\) whose labels are all null or missing \(lines 2, 3\)"):
        dataset, names, report = load_preferences_with_report(path)
    assert names == ["a", "b"] and dataset["labels"] == [[1, -1], [-1, 0]]
    assert (report.rows_read, report.rows_kept, report.dropped_unlabelled) == (4, 2, 2)
    assert report.labelled_rows == {"a": 2, "b": 1}


def test_clean_data_loads_without_warnings(shipped_data, hh_rlhf):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_preferences(shipped_data / hh_rlhf / "harmless-concise" / "test.jsonl")


# ---------------------------------------------------------------------------------------------------------
# Statistics of the label matrix
# ---------------------------------------------------------------------------------------------------------


LABELS = [[1, 1, 0], [1, -1, -1], [-1, 1, 0], [0, -1, 1]]


def test_labelled_counts_count_the_non_zero_labels_per_objective():
    assert labelled_counts(torch.tensor(LABELS)).tolist() == [3, 4, 2]
    assert labelled_counts([[0, 1]]).tolist() == [0, 1]


def test_conflict_matrix_is_the_share_of_disagreements_among_pairs_labelled_by_both():
    conflict, both = conflict_matrix(torch.tensor(LABELS))
    assert both.tolist() == [[3, 3, 1], [3, 4, 2], [1, 2, 2]]
    assert conflict.tolist() == [[0.0, 2 / 3, 1.0], [2 / 3, 0.0, 0.5], [1.0, 0.5, 0.0]]


def test_conflict_matrix_is_nan_where_no_pair_is_labelled_by_both():
    conflict, both = conflict_matrix([[1, 0], [0, -1]])
    assert both.tolist() == [[1, 0], [0, 1]]
    assert conflict[0, 0] == 0 and math.isnan(conflict[0, 1]) and math.isnan(conflict[1, 0])


def test_label_statistics_need_a_matrix():
    with pytest.raises(ValueError, match=r"shape \[N, K\]"):
        labelled_counts([1, 0, -1])


MULTI_LABEL_ROWS = [
    {"prompt": "p0", "response_0": "short", "response_1": "a long reply", "labels": {"concise": 0, "safe": None}},
    {"prompt": "p1", "response_0": "tiny", "response_1": "a longer reply", "labels": {"concise": 0, "safe": 1}},
]


def test_multi_label_pairs_load_from_a_dataset_split(tmp_path, datasets_cache, write_hub_dataset):
    folder = write_hub_dataset(tmp_path / "repo", {"train": MULTI_LABEL_ROWS, "test": MULTI_LABEL_ROWS[1:]})
    pairs, names = load_preferences({"dataset": folder, "split": "train"})
    assert names == ["concise", "safe"]
    assert pairs["labels"] == [[1, 0], [1, -1]]
    assert pairs["response_a"] == ["short", "tiny"] and pairs["response_b"] == ["a long reply", "a longer reply"]
    held_out, _ = load_preferences({"dataset": folder, "split": "test"}, objectives=["safe", "concise"])
    assert held_out["labels"] == [[-1, 1]]


def test_a_malformed_dataset_row_names_the_dataset_split_row_and_field(tmp_path, datasets_cache, write_hub_dataset):
    rows = [MULTI_LABEL_ROWS[0], {**MULTI_LABEL_ROWS[1], "labels": {"concise": 2, "safe": 1}}]
    folder = write_hub_dataset(tmp_path / "repo", {"train": rows, "test": rows})
    with pytest.raises(PreferenceDataError) as error:
        load_preferences({"dataset": folder, "split": "test"})
    assert (error.value.path, error.value.line, error.value.unit, error.value.field) == (
        f"dataset {folder!r}, split 'test'", 1, "row", "labels.concise"
    )
    assert str(error.value).startswith(f"dataset {folder!r}, split 'test', row 1, field 'labels.concise': ")


def test_an_objective_mapping_of_dataset_sources(tmp_path, datasets_cache, write_hub_dataset):
    helpful = write_hub_dataset(tmp_path / "helpful", {
        "train": [{"prompt": "p0", "chosen": "yes", "rejected": "no"}],
        "test": [{"prompt": "p1", "chosen": "sure", "rejected": "never"}],
    })
    (tmp_path / "harmless.jsonl").write_text('{"prompt": "p2", "chosen": "safe", "rejected": "unsafe"}\n')
    pairs, names = load_preferences(
        {"helpful": {"dataset": helpful, "split": "test"}, "harmless": str(tmp_path / "harmless.jsonl")}
    )
    assert names == ["helpful", "harmless"]
    assert pairs["prompt"] == ["p1", "p2"] and pairs["labels"] == [[1, 0], [0, 1]]
