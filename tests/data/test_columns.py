"""Tests of paretoalign.data.columns: label kinds, row shapes and pairings, the exact label matrices they give, source
resolution, and one test per error of a mapping and of the rows it reads."""

from __future__ import annotations

import warnings

import pytest
import yaml

from paretoalign.config import parse_config
from paretoalign.data.columns import (
    all_pairs,
    best_worst_pairs,
    ColumnMapping,
    is_single_source,
    MappedSource,
    read_score,
    resolve_data_source,
    score_gap,
    score_preference,
)
from paretoalign.data.files import HubDataset, PreferenceDataError
from paretoalign.data.preferences import load_preferences, load_preferences_with_report
from paretoalign.data.prompts import load_prompts
from paretoalign.trainers.preference import ParetoPreferenceConfig

PAIR_COLUMNS = {"prompt": "question", "responses": ["first", "second"]}


def pair(question="Q?", first="Yes.", second="No.", **columns):
    return {"question": question, "first": first, "second": second, **columns}


def source(path, **columns):
    return {"path": str(path), "columns": columns}


# ---------------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------------


def test_score_preference_sign_margin_direction_and_missing_scores():
    assert score_preference(4.0, 2.0) == 0 and score_preference(2.0, 4.5) == 1
    assert score_preference(3.0, 3.0) is None  # a tie
    assert score_preference(3.0, 3.5, min_margin=0.5) is None  # |d| <= m
    assert score_preference(3.0, 3.6, min_margin=0.5) == 1
    assert score_preference(4.0, 2.0, higher_is_better=False) == 1
    assert score_preference(None, 2.0) is None and score_preference(2.0, None) is None


def test_read_score_numbers_numeric_strings_and_no_score():
    assert read_score(4) == 4.0 and read_score(2.5) == 2.5 and read_score(" 4 ") == 4.0
    assert read_score(None) is None and read_score("N/A") is None and read_score(float("nan")) is None
    for bad in (True, [1], {"Rating": 1}):
        with pytest.raises(TypeError, match="a score must be a number, a numeric string or null"):
            read_score(bad)


FOUR_ITEMS = [[3.0, 5.0, 1.0, 5.0], [5.0, None, 2.0, 2.0]]
"""Scores of four items for two objectives: rows are objectives, columns items (None: no score)."""


def test_best_worst_pairs_first_best_and_first_worst_per_objective():
    # objective 0: best is item 1 (first of the two 5s), worst item 2; objective 1: best item 0, worst item 2
    assert best_worst_pairs(FOUR_ITEMS) == [(1, 2), (0, 2)]
    assert best_worst_pairs([[2.0, 1.0], [1.0, 2.0]]) == [(0, 1)]  # the same two items are kept once
    assert best_worst_pairs([[3.0, 3.0, None]]) == []  # no two different scores


def test_all_pairs_and_the_largest_gaps_first():
    assert score_gap(FOUR_ITEMS, 0, 2) == 5.0 and score_gap(FOUR_ITEMS, 0, 1) == 2.0
    assert all_pairs(FOUR_ITEMS, 4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    # gaps: (0,2) 5, (0,3) 5, (1,2) 4, (2,3) 4, (0,1) 2, (1,3) 0: the tie at 4 goes to (1,2), earlier in the list
    assert all_pairs(FOUR_ITEMS, 4, max_pairs=3) == [(0, 2), (0, 3), (1, 2)]


# ---------------------------------------------------------------------------------------------------------
# Label kinds of a pair row
# ---------------------------------------------------------------------------------------------------------


def test_index_labels_with_nulls_and_an_unlabelled_row(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        pair(h=0, s=1), pair(h=1, s=None), pair(h=None, s=0), pair(h=None, s=None),
    ])
    columns = {**PAIR_COLUMNS, "labels": {"helpful": {"index": "h"}, "safe": {"index": "s"}}}
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose labels are all null or missing \(lines 4\)"):
        dataset, names, report = load_preferences_with_report(source(path, **columns))
    assert names == ["helpful", "safe"]
    assert dataset["labels"] == [[1, -1], [-1, 0], [0, 1]]
    assert dataset[0] == {"prompt": "Q?", "response_a": "Yes.", "response_b": "No.", "labels": [1, -1]}
    assert (report.rows_read, report.dropped_unlabelled, report.sources) == (4, 1, (str(path),))


