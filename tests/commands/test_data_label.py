"""``paretoalign data label``: a judge's preference between the two responses of every pair, written as a new
objective beside the pairs' own labels (how the RACO paper labels faithfulness)."""

from __future__ import annotations

import json

import pytest
import yaml

from paretoalign.cli import main
from paretoalign.data.preferences import judged_labels, load_preferences

JUDGE = '''
def characters(prompts, completions, **kwargs):
    return [None if "?" in text else float(len(text)) for text in completions]
'''


@pytest.fixture()
def label_config(tmp_path, tiny_model_dir, write_jsonl, multi_label_row):
    rows = [
        multi_label_row("P1", "short", "much longer", helpful=0),          # judge: 1 (longer second)
        multi_label_row("P2", "a long answer", "tiny", helpful=0, safe=1),  # judge: 0
        multi_label_row("P3", "same", "SAME", helpful=1),                  # judge: tie -> null
        multi_label_row("P4", "what?", "fine", safe=0),                    # judge: unscored -> null
    ]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    (tmp_path / "judges.py").write_text(JUDGE)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl",
                                      "output_dir": str(tmp_path / "run"), "use_cpu": True, "report_to": "none"}))
    return config


def test_judged_labels_are_the_sign_of_the_score_difference():
    assert judged_labels([2.0, 1.0, 1.0, None, float("nan")], [1.0, 2.0, 1.0, 3.0, 0.0]) == [0, 1, None, None, None]
    with pytest.raises(ValueError, match="2 scores of response_0 against 1 of response_1"):
        judged_labels([1.0, 2.0], [1.0])


def test_data_label_writes_the_judges_objective_beside_the_pairs_labels(label_config, tmp_path, capsys):
    output = tmp_path / "labelled.jsonl"
    judge = f"{{function: '{tmp_path / 'judges.py'}:characters', label: chars}}"
    assert main(["data", "label", "--config", str(label_config), "--judge", judge, "--objective", "longer",
                 "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["prompt"] for row in rows] == ["P1", "P2", "P3", "P4"]
    assert [row["labels"] for row in rows] == [
        {"helpful": 0, "safe": None, "longer": 1},
        {"helpful": 0, "safe": 1, "longer": 0},
        {"helpful": 1, "safe": None, "longer": None},
        {"helpful": None, "safe": 0, "longer": None},
    ]
    printed = " ".join(capsys.readouterr().out.split())
    assert "longer labelled by 'chars' on 4 train pairs: 2 labelled, 1 ties, 1 unscored" in printed
    # helpful and longer both label P1 (0 vs 1: disagree) and P2 (0 vs 0: agree); safe and longer only P2 (1 vs 0)
    assert "disagrees with helpful on 50.00% of the 2 pairs both label" in printed
    assert "disagrees with safe on 100.00% of the 1 pairs both label" in printed
    pairs, names = load_preferences(output)
    assert names == ["helpful", "safe", "longer"] and pairs["labels"][0] == [1, 0, -1]


def test_data_label_refuses_an_existing_objective_and_writes_nothing(label_config, tmp_path, capsys):
    output = tmp_path / "labelled.jsonl"
    judge = f"{{function: '{tmp_path / 'judges.py'}:characters'}}"
    assert main(["data", "label", "--config", str(label_config), "--judge", judge, "--objective", "helpful",
                 "--output", str(output)]) == 2
    assert "already has an objective 'helpful'" in " ".join(capsys.readouterr().out.split())
    assert not output.exists()
    assert main(["data", "label", "--config", str(label_config), "--judge", judge, "--objective", "x",
                 "--output", str(output), "--split", "eval"]) == 2
    assert "eval_data is not set" in " ".join(capsys.readouterr().out.split())
