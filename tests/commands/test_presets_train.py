"""``paretoalign train`` and ``paretoalign data inspect`` on a preset read from a local clone of its dataset: a YAML
config names ``{preset: pku_saferlhf, dataset: <clone>, split: train}`` and nothing else about the data."""

from __future__ import annotations

import json

import pytest
import yaml

from paretoalign.cli import main


def pku_row(index, better, safer):
    return {"prompt": f"Question {index}?", "response_0": "Yes.", "response_1": "Yes, and here is a long answer.",
            "prompt_source": "Alpaca3-8B", "is_response_0_safe": True, "is_response_1_safe": False,
            "better_response_id": better, "safer_response_id": safer}


@pytest.fixture()
def preset_config(tmp_path, tiny_model_dir, datasets_cache, write_hub_dataset):
    rows = [pku_row(0, 0, 1), pku_row(1, 1, 0), pku_row(2, 0, 0), pku_row(3, 1, 1)]
    write_hub_dataset(tmp_path / "PKU-SafeRLHF", {"train": rows, "test": rows[:2]})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir),
        "train_data": {"preset": "pku_saferlhf", "dataset": "PKU-SafeRLHF", "split": "train"},
        "eval_data": {"preset": "pku_saferlhf", "dataset": "PKU-SafeRLHF", "split": "test"},
        "use_lora": False, "max_length": 64, "per_device_train_batch_size": 4, "max_steps": 2,
        "output_dir": str(tmp_path / "run"), "report_to": "none", "save_strategy": "no", "use_cpu": True,
    }))
    return config_file


def test_train_on_a_preset_from_a_local_clone(preset_config, tmp_path, capsys):
    assert main(["train", "--config", str(preset_config)]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train_data"] == {"preset": "pku_saferlhf", "dataset": str(tmp_path / "PKU-SafeRLHF"),
                                   "split": "train"}
    printed = " ".join(capsys.readouterr().out.split())
    assert "held-out preference metrics" in printed and "helpful" in printed and "harmless" in printed


def test_data_inspect_names_the_preset(preset_config, tmp_path):
    out = tmp_path / "report.json"
    assert main(["data", "inspect", "--config", str(preset_config), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    clone = str(tmp_path / "PKU-SafeRLHF")
    assert report["sources"] == [f"preset pku_saferlhf (dataset {clone!r}, split 'train')"]
    assert report["objectives"] == {"helpful": {"labelled": 4, "ties": 0}, "harmless": {"labelled": 4, "ties": 0}}
    # helpful prefers 0, 1, 0, 1 and harmless 1, 0, 0, 1: they disagree on rows 0 and 1
    assert report["conflict"]["helpful"]["harmless"] == 0.5