def test_winner_labels_default_and_given_values(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        pair(q="A", v=" b "), pair(q="Tie", v="FIRST"), pair(q="second", v="tie"), pair(q=None, v="a"),
    ])
    columns = {**PAIR_COLUMNS, "labels": {
        "quality": {"winner": "q"},  # defaults: a, b, tie and the response columns' names, in any case
        "verbosity": {"winner": "v", "values": {"A": 0, "B": 1, "First": 0, "tie": None}},
    }}
    dataset, names = load_preferences(source(path, **columns))
    assert names == ["quality", "verbosity"]
    assert dataset["labels"] == [[1, -1], [0, 1], [-1, 0], [0, 1]]


def test_scores_labels_with_margin_direction_strings_and_no_score(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        pair(a0=4, a1=2, b0=1, b1=2),
        pair(a0="2", a1="4.5", b0=3, b1=3),
        pair(a0=3, a1=3.4, b0=0.5, b1=0),
        pair(a0="N/A", a1=3, b0=None, b1=2),
        pair(a0=None, a1=1, b0=5, b1=1),
    ])
    columns = {**PAIR_COLUMNS, "labels": {
        "quality": {"scores": ["a0", "a1"], "min_margin": 0.5},
        "brevity": {"scores": ["b0", "b1"], "higher_is_better": False},
    }}
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\).*\(lines 4\)"):
        dataset, _ = load_preferences(source(path, **columns))
    # quality: 4 > 2; 2 < 4.5; |3 - 3.4| <= 0.5 a tie; no score. brevity (lower wins): 1 < 2; tie; 0.5 > 0; 5 > 1
    assert dataset["labels"] == [[1, 1], [-1, 0], [0, -1], [0, -1]]


def test_always_labels_read_chosen_and_rejected_columns(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Q1", "chosen": "good", "rejected": "bad"}, {"prompt": "Q2", "chosen": "fine", "rejected": "no"},
    ])
    columns = {"prompt": "prompt", "responses": ["chosen", "rejected"], "labels": {"preferred": {"always": 0}}}
    dataset, names = load_preferences(source(path, **columns))
    assert names == ["preferred"] and dataset["labels"] == [[1], [1]]
    assert dataset["response_a"] == ["good", "fine"]


def test_dotted_paths_read_nested_rows(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"meta": {"text": {"prompt": "Q"}}, "out": {"a": "x", "b": "y"}, "ann": {"best": {"id": 1}}},
    ])
    columns = {"prompt": "meta.text.prompt", "responses": ["out.a", "out.b"],
               "labels": {"helpful": {"index": "ann.best.id"}}}
    dataset, _ = load_preferences(source(path, **columns))
    assert dataset[0] == {"prompt": "Q", "response_a": "x", "response_b": "y", "labels": [-1]}


def test_objectives_keep_only_their_labels_in_their_order(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair(h=0, s=1), pair(h=None, s=0), pair(h=1, s=None)])
    columns = {**PAIR_COLUMNS, "labels": {"helpful": {"index": "h"}, "safe": {"index": "s"}}}
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose labels are all null or missing \(lines 2\)"):
        dataset, names = load_preferences(source(path, **columns), objectives=["helpful"])
    assert names == ["helpful"] and dataset["labels"] == [[1], [-1]]
    dataset, names = load_preferences(source(path, **columns), objectives=["safe", "helpful"])
    assert names == ["safe", "helpful"] and dataset["labels"] == [[-1, 1], [1, 0], [0, -1]]
    with pytest.raises(ValueError, match=r"labels no objective\(s\) \['honest'\]; it labels \['helpful', 'safe'\]"):
        load_preferences(source(path, **columns), objectives=["helpful", "honest"])


def test_a_mapped_source_of_one_objective_in_the_objective_form(tmp_path, write_jsonl):
    mapped = write_jsonl(tmp_path / "mapped.jsonl", [pair(w=1), pair(w=None)])
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "P", "chosen": "c", "rejected": "r"}])
    columns = {**PAIR_COLUMNS, "labels": {"anything": {"index": "w"}}}
    with pytest.warns(UserWarning, match="dropped 1 row"):
        dataset, names = load_preferences({"safe": source(mapped, **columns), "helpful": str(plain)})
    assert names == ["safe", "helpful"]
    assert dataset["labels"] == [[-1, 0], [0, 1]]
    two = {**PAIR_COLUMNS, "labels": {"a": {"index": "w"}, "b": {"index": "w"}}}
    with pytest.raises(ValueError, match=r"the source of objective 'safe', labels \['a', 'b'\]; .* exactly one"):
        load_preferences({"safe": source(mapped, **two), "helpful": str(plain)})


