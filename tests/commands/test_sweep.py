"""``paretoalign sweep`` (paretoalign.commands.sweep): weight specs, the front summary on a hand-made case, a sweep
with its front and resume, and the dispatch of ``paretoalign synthetic``."""

from __future__ import annotations

import csv
import json

import pytest

from paretoalign.cli import main
from paretoalign.commands.sweep import parse_weight_spec, summarise_front


def test_weight_specs():
    assert parse_weight_spec("grid:2", 2) == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert parse_weight_spec("0.8,0.2;0.3,0.7", 2) == [[0.8, 0.2], [0.3, 0.7]]
    with pytest.raises(ValueError, match="3 weights for 2"):
        parse_weight_spec("0.2,0.3,0.5", 2)
    with pytest.raises(ValueError, match="sum to 1"):
        parse_weight_spec("0.8,0.8", 2)
    with pytest.raises(ValueError, match="grid:N"):
        parse_weight_spec("grid:x", 2)


def test_front_summary_hypervolume_against_the_reference_point():
    rows = [{"weighting": "raco", "weights": [1.0, 0.0], "accuracy/a": 0.75, "accuracy/b": 0.5},
            {"weighting": "raco", "weights": [0.5, 0.5], "accuracy/a": 0.625, "accuracy/b": 0.625},
            {"weighting": "raco", "weights": [0.0, 1.0], "accuracy/a": 0.5, "accuracy/b": 0.5625}]
    summary = summarise_front(rows, ["a", "b"], "accuracy")["raco"]
    # Improvements over (0.5, 0.5): (0.25, 0), (0.125, 0.125), (0, 0.0625): only the middle one spans area.
    assert summary["hypervolume"] == pytest.approx(0.125 * 0.125)
    assert summary["non_dominated"] == [True, True, False]  # (0.5, 0.5625) is dominated by (0.625, 0.625)


def test_sweep_writes_the_front_and_resumes_without_training_again(tmp_path, lora_run_config, capsys):
    arguments = ["sweep", "--config", str(lora_run_config), "--weights", "grid:2", "--weightings", "raco,weighted_sum"]
    assert main(arguments) == 0
    out = tmp_path / "run"
    with open(out / "front.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 6 and {row["weighting"] for row in rows} == {"raco", "weighted_sum"}
    assert [(row["weight/concise"], row["weight/safe"]) for row in rows[:3]] == [("1.0", "0.0"), ("0.5", "0.5"),
                                                                                ("0.0", "1.0")]
    front = json.loads((out / "front.json").read_text())
    assert front["objectives"] == ["concise", "safe"] and front["reference_point"] == [0.5, 0.5]
    for row in front["runs"]:
        metrics = json.loads((tmp_path / row["run_dir"] / "metrics.json").read_text())
        assert row["accuracy/concise"] == metrics["after"]["concise"]["accuracy"]
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "front.png").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "hypervolume" in printed
    for entry in front["weightings"].values():
        assert f"{entry['hypervolume']:.5f}" in printed

    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")}
    assert len(stamps) == 6
    assert main(arguments + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 6
    assert main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")} == stamps


def test_synthetic_command_is_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthetic", "--help"])
    assert exit_info.value.code == 0
    assert "paretoalign synthetic" in capsys.readouterr().out
