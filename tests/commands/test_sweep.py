"""``paretoalign sweep`` (paretoalign.commands.sweep): weight specs, the front summary on hand-made cases, a sweep
with its front and resume, with seeds and bootstrap intervals, a front of judge scores, and the dispatch of
``paretoalign synthetic``."""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest
import torch
import yaml
from transformers import LlamaForSequenceClassification

from paretoalign.cli import main
from paretoalign.commands.sweep import (
    parse_metric,
    parse_seeds,
    parse_weight_spec,
    summarise_front,
)
from paretoalign.pareto import bootstrap_mean_interval, hypervolume


def test_weight_specs():
    assert parse_weight_spec("grid:2", 2) == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert parse_weight_spec("0.8,0.2;0.3,0.7", 2) == [[0.8, 0.2], [0.3, 0.7]]
    with pytest.raises(ValueError, match="3 weights for 2"):
        parse_weight_spec("0.2,0.3,0.5", 2)
    with pytest.raises(ValueError, match="sum to 1"):
        parse_weight_spec("0.8,0.8", 2)
    with pytest.raises(ValueError, match="grid:N"):
        parse_weight_spec("grid:x", 2)


def test_seed_and_metric_specs():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(ValueError, match="names a seed twice"):
        parse_seeds("1,1")
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_seeds("0,a")
    assert parse_metric("loss").name == "loss" and not parse_metric("loss").larger_is_better
    judged = parse_metric("reward:quality, faithful")
    assert judged.rewards == ("quality", "faithful") and judged.axes(["a", "b"]) == ["quality", "faithful"]
    with pytest.raises(ValueError, match="two or more distinct reward names"):
        parse_metric("reward:quality")
    with pytest.raises(ValueError, match="--metric must be one of"):
        parse_metric("win_rate")


def test_front_summary_hypervolume_against_the_reference_point():
    rows = [{"weighting": "raco", "weights": [1.0, 0.0], "accuracy/a": 0.75, "accuracy/b": 0.5},
            {"weighting": "raco", "weights": [0.5, 0.5], "accuracy/a": 0.625, "accuracy/b": 0.625},
            {"weighting": "raco", "weights": [0.0, 1.0], "accuracy/a": 0.5, "accuracy/b": 0.5625}]
    summary = summarise_front(rows, ["a", "b"], "accuracy")["raco"]
    # Improvements over (0.5, 0.5): (0.25, 0), (0.125, 0.125), (0, 0.0625): only the middle one spans area.
    assert summary["hypervolume"] == pytest.approx(0.125 * 0.125)
    assert summary["non_dominated"] == [True, True, False]  # (0.5, 0.5625) is dominated by (0.625, 0.625)
    # gains (0.25, 0), (0.125, 0.125), (0, 0.0625): the best worst-objective gain is the middle run's 0.125, and every
    # gain points along its weights (angle 0)
    assert summary["worst_objective_gain"] == 0.125 and summary["worst_objective_gain_weights"] == [0.5, 0.5]
    assert summary["preference_angle"] == pytest.approx(0.0, abs=1e-6)


