"""``paretoalign data inspect``: labels, conflicts, lengths and truncation of a training config's data."""

from __future__ import annotations

import json

import pytest
import yaml

from paretoalign.cli import main
from paretoalign.io import write_text_atomic

TRAIN = "builtin:hh-rlhf/harmless-concise/train.jsonl"
EVAL = "builtin:hh-rlhf/harmless-concise/test.jsonl"


@pytest.fixture()
def inspect_config(tmp_path, tiny_model_dir):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": TRAIN, "eval_data": EVAL, "max_length": 64,
        "output_dir": str(tmp_path / "run"), "report_to": "none", "use_cpu": True,
    }))
    return config_file


def conflict_share(path) -> tuple[float, int]:
    """Share of the rows labelled for both harmless and concise whose labels differ, read from the JSON Lines."""
    both = disagree = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        labels = json.loads(line)["labels"] if line.strip() else {}
        if labels.get("harmless") is not None and labels.get("concise") is not None:
            both += 1
            disagree += labels["harmless"] != labels["concise"]
    return disagree / both, both


def test_inspect_reports_labels_conflicts_lengths_and_truncation(inspect_config, tmp_path, capsys, shipped_data,
                                                                  hh_rlhf):
    out = tmp_path / "report.json"
    assert main(["data", "inspect", "--config", str(inspect_config), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    share, both = conflict_share(shipped_data / hh_rlhf / "harmless-concise" / "train.jsonl")
    assert round(share, 2) == 0.44
    assert report["conflict"]["harmless"]["concise"] == pytest.approx(share)
    assert report["conflict"]["concise"]["harmless"] == pytest.approx(share)
    assert report["conflict"]["harmless"]["harmless"] == 0.0
    assert report["labelled_by_both"]["harmless"]["concise"] == both
    assert report["objectives"]["concise"]["labelled"] == both
    assert report["objectives"]["concise"]["labelled"] + report["objectives"]["concise"]["ties"] == report["pairs"]
    assert report["objectives"]["harmless"] == {"labelled": report["pairs"], "ties": 0}
    for text in ("prompt", "response"):
        lengths = report["lengths"][text]
        assert 0 < lengths["p50"] <= lengths["p90"] <= lengths["p99"] <= lengths["max"]
    assert (report["max_length"], report["max_prompt_length"]) == (64, 32)
    assert 0 < report["prompt_truncated_pairs"] <= report["truncated_pairs"] <= report["pairs"]
    eval_share, eval_both = conflict_share(shipped_data / hh_rlhf / "harmless-concise" / "test.jsonl")
    assert report["eval"]["conflict"]["concise"]["harmless"] == pytest.approx(eval_share)
    assert report["eval"]["labelled_by_both"]["concise"]["harmless"] == eval_both
    printed = capsys.readouterr().out
    assert f"{share:.2%} ({both})" in printed and "eval:" in printed


def test_config_fields_on_the_command_line_override_the_file(inspect_config, tmp_path):
    out = tmp_path / "report.json"
    assert main(["data", "inspect", "--config", str(inspect_config), "--json", str(out), "--max_length", "4096",
                 "--eval_data", TRAIN]) == 0
    report = json.loads(out.read_text())
    assert (report["truncated_pairs"], report["prompt_truncated_pairs"]) == (0, 0)
    assert report["eval"]["conflict"] == report["conflict"]


def test_json_is_written_atomically(inspect_config, tmp_path, monkeypatch):
    out = tmp_path / "report.json"
    out.write_text("the previous report\n")
    written = []

    def record(path, text):
        written.append(path)
        return write_text_atomic(path, text)

    monkeypatch.setattr("paretoalign.io.write_text_atomic", record)
    assert main(["data", "inspect", "--config", str(inspect_config), "--json", str(out)]) == 0
    assert written == [str(out)]
    assert "conflict" in json.loads(out.read_text())
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


@pytest.mark.parametrize("field, value, words", [
    ("train_data", "nowhere.jsonl", ["nowhere.jsonl"]),
    ("model_name_or_path", "/no/such/model", ["/no/such/model"]),
    ("max_length", 1, ["max_length"]),
])
def test_a_bad_config_exits_2_with_one_line(inspect_config, tmp_path, capsys, field, value, words):
    config = yaml.safe_load(inspect_config.read_text())
    config[field] = value
    inspect_config.write_text(yaml.safe_dump(config))
    assert main(["data", "inspect", "--config", str(inspect_config), "--json", str(tmp_path / "out.json")]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error:") and len(printed.strip().splitlines()) == 1
    for word in words:
        assert word in printed
    assert not (tmp_path / "out.json").exists()
