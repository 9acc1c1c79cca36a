"""Tests of paretoalign.data.prompts: generated arithmetic word problems and load_prompts for every source form."""

from __future__ import annotations

import json
import re

import datasets
import pytest

from paretoalign.data.files import builtin_data_path, PreferenceDataError
from paretoalign.data.prompts import arithmetic_word_problems, load_prompts
from paretoalign.data.transcripts import transcript_messages
from paretoalign.rewards.builtin import AnswerReward, FormatReward

# ---------------------------------------------------------------------------------------------------------
# Generated arithmetic word problems
# ---------------------------------------------------------------------------------------------------------

SENTENCE_EFFECTS = [
    (re.compile(r"^\w+ has (\d+) \w+ with (\d+) \w+ in each \w+$"), lambda total, a, b: int(a) * int(b)),
    (re.compile(r"^\w+ has (\d+) \w+$"), lambda total, a: int(a)),
    (re.compile(r"^\w+ gives (?:her|him) (\d+) \w+$"), lambda total, a: total + int(a)),
    (re.compile(r"^(?:She|He) finds (\d+) more$"), lambda total, a: total + int(a)),
    (re.compile(r"^(?:She|He) gives (\d+) \w+ to \w+$"), lambda total, a: total - int(a)),
    (re.compile(r"^(?:She|He) loses (\d+)$"), lambda total, a: total - int(a)),
]
"""How each statement of a generated problem changes the count, read back from the text."""


def solve(problem: str) -> tuple[int, int, list[int]]:
    """(answer, number of statements, operands) of a generated problem, from its text alone."""
    *statements, question = problem.split(". ")
    assert re.fullmatch(r"How many \w+ does \w+ have (now|in total)\?", question), question
    total, operands = 0, []
    for statement in statements:
        statement = statement.removesuffix(".")
        for pattern, effect in SENTENCE_EFFECTS:
            match = pattern.match(statement)
            if match:
                operands.extend(int(value) for value in match.groups())
                total = effect(total, *match.groups())
                assert total >= 0, problem
                break
        else:
            raise AssertionError(f"unexpected statement {statement!r} in {problem!r}")
    return total, len(statements), operands