# ---------------------------------------------------------------------------------------------------------
# Transcripts
# ---------------------------------------------------------------------------------------------------------

TRANSCRIPT_PROMPT = "\n\nHuman: How do I bake bread?\n\nAssistant: With flour.\n\nHuman: And then?\n\nAssistant:"


def test_transcripts_as_text_are_cut_after_the_last_assistant_turn(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": TRANSCRIPT_PROMPT + " Bake it.", "rejected": TRANSCRIPT_PROMPT + " No."},
    ])
    columns = {"responses": ["chosen", "rejected"], "transcripts": "text", "labels": {"preferred": {"always": 0}}}
    dataset, _ = load_preferences(source(path, **columns))
    assert dataset[0] == {"prompt": TRANSCRIPT_PROMPT, "response_a": " Bake it.", "response_b": " No.",
                          "labels": [1]}


def test_transcripts_as_messages_are_rendered_by_the_chat_template(tmp_path, write_jsonl, tiny_tokenizer):
    path = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": TRANSCRIPT_PROMPT + " Bake it.", "rejected": TRANSCRIPT_PROMPT + " No."},
    ])
    columns = {"responses": ["chosen", "rejected"], "transcripts": "messages", "labels": {"preferred": {"always": 1}}}
    dataset, _ = load_preferences(source(path, **columns), tokenizer=tiny_tokenizer)
    assert dataset[0] == {
        "prompt": "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\nWith flour.<|im_end|>\n"
                  "<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n",
        "response_a": "Bake it.<|im_end|>\n",
        "response_b": "No.<|im_end|>\n",
        "labels": [-1],
    }


def test_transcript_errors_name_the_row_and_the_column(tmp_path, write_jsonl, assert_located):
    columns = {"responses": ["chosen", "rejected"], "transcripts": "text", "labels": {"preferred": {"always": 0}}}
    cases = [
        ({"chosen": TRANSCRIPT_PROMPT + " a", "rejected": "\n\nHuman: other\n\nAssistant: b"}, "rejected",
         "the prompt part .* differs from that of 'chosen'"),
        ({"chosen": "\n\nHuman: no reply", "rejected": TRANSCRIPT_PROMPT + " b"}, "chosen",
         "a transcript needs an assistant turn"),
        ({"chosen": ["not", "text"], "rejected": TRANSCRIPT_PROMPT + " b"}, "chosen",
         "expected a transcript string, got list"),
        ({"chosen": TRANSCRIPT_PROMPT + " a", "rejected": TRANSCRIPT_PROMPT + "  "}, "rejected",
         "empty or whitespace-only response"),
    ]
    for index, (row, field, message) in enumerate(cases):
        path = write_jsonl(tmp_path / f"bad{index}.jsonl", [
            {"chosen": TRANSCRIPT_PROMPT + " a", "rejected": TRANSCRIPT_PROMPT + " b"}, row,
        ])
        with pytest.raises(PreferenceDataError, match=message) as caught:
            load_preferences(source(path, **columns))
        assert_located(caught.value, path, 2, field)


# ---------------------------------------------------------------------------------------------------------
# Scored lists and rows per response
# ---------------------------------------------------------------------------------------------------------


def scored_row(prompt, helpfulness, honesty):
    """A row with four completions scored as in FOUR_ITEMS (as UltraFeedback nests them)."""
    return {"instruction": prompt, "completions": [
        {"response": f"{prompt} answer {index}",
         "annotations": {"helpfulness": {"Rating": h}, "honesty": {"Rating": t}}}
        for index, (h, t) in enumerate(zip(helpfulness, honesty))
    ]}


SCORED = {"shape": "scored_list", "prompt": "instruction", "list": "completions", "response": "response"}
FOUR_ROW = scored_row("Q", ["3", "5", "1", "5"], ["5", "N/A", "2", "2"])


def scored_labels(**settings):
    return {"helpfulness": {"score": "annotations.helpfulness.Rating", **settings},
            "honesty": {"score": "annotations.honesty.Rating"}}


