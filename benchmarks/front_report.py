"""Markdown tables of a finished sweep: ``python benchmarks/front_report.py SWEEP_DIR [--markdown FILE]``.

Reads ``SWEEP_DIR/front.json`` (written by ``paretoalign sweep``, also with ``--finished-only``) and prints:

* per weighting: runs, hypervolume over the reference point with its 95% bootstrap interval (seeds and pairs
  resampled), the paired difference to the first weighting with its interval, the worst-objective gain and the
  preference angle (see :mod:`paretoalign.commands.sweep`);
* per weight vector and weighting: each objective's held-out accuracy, the mean over seeds, with the 95% interval
  of that mean (the ``point_low`` / ``point_high`` error bars of the plot);
* the compute: each run's wall time, from its ``config.yaml`` (written when training starts) to its
  ``metrics.json`` (written when evaluation ends), read from the files' modification times, so only where the
  runs were made (a fresh clone has checkout times).

With ``--markdown FILE`` the tables are appended to FILE under a heading naming the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path


def interval(low: float | None, high: float | None, digits: int = 3, sign: str = "") -> str:
    return "-" if low is None else f"[{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def weighting_table(front: dict) -> list[str]:
    baseline = next(iter(front["weightings"]))
    lines = [f"| weighting | runs | hypervolume | 95% interval | minus {baseline} (paired 95%) | worst-objective gain "
             "(at weights) | preference angle |", "|---|---|---|---|---|---|---|"]
    for name, entry in front["weightings"].items():
        difference = entry["hypervolume_difference"]
        paired = ("-" if difference is None else f"{difference['value']:+.4f} "
                  f"{interval(difference['low'], difference['high'], 4, '+')}")
        runs = sum(len(seeds) for seeds in entry["seed_points"])
        gain = entry["worst_objective_gain"]
        at = " / ".join(f"{w:.1f}" for w in entry["worst_objective_gain_weights"] or [])
        angle = entry["preference_angle"]
        lines.append(f"| {name} | {runs} | {entry['hypervolume']:.4f} | "
                     f"{interval(entry['hypervolume_low'], entry['hypervolume_high'], 4)} | {paired} | "
                     f"{'-' if gain is None else f'{gain:+.3f}'} ({at}) | "
                     f"{'-' if angle is None else f'{angle:.1f}'} |")
    return lines


def point_table(front: dict) -> list[str]:
    axes = front["axes"]
    lines = ["| weights (" + " / ".join(axes) + ") | weighting | seeds | "
             + " | ".join(f"{axis} (95% interval)" for axis in axes) + " |", "|---" * (3 + len(axes)) + "|"]
    rows = []
    for name, entry in front["weightings"].items():
        for index, weights in enumerate(entry["weights"]):
            cells = []
            for k in range(len(axes)):
                low = None if entry["point_low"] is None else entry["point_low"][index][k]
                high = None if entry["point_high"] is None else entry["point_high"][index][k]
                cells.append(f"{entry['points'][index][k]:.3f} {interval(low, high)}")
            rows.append((tuple(-w for w in weights), " / ".join(f"{w:.1f}" for w in weights), name,
                         len(entry["seed_points"][index]), cells))
    for _, weights, name, seeds, cells in sorted(rows, key=lambda row: row[0]):
        lines.append(f"| {weights} | {name} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def compute_lines(front: dict, sweep_dir: Path) -> list[str]:
    minutes = []
    depth = 2 if front["seeds"] is None else 3  # <weighting>/w_.../[seed_<s>/] below the sweep's folder
    for run in front["runs"]:
        folder = sweep_dir.joinpath(*Path(run["run_dir"]).parts[-depth:])
        started, ended = folder / "config.yaml", folder / "metrics.json"
        if started.is_file() and ended.is_file():
            minutes.append((ended.stat().st_mtime - started.stat().st_mtime) / 60)
    if not minutes:
        return ["Compute: no run folder with both config.yaml and metrics.json."]
    return [f"Compute: {len(minutes)} runs, {sum(minutes) / 60:.1f} process-hours in all, "
            f"{min(minutes):.1f}-{max(minutes):.1f} minutes per run (median {sorted(minutes)[len(minutes) // 2]:.1f})."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep's output_dir (holds front.json)")
    parser.add_argument("--markdown", type=Path, help="append the tables to this file")
    args = parser.parse_args(argv)
    front_path = args.sweep_dir / "front.json"
    if not front_path.is_file():
        parser.error(f"{front_path} does not exist: run paretoalign sweep (or sweep --finished-only) first.")
    front = json.loads(front_path.read_text())
    reference = ", ".join(f"{value:g}" for value in front["reference_point"])
    lines = [f"Reference point ({reference}); seeds {front['seeds']}; "
             f"{len(front.get('unfinished', []))} runs of the sweep unfinished.", "",
             *weighting_table(front), "", *point_table(front), "", *compute_lines(front, args.sweep_dir.resolve())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with args.markdown.open("a") as file:
            file.write(f"\n### {stamp}: `python benchmarks/front_report.py {args.sweep_dir}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