def test_arithmetic_word_problems_columns_and_pinned_problems():
    problems = arithmetic_word_problems(3, seed=0)
    assert problems.column_names == ["prompt", "answer"]
    assert problems.features["answer"] == datasets.Value("string")
    system, user = problems[0]["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "<think></think>" in system["content"] and "<answer></answer>" in system["content"]
    assert [row["prompt"][1]["content"] for row in problems] == [
        "Grace has 11 books. Farid gives her 9 books. How many books does Grace have now?",
        "Chloe has 6 shelves with 4 books in each shelf. How many books does Chloe have in total?",
        "Grace has 10 baskets with 9 apples in each basket. How many apples does Grace have in total?",
    ]
    assert problems["answer"] == ["20", "24", "90"]


@pytest.mark.parametrize("steps", [1, 2])
def test_arithmetic_word_problems_answers_are_exact(steps):
    max_operand = 12
    problems = arithmetic_word_problems(200, seed=7, max_operand=max_operand, steps=steps)
    operations_seen = set()
    for row in problems:
        problem = row["prompt"][1]["content"]
        answer, statements, operands = solve(problem)
        assert row["answer"] == str(answer)
        is_product = " in each " in problem
        assert statements == steps + (0 if is_product else 1)
        assert all(1 <= operand <= max_operand for operand in operands)
        if is_product:
            assert all(2 <= factor <= 10 for factor in operands[:2])
        operations_seen.update(word for word in ("gives", "finds", "loses", "in each") if word in problem)
    assert operations_seen == {"gives", "finds", "loses", "in each"}


def test_arithmetic_word_problems_depend_only_on_the_seed():
    first = arithmetic_word_problems(20, seed=3, steps=2)
    assert first.to_list() == arithmetic_word_problems(20, seed=3, steps=2).to_list()
    assert first["answer"] != arithmetic_word_problems(20, seed=4, steps=2)["answer"]
    assert arithmetic_word_problems(5, seed=3, steps=2).to_list() == first.to_list()[:5]


def test_arithmetic_word_problems_score_with_the_answer_and_format_rewards():
    problems = arithmetic_word_problems(10, seed=1, steps=2)
    completions = [
        [{"role": "assistant", "content": f"<think>count</think> <answer>{answer}</answer>"}]
        for answer in problems["answer"]
    ]
    kwargs = {"answer": problems["answer"]}
    assert AnswerReward()(problems["prompt"], completions, **kwargs) == [1.0] * 10
    assert FormatReward()(problems["prompt"], completions, **kwargs) == [1.0] * 10
    wrong = [[{"role": "assistant", "content": f"<answer>{int(answer) + 1}</answer>"}] for answer in problems["answer"]]
    assert AnswerReward()(problems["prompt"], wrong, **kwargs) == [0.0] * 10


def test_arithmetic_word_problems_custom_system_prompt():
    problems = arithmetic_word_problems(2, system_prompt="Answer with a number.")
    assert problems[1]["prompt"][0] == {"role": "system", "content": "Answer with a number."}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_problems": 0}, "num_problems must be an integer of at least 1, got 0"),
        ({"num_problems": -3}, "num_problems must be an integer of at least 1"),
        ({"num_problems": 2.5}, "num_problems must be an integer of at least 1"),
        ({"num_problems": 2, "max_operand": 1}, "max_operand must be an integer of at least 2"),
        ({"num_problems": 2, "steps": 3}, "steps must be 1 or 2, got 3"),
        ({"num_problems": 2, "steps": 0}, "steps must be 1 or 2"),
        ({"num_problems": 2, "seed": "0"}, "seed must be an integer"),
        ({"num_problems": 2, "system_prompt": None}, "system_prompt must be a string"),
    ],
)
def test_arithmetic_word_problems_rejects_bad_arguments(params, message):
    with pytest.raises(ValueError, match=message):
        arithmetic_word_problems(**params)


# ---------------------------------------------------------------------------------------------------------
# load_prompts
# ---------------------------------------------------------------------------------------------------------


MESSAGE_ROWS = [
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}], "answer": "4"},
    {"prompt": [{"role": "user", "content": "3 + 3?"}], "answer": "6", "level": 2},
]


def test_load_prompts_jsonl_strings_with_extra_columns(tmp_path, write_jsonl):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"prompt": "Say hi", "answer": "hi"}, "", {"prompt": "2 + 3?", "answer": "5", "id": 7}],
    )
    prompts = load_prompts(path)
    assert prompts.column_names == ["prompt", "answer", "id"]
    assert prompts.to_list() == [
        {"prompt": "Say hi", "answer": "hi", "id": None},
        {"prompt": "2 + 3?", "answer": "5", "id": 7},
    ]


def test_load_prompts_messages_from_every_format(tmp_path, write_jsonl):
    expected = [
        {**MESSAGE_ROWS[0], "level": None},
        MESSAGE_ROWS[1],
    ]
    jsonl = write_jsonl(tmp_path / "p.jsonl", MESSAGE_ROWS)
    array = tmp_path / "p.json"
    array.write_text(json.dumps(MESSAGE_ROWS))
    parquet = tmp_path / "p.parquet"
    datasets.Dataset.from_list(expected).to_parquet(str(parquet))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(expected).save_to_disk(str(saved))
    for source in (jsonl, array, parquet, saved):
        assert load_prompts(source).to_list() == expected, source


