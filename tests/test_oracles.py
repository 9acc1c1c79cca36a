"""Tests for paretoalign.oracles: the reward oracle, the labels-file oracle and the person at the terminal."""

from __future__ import annotations

import io
import json

import pytest

from paretoalign.rewards.specs import resolve_spec_paths

from paretoalign.oracles import (
    HumanOracle,
    LabelsFileOracle,
    OracleInterrupted,
    RewardOracle,
    build_oracle,
    pair_key,
)


def by_length(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]


def test_reward_oracle_is_one_query_per_ranking():
    oracle = RewardOracle(by_length)
    ranking = oracle.rank("q", ["aa", "a", "aaaa", "aaa"])
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 1)
    assert oracle.max_cost(8) == 1


def test_labels_file_oracle_in_either_order_and_unknown_pairs_reported(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "b"},
        {"prompt": "q", "response_a": "z", "response_b": "y", "preferred": "a"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    oracle = LabelsFileOracle(path)
    ranking = oracle.rank("q", ["x", "y", "z"])
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 2)  # y beats x; z beats y (stored as z vs y)
    ranking = oracle.rank("q", ["x", "w", "y"])  # (x, w) is not in the file: counted, not charged, not guessed
    assert oracle.unknown_pairs == 1 and oracle.unknown_examples == ["q"]
    assert (ranking.best, ranking.worst, ranking.cost, ranking.unanswered) == (2, 0, 1, 1)
    assert pair_key("q", "x", "y") == pair_key("q", "y", "x")


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "c"}',
         "line 1, field 'preferred': must be 'a' or 'b', got 'c'"),
        ('{"prompt": "q", "response_a": 3, "response_b": "y", "preferred": "a"}',
         "line 1, field 'response_a': must be a string"),
        ("not json", "line 1: malformed JSON"),
    ],
)
def test_labels_file_errors_name_the_line_and_field(tmp_path, row, message):
    path = tmp_path / "labels.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=message):
        LabelsFileOracle(path)


def test_labels_file_contradictions_are_errors(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "a"}\n'
        '{"prompt": "q", "response_a": "y", "response_b": "x", "preferred": "a"}\n'
    )
    with pytest.raises(ValueError, match="line 2: contradicts line 1"):
        LabelsFileOracle(path)


def _human(path, answers: str) -> tuple[HumanOracle, io.StringIO]:
    shown = io.StringIO()
    return HumanOracle(path, input_stream=io.StringIO(answers), output_stream=shown), shown


def test_human_oracle_via_stdin_resumes_without_asking_again(tmp_path):
    answers_path = tmp_path / "answers.jsonl"
    responses = ["short", "a longer reply", "the longest reply of all"]

    def key_for(champion, challenger, prefer):
        """The key that prefers ``responses[prefer]`` in the comparison (champion, challenger)."""
        a, b = responses[champion], responses[challenger]
        swap = int(pair_key("q", a, b)[0], 16) % 2 == 1
        first = b if swap else a
        return "1" if responses[prefer] == first else "2"

    # the person answers the first comparison (prefers response 1 over 0), then input ends
    oracle, shown = _human(answers_path, "maybe\n" + key_for(0, 1, 1) + "\n")
    with pytest.raises(OracleInterrupted, match="1 given are saved"):
        oracle.rank("q", responses, budget_left=10)
    text = shown.getvalue()
    assert "please type 1, 2 or s, not 'maybe'" in text
    assert "comparison 1 of 2 for this prompt" in text and "labels left: 10" in text
    assert len(answers_path.read_text().splitlines()) == 1

    # a new session reuses the saved answer and asks only the second comparison
    oracle, shown = _human(answers_path, key_for(1, 2, 2) + "\n")
    ranking = oracle.rank("q", responses, budget_left=10)
    assert shown.getvalue().count("PROMPT:") == 1 and "comparison 2 of 2" in shown.getvalue()
    assert "labels left: 9" in shown.getvalue()
    assert (oracle.asked, oracle.reused) == (1, 1)
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 2)

    # a third session asks nothing at all; a skip is stored, charged and keeps the champion
    oracle, shown = _human(answers_path, "")
    assert oracle.rank("q", responses).best == 2 and shown.getvalue() == ""
    oracle, _ = _human(answers_path, "s\n")
    skipped = oracle.rank("q", ["short", "other"])
    assert (skipped.best, skipped.worst, skipped.cost, skipped.unanswered) == (0, None, 1, 1)
    rows = [json.loads(line) for line in answers_path.read_text().splitlines()]
    assert [row["answer"] for row in rows][-1] == "skip" and len(rows) == 3


def test_human_oracle_ignores_a_line_cut_short_by_a_crash(tmp_path):
    answers_path = tmp_path / "answers.jsonl"
    answers_path.write_text('{"key": "abc", "preferred": "x"}\n{"key": "de')
    oracle, _ = _human(answers_path, "")
    assert oracle.answers == {"abc": "x"}


def test_build_oracle_from_its_config_spec(tmp_path):
    module = tmp_path / "judges.py"
    module.write_text("def by_length(prompts, completions):\n    return [float(len(text)) for text in completions]\n")
    oracle = build_oracle({"type": "reward", "function": f"{module}:by_length", "label": "gold"})
    assert isinstance(oracle, RewardOracle) and oracle.name == "gold"
    assert oracle.rank("q", ["aa", "a", "aaa"]).best == 2
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "a"}\n')
    assert isinstance(build_oracle({"type": "labels", "path": str(labels)}), LabelsFileOracle)
    human = build_oracle({"type": "human", "answers": str(tmp_path / "answers.jsonl")},
                         input_stream=io.StringIO(""), output_stream=io.StringIO())
    assert isinstance(human, HumanOracle)
    with pytest.raises(ValueError, match="type 'labels' needs 'path' .* or 'dataset'"):
        build_oracle({"type": "labels"})
    with pytest.raises(ValueError, match="unknown type 'crowd'"):
        build_oracle({"type": "crowd"})
    with pytest.raises(ValueError, match=r"oracle: unknown reward 'no_such_reward'"):
        build_oracle({"type": "reward", "name": "no_such_reward"})


def test_labels_come_from_a_hugging_face_dataset_too(tmp_path, write_hub_dataset):
    rows = [
        {"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "b"},
        {"prompt": "q", "response_a": "z", "response_b": "y", "preferred": "c"},
    ]
    folder = write_hub_dataset(tmp_path / "labels-clone", {"train": rows[:1], "test": rows})
    oracle = build_oracle({"type": "labels", "dataset": str(folder), "split": "train"})
    assert isinstance(oracle, LabelsFileOracle)
    assert oracle.rank("q", ["x", "y"]).best == 1
    with pytest.raises(ValueError, match=r"split 'test', row 1, field 'preferred': must be 'a' or 'b', got 'c'"):
        build_oracle({"type": "labels", "dataset": str(folder), "split": "test"})


def test_a_labels_dataset_beside_the_config_is_resolved_there(tmp_path):
    (tmp_path / "labels-clone").mkdir()
    spec = resolve_spec_paths({"type": "labels", "dataset": "labels-clone", "split": "train"}, tmp_path)
    assert spec["dataset"] == str(tmp_path / "labels-clone")
    assert resolve_spec_paths({"type": "labels", "dataset": "org/labels"}, tmp_path)["dataset"] == "org/labels"