def test_scored_list_best_worst_labels_every_objective(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "uf.jsonl", [FOUR_ROW])
    dataset, names = load_preferences(source(path, **SCORED, labels=scored_labels()))
    assert names == ["helpfulness", "honesty"]
    assert [(row["response_a"], row["response_b"]) for row in dataset] == [
        ("Q answer 1", "Q answer 2"), ("Q answer 0", "Q answer 2"),
    ]
    # (1, 2): helpfulness 5 > 1, honesty N/A; (0, 2): helpfulness 3 > 1, honesty 5 > 2
    assert dataset["labels"] == [[1, 0], [1, 1]]
    dataset, _ = load_preferences(source(path, **SCORED, labels=scored_labels(min_margin=2)))
    assert dataset["labels"] == [[1, 0], [0, 1]]  # |3 - 1| <= 2: a tie


def test_scored_list_all_pairs_with_and_without_max_pairs(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "uf.jsonl", [FOUR_ROW])
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose labels are all null or missing \(lines 1\)"):
        dataset, _ = load_preferences(source(path, **SCORED, pairs="all", labels=scored_labels()))
    # (0,1) (0,2) (0,3) (1,2) (2,3); (1,3) ties on helpfulness and has no honesty score
    assert dataset["labels"] == [[-1, 0], [1, 1], [-1, 1], [1, 0], [-1, 0]]
    dataset, _ = load_preferences(source(path, **SCORED, pairs="all", max_pairs=3, labels=scored_labels()))
    assert [(row["response_a"][-1], row["response_b"][-1]) for row in dataset] == [("0", "2"), ("0", "3"), ("1", "2")]
    assert dataset["labels"] == [[1, 1], [-1, 1], [1, 0]]


def test_scored_lists_that_give_no_pair_are_counted(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "uf.jsonl", [
        FOUR_ROW, scored_row("one", ["3"], ["3"]), scored_row("equal", ["2", "2"], ["4", "4"]),
    ])
    with pytest.warns(UserWarning, match=r"dropped 2 source row\(s\) that give no pair: .*fewer than two items.*"
                                         r"\(lines 2, 3\)"):
        dataset, _ = load_preferences(source(path, **SCORED, labels=scored_labels()))
    assert len(dataset) == 2


def test_scored_list_errors_name_the_path_inside_the_list(tmp_path, write_jsonl, assert_located):
    bad_score = scored_row("Q", ["3", "5", "1"], ["5", "2", "2"])
    bad_score["completions"][2]["annotations"]["helpfulness"]["Rating"] = True
    missing = scored_row("Q", ["3", "5"], ["5", "2"])
    del missing["completions"][1]["annotations"]["honesty"]
    empty = scored_row("Q", ["3", "5"], ["5", "2"])
    empty["completions"][1]["response"] = " "
    cases = [
        (bad_score, "completions[2].annotations.helpfulness.Rating", "a score must be a number.*got the bool True"),
        (missing, "completions[1].annotations.honesty", "missing field"),
        ({"instruction": "Q", "completions": "none"}, "completions", "expected a list of scored responses, got str"),
        (empty, "completions[1].response", "empty or whitespace-only response"),
    ]
    for index, (row, field, message) in enumerate(cases):
        path = write_jsonl(tmp_path / f"bad{index}.jsonl", [FOUR_ROW, row])
        with pytest.raises(PreferenceDataError, match=message) as caught:
            load_preferences(source(path, **SCORED, labels=scored_labels()))
        assert_located(caught.value, path, 2, field)


GROUP_ROWS = [
    {"prompt": "P1", "response": "a", "h": 3, "c": 2},
    {"prompt": "P1", "response": "b", "h": 1, "c": 2},
    {"prompt": "P2", "response": "c", "h": 2, "c": 0},
    {"prompt": "P3", "response": "d", "h": 0, "c": 4},
    {"prompt": "P3", "response": "e", "h": 4, "c": 4},
    {"prompt": "P3", "response": "f", "h": 2, "c": 1},
    {"prompt": "P1", "response": "g", "h": 1, "c": 1},
]
ROWS = {"shape": "row_per_response", "prompt": "prompt", "response": "response",
        "labels": {"helpful": {"score": "h"}, "coherent": {"score": "c"}}}