def test_load_prompts_feeds_the_answer_reward(tmp_path, write_jsonl):
    prompts = load_prompts(write_jsonl(tmp_path / "p.jsonl", MESSAGE_ROWS))
    completions = [[{"role": "assistant", "content": "<answer>4</answer>"}]] * 2
    assert AnswerReward()(prompts["prompt"], completions, **prompts.remove_columns("prompt").to_dict()) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "ok"}, {"question": "no prompt"}], r"p\.jsonl, line 2, field 'prompt': missing field"),
        ([{"prompt": "ok"}, "", {"prompt": "  "}], r"line 3, field 'prompt': empty or whitespace-only prompt"),
        ([["not", "an", "object"]], r"line 1: expected a JSON object, got list"),
        (['{"prompt": "unclosed'], r"line 1: malformed JSON"),
        ([{"prompt": 5}], r"line 1, field 'prompt': expected a string or a list of messages, got int"),
        ([{"prompt": [{"content": "hi"}]}], r"line 1, field 'prompt\[0\].role': missing field"),
        ([{"prompt": []}], r"line 1, field 'prompt': empty message list"),
        ([{"prompt": [{"role": "user", "content": " "}]}], r"line 1, field 'prompt': empty message list"),
        (
            [MESSAGE_ROWS[0], {"prompt": "a string"}],
            r"line 2, field 'prompt': a string prompt in a file whose earlier prompts are messages",
        ),
        ([{"prompt": "a", "answer": 1}, {"prompt": "b", "answer": "x"}], r"field 'answer': the values of this column"),
        ([""], r"p\.jsonl: contains no rows"),
    ],
)
def test_load_prompts_reports_file_line_and_field(tmp_path, rows, message, write_jsonl):
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(PreferenceDataError, match=message):
        load_prompts(path)


def test_load_prompts_json_array_rows_and_missing_files(tmp_path):
    array = tmp_path / "p.json"
    array.write_text(json.dumps([{"prompt": "ok"}, {"prompt": None}]))
    with pytest.raises(PreferenceDataError, match=r"p\.json, row 2, field 'prompt': expected a string"):
        load_prompts(array)
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_prompts(tmp_path / "missing.jsonl")
    csv = tmp_path / "p.csv"
    csv.write_text("prompt\n")
    with pytest.raises(PreferenceDataError, match="unsupported file type '.csv'"):
        load_prompts(csv)


# ---------------------------------------------------------------------------------------------------------
# load_prompts: one test per source form
# ---------------------------------------------------------------------------------------------------------


def test_load_prompts_generates_arithmetic_problems_from_limit_and_seed():
    problems = load_prompts("builtin:arithmetic", limit=20, seed=3)
    assert problems.column_names == ["prompt", "answer"]
    assert problems.to_list() == arithmetic_word_problems(20, seed=3).to_list()
    assert problems.to_list() == load_prompts("builtin:arithmetic", limit=20, seed=3).to_list()
    assert problems["answer"] != load_prompts("builtin:arithmetic", limit=20, seed=4)["answer"]
    assert load_prompts("builtin:arithmetic", limit=3)["answer"] == ["20", "24", "90"]
    with pytest.raises(ValueError, match="builtin:arithmetic generates its prompts: say how many"):
        load_prompts("builtin:arithmetic")


def test_load_prompts_reads_shipped_data(read_jsonl):
    prompts = load_prompts("builtin:hh-rlhf/helpful/test.jsonl")
    path = builtin_data_path("hh-rlhf/helpful/test.jsonl")
    rows = read_jsonl(path)
    assert len(prompts) == len(rows) == 300
    assert prompts.column_names == ["prompt", "chosen", "rejected"]
    assert prompts[0] == rows[0] and prompts[299] == rows[299]
    assert transcript_messages(prompts[0]["prompt"])[0] == {"role": "user", "content": "What is the IRS?"}


def test_load_prompts_text_file_one_prompt_per_non_blank_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("  Say hi  \n\n \t \nWhat is 2 + 2?\r\nlast line without newline", encoding="utf-8")
    prompts = load_prompts(path)
    assert prompts.column_names == ["prompt"]
    assert prompts["prompt"] == ["Say hi", "What is 2 + 2?", "last line without newline"]
    assert load_prompts(str(path), limit=2)["prompt"] == ["Say hi", "What is 2 + 2?"]