def test_front_summary_over_seeds_worst_gain_and_preference_angle():
    rows = [{"weighting": "raco", "weights": [1.0, 0.0], "accuracy/a": 0.7, "accuracy/b": 0.45},
            {"weighting": "raco", "weights": [1.0, 0.0], "accuracy/a": 0.5, "accuracy/b": 0.45},
            {"weighting": "raco", "weights": [0.5, 0.5], "accuracy/a": 0.45, "accuracy/b": 0.55},
            {"weighting": "raco", "weights": [0.5, 0.5], "accuracy/a": 0.35, "accuracy/b": 0.55}]
    summary = summarise_front(rows, ["a", "b"], "accuracy")["raco"]
    # Means over the two seeds: (0.6, 0.45) and (0.4, 0.55); gains over 0.5: (0.1, -0.05) and (-0.1, 0.05).
    assert np.allclose(summary["points"], [[0.6, 0.45], [0.4, 0.55]])
    assert summary["seed_points"] == [[[0.7, 0.45], [0.5, 0.45]], [[0.45, 0.55], [0.35, 0.55]]]
    assert summary["hypervolume"] == 0.0  # neither mean point beats the reference on both objectives
    assert summary["worst_objective_gain"] == pytest.approx(-0.05)
    assert summary["worst_objective_gain_weights"] == [1.0, 0.0]
    # angle((0.1, -0.05), (1, 0)) = acos(0.1 / |g|); angle((-0.1, 0.05), (0.5, 0.5)) = acos(-0.025 / (|g| |w|)):
    # a negative gain gives an angle above 90 degrees.
    norm = math.hypot(0.1, 0.05)
    first = math.degrees(math.acos(0.1 / norm))
    second = math.degrees(math.acos(-0.025 / (norm * math.hypot(0.5, 0.5))))
    assert second > 90
    assert summary["preference_angle"] == pytest.approx((first + second) / 2)
    assert summary["hypervolume_low"] is None and summary["point_low"] is None  # no per-pair outcomes given

    # with per-pair outcomes: a hypervolume interval over pairs and seeds, error bars per mean point
    # (20 pairs per objective, won as often as the rows' accuracies say)
    samples = [{name: [1.0] * round(20 * row[f"accuracy/{name}"]) + [0.0] * round(20 * (1 - row[f"accuracy/{name}"]))
                for name in ("a", "b")} for row in rows]
    assert all(len(sample["a"]) == 20 and len(sample["b"]) == 20 for sample in samples)
    summary = summarise_front(rows, ["a", "b"], "accuracy", samples=samples)["raco"]
    assert summary["hypervolume_low"] == 0.0 and summary["hypervolume_high"] > 0.0
    for point, low, high in zip(summary["points"], summary["point_low"], summary["point_high"]):
        assert all(lo <= value <= hi for value, lo, hi in zip(point, low, high))


def test_front_summary_compares_every_weighting_with_the_first_on_the_same_draws():
    # 40 pairs per objective, seeds 0 and 1. weighted_sum wins the first 24 pairs of each objective; raco those and
    # 4 more (outcomes are never worse pair by pair). Paired: raco's hypervolume minus weighted_sum's is positive in
    # every resample (raco dominates pair by pair), so the whole interval lies above 0.
    def row(weighting, seed, won):
        return {"weighting": weighting, "weights": [0.5, 0.5], "seed": seed, "accuracy/a": won / 40,
                "accuracy/b": won / 40}

    rows = [row("weighted_sum", 0, 24), row("weighted_sum", 1, 24), row("raco", 0, 28), row("raco", 1, 28)]
    samples = [{name: [1.0] * round(40 * r["accuracy/a"]) + [0.0] * (40 - round(40 * r["accuracy/a"]))
                for name in ("a", "b")} for r in rows]
    summary = summarise_front(rows, ["a", "b"], "accuracy", samples=samples)
    assert summary["weighted_sum"]["hypervolume_difference"] is None  # the baseline
    difference = summary["raco"]["hypervolume_difference"]
    assert difference["baseline"] == "weighted_sum"
    assert difference["value"] == pytest.approx(0.2 ** 2 - 0.1 ** 2)
    assert 0 < difference["low"] <= difference["value"] <= difference["high"]
    # separately, the two hypervolumes' intervals overlap
    assert summary["raco"]["hypervolume_low"] < summary["weighted_sum"]["hypervolume_high"]
    # a weighting whose runs have different seeds (a sweep stopped half-way) gets no intervals and no difference
    partial = summarise_front(rows[:3], ["a", "b"], "accuracy", samples=samples[:3])
    assert partial["raco"]["hypervolume_difference"] is None and partial["raco"]["hypervolume_low"] is not None
    uneven = rows + [{**row("raco", 0, 28), "weights": [1.0, 0.0]}]
    summary = summarise_front(uneven, ["a", "b"], "accuracy", samples=samples + samples[2:3])
    assert summary["raco"]["hypervolume_low"] is None and summary["raco"]["hypervolume_difference"] is None


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
        # without --seeds: one run per (weighting, weights) in <weighting>/w_.../, trained with the config's seed
        assert (tmp_path / row["run_dir"]).relative_to(out).parts[0] == row["weighting"]
        assert len((tmp_path / row["run_dir"]).relative_to(out).parts) == 2 and row["seed"] == 42
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

    # --finished-only trains nothing: the three mgda runs are left out of the front and listed as unfinished
    with_mgda = ["sweep", "--config", str(lora_run_config), "--weights", "grid:2", "--weightings",
                 "raco,weighted_sum,mgda", "--finished-only"]
    capsys.readouterr()
    assert main(with_mgda) == 0
    assert not (out / "mgda").exists()
    partial = json.loads((out / "front.json").read_text())
    assert partial["runs"] == front["runs"] and partial["weightings"] == front["weightings"]
    assert [(tmp_path / path).relative_to(out).parts[0] for path in partial["unfinished"]] == ["mgda"] * 3
    assert "3 unfinished runs left out" in " ".join(capsys.readouterr().out.split())
    assert main(with_mgda[:6] + ["mgda", "--finished-only"]) == 2
    assert "none of the 3 runs of the sweep" in " ".join(capsys.readouterr().out.split())