def test_row_per_response_groups_of_one_two_and_three_rows(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "hs.jsonl", GROUP_ROWS)
    with pytest.warns(UserWarning, match=r"dropped 2 source row\(s\) that give no pair: each is a group of one row"
                                         r".*\(lines 3, 7\)"):
        dataset, names = load_preferences(source(path, **ROWS))
    assert names == ["helpful", "coherent"]
    # P1 (a, b): 3 > 1, 2 = 2. P3: helpful best e, worst d -> (d, e); coherent best d, worst f -> (d, f)
    assert [(row["prompt"], row["response_a"], row["response_b"]) for row in dataset] == [
        ("P1", "a", "b"), ("P3", "d", "e"), ("P3", "d", "f"),
    ]
    assert dataset["labels"] == [[1, 0], [-1, 0], [-1, 1]]


def test_row_per_response_errors_name_the_row_read(tmp_path, write_jsonl, assert_located):
    rows = [dict(row) for row in GROUP_ROWS[:6]]
    rows[4]["h"] = [4]
    path = write_jsonl(tmp_path / "bad-score.jsonl", rows)
    message = "a score must be a number, a numeric string or null, got list"
    with pytest.raises(PreferenceDataError, match=message) as caught:
        load_preferences(source(path, **ROWS))
    assert_located(caught.value, path, 5, "h")
    rows = [dict(row) for row in GROUP_ROWS[:6]]
    rows[4]["response"] = ""
    path = write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(PreferenceDataError, match="empty or whitespace-only response") as caught:
        load_preferences(source(path, **ROWS))
    assert_located(caught.value, path, 4, "response (line 5)")  # the group's first row, the row of the response


# ---------------------------------------------------------------------------------------------------------
# Errors in the rows a pair mapping reads
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, labels, field, message",
    [
        (pair(h=2), {"helpful": {"index": "h"}}, "h", r"the preferred response's index must be 0, 1 or null, got 2"),
        (pair(w="B?"), {"helpful": {"winner": "w"}}, "w",
         r"unknown winner 'B\?'; accepted values \(any case\): a, b, tie, first, second or null"),
        (pair(s0={"x": 1}, s1=2), {"helpful": {"scores": ["s0", "s1"]}}, "s0",
         "a score must be a number, a numeric string or null, got dict"),
        (pair(), {"helpful": {"index": "h"}}, "h", "missing field"),
        (pair(n={"best": 0}), {"helpful": {"index": "n.best.id"}}, "n.best", "expected an object, got int"),
        (pair(first="", h=0), {"helpful": {"index": "h"}}, "first", "empty or whitespace-only response"),
        (["not an object"], {"helpful": {"index": "h"}}, None, "expected a JSON object, got list"),
    ],
)
def test_a_bad_row_is_named_by_row_and_raw_column(tmp_path, write_jsonl, assert_located, row, labels, field, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair(h=0, w="a", s0=1, s1=2, n={"best": {"id": 0}}), row])
    with pytest.raises(PreferenceDataError, match=message) as caught:
        load_preferences(source(path, **PAIR_COLUMNS, labels=labels))
    assert_located(caught.value, path, 2, field)


# ---------------------------------------------------------------------------------------------------------
# Errors in the mapping itself, raised before any data is read
# ---------------------------------------------------------------------------------------------------------

INDEX = {"helpful": {"index": "h"}}


