"""Tests for ``paretoalign synthetic`` (paretoalign.commands.synthetic)."""

from __future__ import annotations

import pytest

from paretoalign.commands.synthetic import main
from paretoalign.synthetic.tabular import WEIGHTING_VARIANTS


def test_main_quick_prints_every_weighting(capsys):
    assert main(["--quick"]) == 0
    printed = capsys.readouterr().out
    for label in WEIGHTING_VARIANTS:
        assert label in printed
    assert "K = 2" in printed and "K = 3" in printed and "clip reaches the gap tolerance" in printed


def test_help_prints_the_command_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: paretoalign synthetic")


def test_policy_benchmark_prints_and_writes_its_tables(tmp_path, capsys):
    markdown = tmp_path / "policy.md"
    arguments = ["--benchmark", "policy", "--objectives", "2", "--seeds", "0", "--batch-sizes", "4",
                 "--scale-ratios", "10", "--steps", "5", "--weightings", "weighted_sum", "raco",
                 "--markdown", str(markdown)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "| full | - | reference front |" in printed and "| 4 | 10 | raco |" in printed
    assert markdown.read_text().strip() in printed


def test_options_of_the_other_benchmark_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--benchmark", "policy", "--seed", "1"])
    assert exit_info.value.code == 2
    assert "--seed is an option of --benchmark tabular, not of --benchmark policy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--seeds", "1", "2"])
    assert "--seeds is an option of --benchmark policy, not of --benchmark tabular" in capsys.readouterr().err
