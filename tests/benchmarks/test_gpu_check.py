"""``bash benchmarks/gpu_check.sh --cpu-smoke`` runs the GPU check's code on the CPU: fused == exact within the
stated tolerance in float32 and bf16, the step-cost table with its rows, and the line against TRL's DPOTrainer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def test_the_cpu_smoke_run_prints_the_checks_and_the_table(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert "installing" not in result.stdout  # the development environment has every package
    for dtype in ("float32", "bfloat16"):
        [check] = [line for line in lines if line.startswith(f"fused == exact {dtype} ")]
        errors = [float(value) for value in re.findall(r"(?:gram|alpha|gradient) ([0-9.e+-]+)", check)]
        tolerance = float(re.search(r"tolerance ([0-9.e+-]+)", check).group(1))
        assert len(errors) == 3 and max(errors) <= tolerance and check.endswith(": ok"), check
    assert "tolerance 1e-04" in result.stdout and "tolerance 5e-02" in result.stdout
    for variant in ("LoRA r=16 on q/k/v/o, bf16:", "full fine-tuning, bf16:"):
        start = lines.index(f"tiny, {variant}")
        assert re.split(r"\s{2,}", lines[start + 2].strip())[:4] == ["mode", "K=1", "K=2", "K=4"]
        rows = [line.split()[0] + (" " + line.split()[1] if line.split()[0] == "weighted" else "")
                for line in lines[start + 3:start + 6]]
        assert rows == ["weighted sum", "exact", "fused"]
        assert all(line.count("x") >= 3 and "fails" not in line for line in lines[start + 3:start + 6])
    assert any(line.startswith("MFU tiny weighted sum, full fine-tuning: ") for line in lines)
    [trl_line] = [line for line in lines if line.startswith("against TRL tiny ")]
    ours, theirs, ratio = re.search(r"paretoalign (\d+) tokens/s, TRL DPOTrainer (\d+) tokens/s, ratio ([0-9.]+)x",
                                    trl_line).groups()
    assert int(ours) > 0 and int(theirs) > 0 and abs(float(ratio) - int(ours) / int(theirs)) < 0.01
