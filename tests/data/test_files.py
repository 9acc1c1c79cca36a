"""Tests of paretoalign.data.files: the formats rows are read from, file-level errors, and the shipped data."""

from __future__ import annotations

import json
import pickle

import datasets
import pyarrow
import pyarrow.parquet
import pytest

from paretoalign.data.columns import resolve_data_source
from paretoalign.data.files import (
    builtin_data_path,
    HubDataset,
    iter_source_rows,
    PreferenceDataError,
)
from paretoalign.data.preferences import load_preferences


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------


def test_json_parquet_and_saved_dataset_match_json_lines(shipped_data, tmp_path, read_jsonl, hh_rlhf, write_jsonl):
    rows = read_jsonl(shipped_data / hh_rlhf / "harmless-concise" / "train.jsonl")[:40]
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


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path, multi_label_row, assert_located):
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(multi_label_row(a=0)) + "\n\n" + json.dumps(multi_label_row(a=2)) + "\n")
    with pytest.raises(PreferenceDataError) as caught:
        load_preferences(path)
    assert_located(caught.value, path, 4, "labels.a")


def test_rows_are_numbered_by_physical_line_or_by_row(tmp_path):
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    array = tmp_path / "rows.json"
    array.write_text('[\n  {"a": 1},\n\n  {"a": 2}\n]\n', encoding="utf-8")
    unit, rows = iter_source_rows(lines)
    assert (unit, list(rows)) == ("line", [(1, {"a": 1}), (3, {"a": 2})])
    unit, rows = iter_source_rows(array)
    assert (unit, list(rows)) == ("row", [(1, {"a": 1}), (2, {"a": 2})])


# ---------------------------------------------------------------------------------------------------------
# Bad files: each error names file and line or row
# ---------------------------------------------------------------------------------------------------------


def test_malformed_json_line(tmp_path, multi_label_row, assert_located):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps(multi_label_row(a=0)) + "\n" + json.dumps(multi_label_row(a=1)) + "\n" + '{"prompt": "x",\n'
    )
    with pytest.raises(PreferenceDataError, match="malformed JSON") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 3, None)


def test_malformed_json_array_names_the_line(tmp_path, assert_located):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "x"},\n  {"prompt": }\n]\n')
    with pytest.raises(PreferenceDataError, match="malformed JSON") as caught:
        load_preferences(path)
    assert_located(caught.value, path, 3, None)


def test_error_in_a_parquet_file_names_the_row(tmp_path, multi_label_row, assert_located):
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


def test_unsupported_file_type_and_foreign_directories(tmp_path, multi_label_row):
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
# Shipped data
# ---------------------------------------------------------------------------------------------------------


def test_shipped_folder_has_readme_and_licence(hh_rlhf):
    folder = builtin_data_path(hh_rlhf)
    assert "Copyright (c) 2022 Anthropic" in (folder / "LICENSE").read_text()
    readme = (folder / "README.md").read_text()
    assert "arXiv 2204.05862" in readme and "MIT" in readme
    assert load_preferences(builtin_data_path(f"{hh_rlhf}/harmless-concise/test.jsonl"))[1] == ["harmless", "concise"]


def test_unknown_shipped_name_lists_what_exists():
    with pytest.raises(
        FileNotFoundError, match="available: hh-rlhf/harmless-concise/test.jsonl, .*hh-rlhf/helpful/train.jsonl"
    ):
        builtin_data_path("hh-rlhf/helpfull/train.jsonl")
    with pytest.raises(ValueError, match="relative path"):
        builtin_data_path("../data.py")


def test_resolve_data_source_maps_builtin_names_and_passes_other_sources_through(tmp_path, hh_rlhf):
    shipped = str(builtin_data_path(f"{hh_rlhf}/helpful/test.jsonl"))
    assert resolve_data_source(f"builtin:{hh_rlhf}/helpful/test.jsonl") == shipped
    own = tmp_path / "harmless.jsonl"
    resolved = resolve_data_source({"helpful": f"builtin:{hh_rlhf}/helpful/test.jsonl", "harmless": own})
    assert resolved == {"helpful": shipped, "harmless": own} and list(resolved) == ["helpful", "harmless"]
    assert resolve_data_source("data/train.jsonl") == "data/train.jsonl"
    assert resolve_data_source(own) is own
    with pytest.raises(FileNotFoundError, match="no shipped data named 'hh-rlhf/nothing.jsonl'; available: hh-rlhf/"):
        resolve_data_source("builtin:hh-rlhf/nothing.jsonl")
    with pytest.raises(FileNotFoundError, match="no shipped data named 'nothing'"):
        resolve_data_source({"helpful": "builtin:nothing"})


def test_a_dataset_source_yields_its_split_rows_numbered_from_zero(tmp_path, datasets_cache, write_hub_dataset):
    folder = write_hub_dataset(tmp_path / "repo", {
        "train": [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}],
        "test": [{"prompt": "c", "answer": "3"}],
    })
    unit, rows = iter_source_rows(HubDataset(folder, split="train"))
    assert unit == "row"
    assert list(rows) == [(0, {"prompt": "a", "answer": "1"}), (1, {"prompt": "b", "answer": "2"})]
    _, rows = iter_source_rows(HubDataset(folder, split="test"))
    assert list(rows) == [(0, {"prompt": "c", "answer": "3"})]
    with pytest.raises(PreferenceDataError, match=r"split 'dev': cannot be loaded: .*train.*test") as error:
        iter_source_rows(HubDataset(folder, split="dev"))
    assert error.value.path == f"dataset {folder!r}, split 'dev'"


def test_a_mapping_with_a_dataset_key_resolves_to_a_dataset_source():
    assert resolve_data_source({"dataset": "org/prefs", "name": "en", "split": "test", "revision": "v1"}) == HubDataset(
        "org/prefs", name="en", split="test", revision="v1"
    )
    assert resolve_data_source({"dataset": "org/prefs"}) == HubDataset("org/prefs", None, "train", None)
    mapping = resolve_data_source({"helpful": {"dataset": "org/helpful", "split": "test"}, "harmless": "h.jsonl"})
    assert mapping == {"helpful": HubDataset("org/helpful", split="test"), "harmless": "h.jsonl"}
    assert str(HubDataset("org/prefs", name="en", split="test", revision="v1")) == (
        "dataset 'org/prefs', config 'en', split 'test', revision 'v1'"
    )


def test_a_malformed_dataset_mapping_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['config'\].*dataset, name, split, revision"):
        HubDataset.from_mapping({"dataset": "org/prefs", "config": "en"})
    with pytest.raises(ValueError, match="has no 'dataset'"):
        HubDataset.from_mapping({"split": "train"})
    with pytest.raises(ValueError, match="'split' must be a non-empty string, got 3"):
        HubDataset.from_mapping({"dataset": "org/prefs", "split": 3})
    with pytest.raises(ValueError, match="'dataset' must be a non-empty string, got ''"):
        HubDataset.from_mapping({"dataset": ""})