@pytest.mark.parametrize(
    "columns, message",
    [
        ("pair", r"columns must be a mapping such as"),
        ({"shape": "table", "labels": INDEX}, r"columns.shape must be one of pair, scored_list, row_per_response"),
        ({**PAIR_COLUMNS, "labels": INDEX, "colour": 1},
         r"unknown key 'colour'; the keys of shape pair: shape, prompt, responses, transcripts, labels"),
        ({**PAIR_COLUMNS, "labels": INDEX, "list": "items"},
         r"'list' is a key of shape scored_list, not of shape pair; the keys of shape pair:"),
        ({"labels": INDEX}, r"shape pair needs 'responses'; its keys: shape, prompt"),
        ({"responses": ["a"], "labels": INDEX}, r"columns.responses must be a list of two column names, got \['a'\]"),
        ({"responses": "a,b", "labels": INDEX}, r"columns.responses must be a list of two column names"),
        ({**PAIR_COLUMNS, "transcripts": "html", "labels": INDEX}, r"transcripts must be one of none, text, messages"),
        ({**PAIR_COLUMNS, "transcripts": "text", "labels": INDEX}, r"'prompt' and transcripts: text exclude each"),
        ({"prompt": "", "responses": ["a", "b"], "labels": INDEX}, r"columns.prompt must be a column name"),
        ({**PAIR_COLUMNS}, r"shape pair needs 'labels'"),
        ({**PAIR_COLUMNS, "labels": {}}, r"columns.labels must map at least one objective name to a label spec"),
        ({**PAIR_COLUMNS, "labels": {"helpful": "h"}}, r"columns.labels.helpful must be a mapping"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"min_margin": 1}}},
         r"columns.labels.helpful needs exactly one of index, winner, scores, score, always; it has none"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"index": "h", "winner": "w"}}},
         r"needs exactly one of index, winner, scores, score, always; it has both index and winner"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"score": "h"}}},
         r"a 'score' label does not apply to shape pair; shape pair takes index, winner, scores, always"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"index": "h", "min_margin": 1}}},
         r"unknown key\(s\) \['min_margin'\] for a 'index' label; its keys: index"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"scores": ["a"]}}},
         r"labels.helpful.scores must be a list of two column names \[COL_0, COL_1\]"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"scores": ["a", "b"], "min_margin": -1}}},
         r"labels.helpful.min_margin must be a non-negative number, got -1"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"scores": ["a", "b"], "higher_is_better": "yes"}}},
         r"labels.helpful.higher_is_better must be true or false"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"always": 2}}}, r"labels.helpful.always must be 0 or 1"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"winner": "w", "values": {"A": 2}}}},
         r"labels.helpful.values.A must be 0, 1 or null, got 2"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"winner": "w", "values": {"A": 0, "a": 1}}}},
         r"'a' and another value equal to it in any case map to different labels"),
        ({**PAIR_COLUMNS, "labels": {"helpful": {"winner": "w", "values": []}}},
         r"labels.helpful.values must map each raw value to 0, 1 or null"),
        ({**SCORED, "labels": {"helpful": {"index": "h"}}},
         r"a 'index' label does not apply to shape scored_list; shape scored_list takes score"),
        ({**SCORED, "transcripts": "text", "labels": {"helpful": {"score": "h"}}},
         r"'transcripts' is a key of shape pair, not of shape scored_list"),
        ({"shape": "scored_list", "prompt": "p", "response": "r", "labels": {"helpful": {"score": "h"}}},
         r"shape scored_list needs 'list'"),
        ({**SCORED, "pairs": "random", "labels": {"helpful": {"score": "h"}}}, r"pairs must be one of best_worst, all"),
        ({**SCORED, "max_pairs": 2, "labels": {"helpful": {"score": "h"}}},
         r"max_pairs applies to pairs: all only"),
        ({**SCORED, "pairs": "all", "max_pairs": 0, "labels": {"helpful": {"score": "h"}}},
         r"max_pairs must be a positive integer, got 0"),
        ({"shape": "row_per_response", "prompt": "p", "response": "r", "list": "l", "labels": {"h": {"score": "h"}}},
         r"'list' is a key of shape scored_list, not of shape row_per_response"),
    ],
)
def test_a_malformed_mapping_names_the_key(columns, message):
    with pytest.raises(ValueError, match=message):
        ColumnMapping.from_mapping(columns)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"preset": "pku_saferlhf", "columns": {}}, r"gives both 'preset' and 'columns'; a preset brings its own"),
        ({"preset": "pku_safe"}, r"unknown preset 'pku_safe'; presets: helpsteer2, hh_rlhf, pku_saferlhf,"),
        ({"preset": "pku_saferlhf", "split": "validation"},
         r"preset pku_saferlhf: unknown split 'validation'; its splits: train, test"),
        ({"preset": "hh_rlhf", "data_dir": "red-team"},
         r"preset hh_rlhf: unknown data_dir 'red-team'; its data_dirs: harmless-base, helpful-base"),
        ({"preset": "pku_saferlhf", "path": "x.jsonl"},
         r"unknown key\(s\) \['path'\] in the preset source .*; its keys: preset, dataset, name, split, revision"),
        ({"dataset": "org/x", "path": "x.jsonl"}, r"gives both 'dataset' and 'path'; give one"),
        ({"path": "x.jsonl", "split": "train"}, r"unknown key\(s\) \['split'\] in the file source .*; its keys: path"),
        ({"path": ""}, r"the file source's 'path' must be a non-empty string"),
        ({"dataset": "org/x", "colums": {}},
         r"unknown key\(s\) \['colums'\] in the dataset source .*dataset, name, split, revision, data_dir, columns"),
        ({"dataset": "org/x", "columns": {"responses": ["a", "b"]}}, r"columns: shape pair needs 'labels'"),
        ({"helpful": {"split": "train"}}, r"the source of objective 'helpful' is a mapping with none of dataset"),
    ],
)
def test_a_malformed_source_names_the_key(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_data_source(value)


def test_a_malformed_mapping_in_a_config_fails_when_the_config_is_read(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "train_data": {"path": "nowhere.jsonl", "columns": {"responses": ["a", "b"], "labels": {"h": {"indx": "x"}}}},
    }))
    with pytest.raises(ValueError, match=r"columns.labels.h needs exactly one of index"):
        parse_config(ParetoPreferenceConfig, config_file, [])


