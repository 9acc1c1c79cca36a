"""``python benchmarks/front_report.py SWEEP_DIR`` turns a sweep's front.json into Markdown tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "front_report.py"


def test_front_report_tables_and_compute(tmp_path):
    sweep = tmp_path / "sweep"
    runs = []
    for weighting, started, ended in (("weighted_sum", 1000, 1600), ("raco", 2000, 2900)):
        folder = sweep / weighting / "w_0.500_0.500" / "seed_0"
        folder.mkdir(parents=True)
        for name, stamp in (("config.yaml", started), ("metrics.json", ended)):
            (folder / name).write_text("{}")
            os.utime(folder / name, (stamp, stamp))
        runs.append({"run_dir": f"elsewhere/sweep/{weighting}/w_0.500_0.500/seed_0"})
    entry = {"weights": [[0.5, 0.5]], "points": [[0.6, 0.7]], "seed_points": [[[0.6, 0.7]]],
             "point_low": [[0.55, 0.65]], "point_high": [[0.65, 0.75]], "hypervolume": 0.02,
             "hypervolume_low": 0.01, "hypervolume_high": 0.03, "worst_objective_gain": 0.1,
             "worst_objective_gain_weights": [0.5, 0.5], "preference_angle": 9.46, "hypervolume_difference": None}
    front = {"axes": ["a", "b"], "reference_point": [0.5, 0.5], "seeds": [0], "runs": runs, "unfinished": [],
             "weightings": {"weighted_sum": entry, "raco": {**entry, "hypervolume_difference": {
                 "baseline": "weighted_sum", "value": 0.0012, "low": -0.003, "high": 0.005}}}}
    (sweep / "front.json").write_text(json.dumps(front))
    markdown = tmp_path / "report.md"
    result = subprocess.run([sys.executable, str(SCRIPT), str(sweep), "--markdown", str(markdown)],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert "| weighted_sum | 1 | 0.0200 | [0.0100, 0.0300] | - | +0.100 (0.5 / 0.5) | 9.5 |" in lines
    assert "| raco | 1 | 0.0200 | [0.0100, 0.0300] | +0.0012 [-0.0030, +0.0050] | +0.100 (0.5 / 0.5) | 9.5 |" in lines
    assert "| 0.5 / 0.5 | raco | 1 | 0.600 [0.550, 0.650] | 0.700 [0.650, 0.750] |" in lines
    # 10 and 15 minutes, from each run's config.yaml to its metrics.json
    assert "Compute: 2 runs, 0.4 process-hours in all, 10.0-15.0 minutes per run (median 15.0)." in lines
    assert markdown.read_text().startswith("\n### ") and result.stdout.rstrip("\n") in markdown.read_text()
