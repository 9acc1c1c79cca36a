"""``python benchmarks/rl_step_cost.py --quick`` times every configuration on a tiny random Llama, prints the fused RACO
over weighted-sum GDPO ratio at K = 3, and finds the fused and exact engines' gradients equal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rl_step_cost.py"
AGREEMENT = 1e-4


def test_the_quick_run_prints_every_configuration_the_ratio_and_agreement(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--repeats", "1"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()

    configurations = [line for line in lines if re.match(r"(weighted-sum GDPO|raco exact|raco fused) +beta=", line)]
    assert len(configurations) == 3 * 3 * 2  # modes x K = 1, 2, 3 x beta = 0, 0.04
    passes = {
        (match[1], float(match[2]), int(match[3])): int(match[4])
        for match in (
            re.match(r"(\S+(?: \S+)?) +beta=(\S+) +K=(\d): .* (\d+) backward pass\(es\)$", line)
            for line in configurations
        )
    }
    for num_rewards in (1, 2, 3):
        # One backward pass for the weighted sum, K for exact, one for fused (two with the KL term, from K = 2).
        assert passes["weighted-sum GDPO", 0.0, num_rewards] == passes["weighted-sum GDPO", 0.04, num_rewards] == 1
        assert passes["raco exact", 0.0, num_rewards] == passes["raco exact", 0.04, num_rewards] == num_rewards
        assert passes["raco fused", 0.0, num_rewards] == 1
        assert passes["raco fused", 0.04, num_rewards] == min(num_rewards, 2)

    [ratio_line] = [line for line in lines if line.startswith("ratio K=3: ")]
    ratio = float(ratio_line.removeprefix("ratio K=3: "))
    assert ratio > 0

    [agreement_line] = [line for line in lines if line.startswith("fused == exact: max |diff| ")]
    difference = float(agreement_line.removeprefix("fused == exact: max |diff| ").split()[0])
    scale = float(re.search(r"largest \|gradient\| (\S+);", agreement_line).group(1))
    assert 0 <= difference <= AGREEMENT
    assert scale > 1e-3  # the compared gradients are not all zero
