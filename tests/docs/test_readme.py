"""The README's Python example runs as written, against the package root's public API."""

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_python_example_runs(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    runpy.run_path(str(script))
    printed = capsys.readouterr().out
    assert "tensor([0.9331, 0.4724]" in printed and printed.rstrip().endswith("0.030000000000000002")