def test_a_config_resolves_path_and_preset_dataset_beside_the_file(tmp_path):
    (tmp_path / "clone").mkdir()
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "train_data": {"path": "pairs.jsonl", "columns": {"responses": ["a", "b"], "labels": {"h": {"index": "x"}}}},
        "eval_data": {"preset": "pku_saferlhf", "dataset": "clone", "split": "test"},
    }))
    config = parse_config(ParetoPreferenceConfig, config_file, [])
    assert config.train_data["path"] == str(tmp_path / "pairs.jsonl")
    assert config.eval_data == {"preset": "pku_saferlhf", "dataset": str(tmp_path / "clone"), "split": "test"}


# ---------------------------------------------------------------------------------------------------------
# Source resolution
# ---------------------------------------------------------------------------------------------------------


def test_one_predicate_tells_a_source_from_a_mapping_of_objectives():
    assert is_single_source({"dataset": "org/x"}) and is_single_source({"path": "x.jsonl"})
    assert is_single_source({"preset": "hh_rlhf"})
    assert not is_single_source({"helpful": "x.jsonl"}) and not is_single_source("x.jsonl")


def test_sources_resolve_to_paths_datasets_and_mapped_sources(tmp_path):
    assert resolve_data_source({"path": "x.jsonl"}) == "x.jsonl"
    mapped = resolve_data_source({"path": "x.jsonl", "columns": {"responses": ["a", "b"], "labels": INDEX}})
    assert isinstance(mapped, MappedSource) and mapped.objectives == ["helpful"] and str(mapped) == "x.jsonl"
    preset = resolve_data_source({"preset": "hh_rlhf", "data_dir": "harmless-base", "split": "test"})
    assert preset.source == HubDataset("Anthropic/hh-rlhf", split="test", data_dir="harmless-base")
    assert str(preset) == "preset hh_rlhf (dataset 'Anthropic/hh-rlhf', split 'test', data_dir 'harmless-base')"
    both = resolve_data_source({"harmless": {"preset": "hh_rlhf", "data_dir": "harmless-base"},
                                "helpful": {"preset": "hh_rlhf", "data_dir": "helpful-base"}})
    assert [source.source.data_dir for source in both.values()] == ["harmless-base", "helpful-base"]


def test_prompts_of_a_mapped_source_keep_duplicates(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "hs.jsonl", GROUP_ROWS)
    prompts = load_prompts(source(path, **ROWS))
    assert prompts.column_names == ["prompt"]
    assert prompts["prompt"] == ["P1", "P1", "P2", "P3", "P3", "P3", "P1"]
    conversations = write_jsonl(tmp_path / "conversations.jsonl", [{
        "A": [{"role": "user", "content": "Sum up."}, {"role": "assistant", "content": "Short."}],
        "B": [{"role": "user", "content": "Sum up."}, {"role": "assistant", "content": "Long."}],
    }])
    prompts = load_prompts(source(conversations, responses=["A", "B"], labels={"q": {"always": 0}}))
    assert prompts["prompt"] == [[{"role": "user", "content": "Sum up."}]]
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": TRANSCRIPT_PROMPT + " a", "rejected": TRANSCRIPT_PROMPT + " b"},
    ])
    prompts = load_prompts(source(hh, responses=["chosen", "rejected"], transcripts="text",
                                  labels={"q": {"always": 0}}))
    assert prompts["prompt"] == [TRANSCRIPT_PROMPT]


def test_no_warning_for_a_clean_mapped_source(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair(h=0), pair(h=1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset, _ = load_preferences(source(path, **PAIR_COLUMNS, labels=INDEX))
    assert dataset["labels"] == [[1], [-1]]