def test_load_prompts_jsonl_keeps_every_column_in_order_of_first_appearance(tmp_path, write_jsonl):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [{"id": 1, "prompt": "2 + 3?", "answer": "5"}, {"prompt": "4 + 4?", "answer": "8", "level": "easy", "id": 2}],
    )
    prompts = load_prompts(path)
    assert prompts.column_names == ["id", "prompt", "answer", "level"]
    assert prompts.to_list() == [
        {"id": 1, "prompt": "2 + 3?", "answer": "5", "level": None},
        {"id": 2, "prompt": "4 + 4?", "answer": "8", "level": "easy"},
    ]


def test_load_prompts_message_lists(tmp_path, write_jsonl):
    prompts = load_prompts(write_jsonl(tmp_path / "p.jsonl", MESSAGE_ROWS))
    assert prompts["prompt"] == [row["prompt"] for row in MESSAGE_ROWS]
    assert prompts["answer"] == ["4", "6"] and prompts["level"] == [None, 2]


def test_load_prompts_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prompt file not found.*nowhere\.jsonl"):
        load_prompts(tmp_path / "nowhere.jsonl")
    with pytest.raises(FileNotFoundError, match=r"prompt file not found.*nowhere\.txt"):
        load_prompts(str(tmp_path / "nowhere.txt"), limit=3)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", r"empty\.txt: contains no prompts"),
        ("blank.txt", "\n  \n\t\n", r"blank\.txt: contains no prompts"),
        ("empty.jsonl", "\n\n", r"empty\.jsonl: contains no rows"),
    ],
    ids=["empty-text", "blank-text", "empty-jsonl"],
)
def test_load_prompts_without_prompts_is_an_error_naming_the_source(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_prompts(path)


def test_load_prompts_unknown_builtin_lists_what_exists():
    with pytest.raises(
        FileNotFoundError,
        match=r"no shipped data named 'arithmetik'; available: hh-rlhf/harmless-concise/test\.jsonl, .*"
        r"; generated prompt sets: builtin:arithmetic",
    ):
        load_prompts("builtin:arithmetik", limit=4)


def test_load_prompts_limit_keeps_the_first_rows(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"question {index}"} for index in range(5)])
    assert load_prompts(path, limit=2)["prompt"] == ["question 0", "question 1"]
    every_prompt = load_prompts(path)["prompt"]
    assert load_prompts(path, limit=5)["prompt"] == load_prompts(path, limit=50)["prompt"] == every_prompt
    assert len(load_prompts("builtin:hh-rlhf/harmless/test.jsonl", limit=7)) == 7
    for limit in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer or None"):
            load_prompts(path, limit=limit)


def test_prompts_load_from_a_dataset_split_with_their_other_columns(tmp_path, datasets_cache, write_hub_dataset):
    folder = write_hub_dataset(tmp_path / "repo", {
        "train": [{"prompt": "What is 2 + 2?", "answer": "4"}, {"prompt": "What is 3 + 3?", "answer": "6"}],
        "test": [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": " ", "answer": "0"}],
    })
    rows = load_prompts({"dataset": folder, "split": "train"})
    assert rows["prompt"] == ["What is 2 + 2?", "What is 3 + 3?"] and rows["answer"] == ["4", "6"]
    assert load_prompts({"dataset": folder}, limit=1)["prompt"] == ["What is 2 + 2?"]
    with pytest.raises(PreferenceDataError) as error:
        load_prompts({"dataset": folder, "split": "test"})
    assert str(error.value) == (
        f"dataset {folder!r}, split 'test', row 1, field 'prompt': empty or whitespace-only prompt"
    )
    with pytest.raises(ValueError, match="has no 'dataset'"):
        load_prompts({"split": "train"})
