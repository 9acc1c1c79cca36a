r"""``paretoalign sweep``: one training run per (weighting, weight vector), the Pareto front they reach, its hypervolume.

For each weighting and each weight vector ``w`` of a simplex grid (``simplex_grid(K, n)``, or vectors given
explicitly) the preference trainer runs with that weighting and those weights into
``<output_dir>/<weighting>/w_<w_1>_..._<w_K>/``; a run whose ``metrics.json`` exists is finished and is not trained
again, so a sweep that stops can simply be started again. Every run is evaluated on the held-out pairs; its point
is the vector of one held-out metric per objective (default: implicit-reward preference accuracy, which the
reference policy scores 0.5 on every objective). Per weighting, the hypervolume of its points is measured against
the reference policy's point, so it is the volume of improvement over the starting model that the weighting's
runs dominate.

Outputs in ``output_dir``: ``front.json`` and ``front.csv`` (one row per run), ``front.png`` (one colour per
weighting, its non-dominated points joined, the requested weights written beside each point, the hypervolume per
weighting in the legend with the reference point stated) and the printed hypervolume table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from rich.console import Console
from rich.table import Table

from paretoalign.commands.train import train as train_one_run
from paretoalign.config import parse_config
from paretoalign.data.columns import is_single_source
from paretoalign.data.preferences import load_preferences
from paretoalign.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from paretoalign.pareto import hypervolume, pareto_mask, simplex_grid
from paretoalign.trainers.preference import ParetoPreferenceConfig
from paretoalign.weighting import WEIGHTINGS, validate_weights

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

__all__ = [
    "METRICS", "SweepRun", "main", "objective_names", "parse_weight_spec", "plan_sweep", "run_sweep", "summarise_front",
]

#: Held-out metric per objective -> (reference policy's value, True when larger is better).
METRICS = {"accuracy": (0.5, True), "margin": (0.0, True), "loss": (math.log(2.0), False)}


@dataclass
class SweepRun:
    """One planned training run of a sweep."""

    weighting: str
    weights: list[float]
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


def parse_weight_spec(spec: str, num_objectives: int) -> list[list[float]]:
    """``grid:N`` -> the simplex lattice with N divisions; ``0.8,0.2;0.5,0.5`` -> those vectors (validated)."""
    if spec.startswith("grid:"):
        divisions = spec.removeprefix("grid:")
        if not divisions.isdigit() or int(divisions) < 1:
            raise ValueError(f"--weights grid:N needs a positive integer N, got {spec!r}.")
        return simplex_grid(num_objectives, int(divisions)).tolist()
    vectors = []
    for item in spec.split(";"):
        try:
            values = [float(x) for x in item.split(",")]
        except ValueError as error:
            raise ValueError(f"--weights: could not read {item!r} as comma-separated numbers.") from error
        if len(values) != num_objectives:
            raise ValueError(f"--weights: {item!r} has {len(values)} weights for {num_objectives} objectives.")
        vectors.append(validate_weights(values).tolist())
    return vectors


def objective_names(config: ParetoPreferenceConfig) -> list[str]:
    """The objectives of a config: ``objectives``, else the keys of an ``{objective: source}`` ``train_data``, else
    the label names of its data."""
    if config.objectives:
        return list(config.objectives)
    if isinstance(config.train_data, dict) and not is_single_source(config.train_data):
        return list(config.train_data)
    return load_preferences(config.train_data)[1]


def _run_name(weights: list[float]) -> str:
    return "w_" + "_".join(f"{w:.3f}" for w in weights)


def plan_sweep(output_dir: str | Path, weightings: list[str], weight_vectors: list[list[float]]) -> list[SweepRun]:
    """Every (weighting, weights) run with its folder; unknown weightings are errors."""
    unknown = [name for name in weightings if name not in WEIGHTINGS]
    if unknown:
        raise ValueError(f"unknown weighting(s) {unknown}; choose from {sorted(WEIGHTINGS)}.")
    root = Path(output_dir)
    return [SweepRun(name, list(w), root / name / _run_name(w)) for name in weightings for w in weight_vectors]


def summarise_front(rows: list[dict[str, Any]], objectives: list[str], metric: str) -> dict[str, dict[str, Any]]:
    """Per weighting: its points, which are non-dominated, and their hypervolume against the reference point."""
    reference_value, larger_is_better = METRICS[metric]
    reference = [reference_value] * len(objectives)
    summary = {}
    for weighting in dict.fromkeys(row["weighting"] for row in rows):
        mine = [row for row in rows if row["weighting"] == weighting]
        points = np.array([[row[f"{metric}/{name}"] for name in objectives] for row in mine], dtype=float)
        finite = np.isfinite(points).all(axis=1)
        mask = np.zeros(len(points), dtype=bool)
        if finite.any():
            mask[finite] = pareto_mask(points[finite], maximize=larger_is_better)
        volume = hypervolume(points[finite], reference, maximize=larger_is_better) if finite.any() else 0.0
        summary[weighting] = {"points": points.tolist(), "non_dominated": mask.tolist(), "hypervolume": volume,
                              "weights": [row["weights"] for row in mine]}
    return summary


def _rows_of(runs: list[SweepRun], objectives: list[str]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
        if "after" not in metrics:
            raise ValueError(f"{run.run_dir}: the run has no held-out metrics; a sweep needs eval_data.")
        row: dict[str, Any] = {"weighting": run.weighting, "weights": run.weights, "run_dir": str(run.run_dir)}
        for name in objectives:
            for metric in METRICS:
                value = metrics["after"][name][metric]
                row[f"{metric}/{name}"] = float("nan") if value is None else value
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], objectives: list[str]) -> None:
    columns = ["weighting"] + [f"weight/{n}" for n in objectives] + [f"{m}/{n}" for m in METRICS for n in objectives]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns + ["run_dir"])
    for row in rows:
        writer.writerow([row["weighting"], *row["weights"], *(row[c] for c in columns[1 + len(objectives):]),
                         row["run_dir"]])
    write_text_atomic(path, buffer.getvalue())


def plot_front(path: Path, summary: dict[str, dict[str, Any]], objectives: list[str], metric: str) -> None:
    """front.png: two objectives on the axes (the first two when K > 2), one colour per weighting."""
    reference_value, larger_is_better = METRICS[metric]
    figure, axes = plt.subplots(figsize=(6.5, 5.0))
    for index, (weighting, entry) in enumerate(summary.items()):
        colour = f"C{index}"
        points = np.array(entry["points"], dtype=float).reshape(-1, len(objectives))
        front = points[np.array(entry["non_dominated"], dtype=bool)]
        order = np.argsort(front[:, 0])
        axes.scatter(points[:, 0], points[:, 1], color=colour, alpha=0.35)
        axes.plot(front[order, 0], front[order, 1], "o-", color=colour,
                  label=f"{weighting} (HV {entry['hypervolume']:.4f})")
        for point, weights in zip(points, entry["weights"]):
            axes.annotate("/".join(f"{w:.2f}" for w in weights), point, textcoords="offset points", xytext=(4, 4),
                          fontsize=7, color=colour)
    axes.axvline(reference_value, color="grey", lw=0.8, ls=":")
    axes.axhline(reference_value, color="grey", lw=0.8, ls=":")
    direction = "higher is better" if larger_is_better else "lower is better"
    axes.set_xlabel(f"held-out {metric}: {objectives[0]} ({direction})")
    axes.set_ylabel(f"held-out {metric}: {objectives[1]}")
    axes.set_title(f"Pareto front; hypervolume vs the reference policy at {reference_value:.3g} per objective",
                   fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130)
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def run_sweep(
    config: ParetoPreferenceConfig,
    objectives: list[str],
    weightings: list[str],
    weight_vectors: list[list[float]],
    metric: str = "accuracy",
    train=None,
) -> dict[str, Any]:
    """Train every unfinished run of the sweep, then write front.json / front.csv / front.png; returns front.json.

    ``train`` runs one config (default :func:`paretoalign.commands.train.train`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}.")
    if config.eval_data is None:
        raise ValueError("a sweep evaluates every run on held-out pairs: set eval_data.")
    train = train or train_one_run
    output_dir = Path(config.output_dir)
    runs = plan_sweep(output_dir, weightings, weight_vectors)
    for run in runs:
        if not run.finished:
            train(dataclasses.replace(config, weighting=run.weighting, weights=run.weights,
                                      objectives=objectives, output_dir=str(run.run_dir)))
    rows = _rows_of(runs, objectives)
    summary = summarise_front(rows, objectives, metric)
    front = {"objectives": objectives, "metric": metric, "reference_point": [METRICS[metric][0]] * len(objectives),
             "runs": rows, "weightings": summary}
    write_json_atomic(output_dir / "front.json", front)
    _write_csv(output_dir / "front.csv", rows, objectives)
    plot_front(output_dir / "front.png", summary, objectives, metric)
    return front


