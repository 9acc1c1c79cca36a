"""Held-out evaluation on a hand-made case, `paretoalign eval`, and weight sweeps with their front and resume."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml

from paretoalign.cli import main
from paretoalign.evaluation import preference_report
from paretoalign.sweep import parse_weight_spec, summarise_front

from test_preference_trainer import write_multi_label_pairs


def test_preference_report_on_known_margins():
    # Log-ratios: pair 0 (a: -1 - -2 = +1, b: -3 - -3 = 0) -> delta = 1; pair 1 (a: 0, b: +2) -> delta = -2;
    # pair 2: delta = 0. beta = 0.5 -> h = (0.5, -1, 0).
    policy = torch.tensor([[-1.0, -3.0], [-4.0, -1.0], [-2.0, -2.0]])
    reference = torch.tensor([[-2.0, -3.0], [-4.0, -3.0], [-2.0, -2.0]])
    labels = torch.tensor([[1, -1], [-1, 0], [1, 1]])
    report = preference_report(policy, reference, labels, ["a", "b"], beta=0.5)
    # Objective a: signed margins 0.5, 1.0, 0 -> accuracy (2 + 1/2) / 3, margin 0.5,
    # loss mean(-log sigmoid(0.5), -log sigmoid(1), log 2).
    expected_loss_a = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.0)) + math.log(2)) / 3
    assert report["a"] == pytest.approx({"accuracy": 2.5 / 3, "margin": 0.5, "loss": expected_loss_a, "pairs": 3})
    # Objective b: pairs 0 (label -1: -0.5) and 2 (0) -> accuracy 1/4, margin -0.25.
    expected_loss_b = (math.log1p(math.exp(0.5)) + math.log(2)) / 2
    assert report["b"] == pytest.approx({"accuracy": 0.25, "margin": -0.25, "loss": expected_loss_b, "pairs": 2})


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


@pytest.fixture()
def sweep_config(tmp_path, tiny_model_dir):
    write_multi_label_pairs(tmp_path / "pairs.jsonl")
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "eval_data": "pairs.jsonl",
        "use_lora": True, "lora_r": 4, "lora_alpha": 8, "max_length": 64, "per_device_train_batch_size": 4,
        "max_steps": 2, "learning_rate": 1e-2, "output_dir": str(tmp_path / "sweep"), "report_to": "none",
        "save_strategy": "no", "use_cpu": True, "disable_tqdm": True,
    }))
    return config_file


def test_sweep_writes_the_front_and_resumes_without_training_again(tmp_path, sweep_config, capsys):
    arguments = ["sweep", "--config", str(sweep_config), "--weights", "grid:2", "--weightings", "raco,weighted_sum"]
    assert main(arguments) == 0
    out = tmp_path / "sweep"
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
    assert "hypervolume" in capsys.readouterr().out

    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")}
    assert len(stamps) == 6
    assert main(arguments + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 6
    assert main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")} == stamps


def test_eval_command_reproduces_the_runs_held_out_metrics(tmp_path, sweep_config):
    assert main(["train", "--config", str(sweep_config), "--output_dir", str(tmp_path / "one")]) == 0
    assert main(["eval", "--model", str(tmp_path / "one" / "model"), "--config", str(sweep_config)]) == 0
    evaluated = json.loads((tmp_path / "one" / "eval.json").read_text())["metrics"]
    trained = json.loads((tmp_path / "one" / "metrics.json").read_text())["after"]
    for name in ("concise", "safe"):
        assert evaluated[name]["accuracy"] == trained[name]["accuracy"]
        assert evaluated[name]["loss"] == pytest.approx(trained[name]["loss"], abs=1e-6)


def test_synthetic_command_is_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthetic", "--help"])
    assert exit_info.value.code == 0
    assert "paretoalign synthetic" in capsys.readouterr().out
