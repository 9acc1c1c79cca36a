"""Bad input through the command line: a named error, a non-zero exit code, and no output directory written."""

from __future__ import annotations

import json

import pytest
import yaml

from paretoalign.cli import main

GOOD = {"prompt": "Human: hi\n\nAssistant:", "response_0": "Hello there.", "response_1": "No.",
        "labels": {"helpful": 0, "concise": 1}}


def rows_with(**changes):
    bad = {**GOOD, **changes}
    return [json.dumps(GOOD), json.dumps({key: value for key, value in bad.items() if value is not ...})]


CASES = {
    # name: (data file lines, extra config, words the error must contain)
    "malformed JSON line": ([json.dumps(GOOD), '{"prompt": "x", "response_0": '], {}, ["pairs.jsonl", "line 2"]),
    "missing prompt": (rows_with(prompt=...), {}, ["line 2", "'prompt'"]),
    "missing labels": (rows_with(labels=...), {}, ["line 2", "'labels'"]),
    "label not 0/1/null": (rows_with(labels={"helpful": 2, "concise": 0}), {}, ["line 2", "labels.helpful"]),
    "unknown objective in labels": (rows_with(labels={"helpfull": 0}), {"objectives": ["helpful", "concise"]},
                                    ["line 2", "helpfull"]),
    "empty response": (rows_with(response_1="   "), {}, ["line 2", "response_1"]),
    "response of the wrong type": (rows_with(response_0=3), {}, ["line 2", "response_0"]),
    "weights off the simplex": ([json.dumps(GOOD)], {"weights": [0.9, 0.3]}, ["sum to 1"]),
    "negative weight": ([json.dumps(GOOD)], {"weights": [1.2, -0.2]}, ["non-negative"]),
    "NaN weight": ([json.dumps(GOOD)], {"weights": [float("nan"), 1.0]}, ["finite"]),
    "no objective (K = 0)": ([json.dumps(GOOD)], {"weights": []}, ["K >= 1"]),
    "missing model path": ([json.dumps(GOOD)], {"model_name_or_path": "/no/such/model"}, ["/no/such/model"]),
    "missing data file": ([json.dumps(GOOD)], {"train_data": "nowhere.jsonl"}, ["nowhere.jsonl"]),
    "rows longer than max_length with overflow=error": (
        [json.dumps(GOOD)], {"max_length": 4, "overflow": "error"}, ["max_length"]),
    "unknown loss type": ([json.dumps(GOOD)], {"loss_type": "kto"}, ["loss_type"]),
    "negative beta": ([json.dumps(GOOD)], {"beta": -0.1}, ["beta"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_named_and_leaves_nothing_behind(tmp_path, tiny_model_dir, capsys, case):
    lines, extra, words = CASES[case]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    config = {"model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "use_lora": False,
              "max_steps": 1, "max_length": 64, "output_dir": str(tmp_path / "out"), "report_to": "none",
              "use_cpu": True, **extra}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 2
    message = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in message, (case, message)
    assert not (tmp_path / "out").exists()


def test_a_gguf_file_that_is_not_gguf_is_named(tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file at all")
    (tmp_path / "pairs.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": str(fake), "train_data": "pairs.jsonl", "output_dir": str(tmp_path / "out"),
        "report_to": "none", "use_cpu": True}))
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "model.gguf" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "out").exists()