def main(config_file: str, weights: str, weightings: str, metric: str, dry_run: bool, overrides: list[str],
         console: Console) -> int:
    config = parse_config(ParetoPreferenceConfig, config_file, overrides)
    objectives = objective_names(config)
    if len(objectives) < 2:
        raise ValueError(f"a sweep needs at least two objectives, got {objectives}.")
    names = [name.strip() for name in weightings.split(",") if name.strip()]
    vectors = parse_weight_spec(weights, len(objectives))
    runs = plan_sweep(config.output_dir, names, vectors)
    if dry_run:
        table = Table(title=f"sweep plan: {len(runs)} runs over objectives {objectives}")
        for column in ("weighting", "weights", "run folder", "status"):
            table.add_column(column, overflow="fold")  # a run folder is wrapped, never cut
        for run in runs:
            table.add_row(run.weighting, " / ".join(f"{w:.3f}" for w in run.weights), str(run.run_dir),
                          "done" if run.finished else "to train")
        console.print(table)
        return 0
    front = run_sweep(config, objectives, names, vectors, metric=metric)
    table = Table(title=f"hypervolume of held-out {metric} (reference point {front['reference_point']})")
    for column in ("weighting", "runs", "non-dominated", "hypervolume"):
        table.add_column(column, justify="left" if column == "weighting" else "right")
    for name, entry in front["weightings"].items():
        table.add_row(name, str(len(entry["points"])), str(sum(entry["non_dominated"])), f"{entry['hypervolume']:.5f}")
    console.print(table)
    console.print(f"[bold]front written to[/bold] {Path(config.output_dir).resolve()}/front.{{json,csv,png}}")
    return 0
