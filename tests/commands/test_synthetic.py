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