def test_sweep_over_seeds_has_intervals_and_resumes(tmp_path, lora_run_config, capsys):
    arguments = ["sweep", "--config", str(lora_run_config), "--weights", "0.8,0.2;0.2,0.8", "--weightings", "raco",
                 "--seeds", "0,1"]
    assert main(arguments) == 0
    out = tmp_path / "run"
    names = ["concise", "safe"]
    for weights in ("w_0.800_0.200", "w_0.200_0.800"):
        for seed in (0, 1):
            assert (out / "raco" / weights / f"seed_{seed}" / "metrics.json").is_file()
    front = json.loads((out / "front.json").read_text())
    assert front["seeds"] == [0, 1] and [row["seed"] for row in front["runs"]] == [0, 1, 0, 1]
    # the four runs share the base model and the held-out pairs: one file of reference log-probabilities, and the same
    # "before" numbers in every run
    assert len(list((out / "reference-logps").glob("reference-logps-*.pt"))) == 1
    befores = [json.loads((tmp_path / row["run_dir"] / "metrics.json").read_text())["before"] for row in front["runs"]]
    assert all(before == befores[0] for before in befores)
    for row in front["runs"]:
        metrics = json.loads((tmp_path / row["run_dir"] / "metrics.json").read_text())
        assert yaml.safe_load((tmp_path / row["run_dir"] / "config.yaml").read_text())["seed"] == row["seed"]
        for name in names:
            outcomes = metrics["after_outcomes"][name]
            assert set(outcomes) <= {0.0, 0.5, 1.0} and len(outcomes) == metrics["after"][name]["pairs"]
            assert sum(outcomes) / len(outcomes) == pytest.approx(metrics["after"][name]["accuracy"])
            _, low, high = bootstrap_mean_interval(outcomes, resamples=1000, level=0.95, seed=0)
            assert (row[f"accuracy_low/{name}"], row[f"accuracy_high/{name}"]) == (low, high)
            assert low <= row[f"accuracy/{name}"] <= high
    entry = front["weightings"]["raco"]
    seed_rows = [front["runs"][0:2], front["runs"][2:4]]
    means = [[statistics.fmean(row[f"accuracy/{name}"] for row in rows) for name in names] for rows in seed_rows]
    assert np.allclose(entry["points"], means)
    assert entry["hypervolume"] == pytest.approx(hypervolume(means, [0.5, 0.5]))
    assert entry["hypervolume_low"] <= entry["hypervolume_high"]
    gains = [[value - 0.5 for value in point] for point in means]
    assert entry["worst_objective_gain"] == pytest.approx(max(min(gain) for gain in gains))
    with open(out / "front.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["seed"] for row in rows] == ["0", "1", "0", "1"]
    assert float(rows[0]["accuracy_low/safe"]) == front["runs"][0]["accuracy_low/safe"]
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = " ".join(capsys.readouterr().out.split())
    assert f"{entry['hypervolume']:.5f}" in printed
    assert f"[{entry['hypervolume_low']:.5f}, {entry['hypervolume_high']:.5f}]" in printed

    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")}
    assert len(stamps) == 4
    assert main(arguments + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 4
    assert main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("metrics.json")} == stamps
    assert json.loads((out / "front.json").read_text()) == front


@pytest.fixture()
def judge_dirs(tmp_path, tiny_tokenizer, make_tiny_llama_config):
    """Two saved one-label Llama sequence classifiers with random weights (seeds 0 and 1) and the tiny tokenizer."""
    directories = []
    for seed in (0, 1):
        path = tmp_path / f"judge-{seed}"
        torch.manual_seed(seed)
        LlamaForSequenceClassification(make_tiny_llama_config(len(tiny_tokenizer), num_labels=1)).save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        directories.append(path)
    return directories


def test_sweep_front_of_judge_scores(tmp_path, lora_run_config, judge_dirs, capsys):
    settings = yaml.safe_load(lora_run_config.read_text())
    settings.update({
        "eval_rewards": [{"name": "reward_model", "path": str(judge_dirs[0]), "label": "quality", "device": "cpu"},
                         {"name": "reward_model", "path": str(judge_dirs[1]), "label": "faithful", "device": "cpu"}],
        "max_eval_prompts": 3, "eval_max_new_tokens": 4,
    })
    lora_run_config.write_text(yaml.safe_dump(settings))
    arguments = ["sweep", "--config", str(lora_run_config), "--weights", "0.8,0.2;0.2,0.8", "--weightings", "raco",
                 "--metric", "reward:quality,faithful"]
    assert main(arguments) == 0
    out = tmp_path / "run"
    front = json.loads((out / "front.json").read_text())
    assert front["axes"] == ["quality", "faithful"] and front["metric"] == "reward:quality,faithful"
    reference = []
    for name in ("quality", "faithful"):
        reference_means = []
        for row in front["runs"]:
            evaluation = json.loads((tmp_path / row["run_dir"] / "eval.json").read_text())
            scores = evaluation["generation"]["scores"][name]
            assert len(scores["trained"]) == len(scores["reference"]) == 3
            assert row[f"reward/{name}"] == pytest.approx(statistics.fmean(scores["trained"]))
            assert row[f"reward_stderr/{name}"] == pytest.approx(statistics.stdev(scores["trained"]) / math.sqrt(3))
            reference_means.append(statistics.fmean(scores["reference"]))
        reference.append(statistics.fmean(reference_means))
    assert front["reference_point"] == pytest.approx(reference)
    entry = front["weightings"]["raco"]
    points = [[row["reward/quality"], row["reward/faithful"]] for row in front["runs"]]
    assert np.allclose(entry["points"], points)
    assert entry["hypervolume"] == pytest.approx(hypervolume(points, reference))
    assert math.isfinite(entry["hypervolume_low"]) and entry["hypervolume_low"] <= entry["hypervolume_high"]
    assert len(entry["point_low"]) == 2 and all(math.isfinite(value) for value in entry["point_high"][0])
    with open(out / "front.csv") as file:
        header = next(csv.reader(file))
    assert {"reward/quality", "reward_stderr/faithful", "reference_reward/quality"} <= set(header)
    capsys.readouterr()

    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("eval.json")}
    assert len(stamps) == 2
    assert main(arguments + ["--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 2
    assert main(arguments) == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("eval.json")} == stamps
    assert main(arguments[:-1] + ["reward:quality,helpful"]) == 2
    assert "no reward named ['helpful'] in eval_rewards" in " ".join(capsys.readouterr().out.split())


def test_synthetic_command_is_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthetic", "--help"])
    assert exit_info.value.code == 0
    assert "paretoalign synthetic" in capsys.readouterr().out
