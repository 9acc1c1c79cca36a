r"""``paretoalign sweep``: training runs per (weighting, weight vector, seed), the Pareto front they reach, its
hypervolume with a bootstrap interval, the worst-objective gain and the preference angle.

For each weighting and each weight vector ``w`` of a simplex grid (``simplex_grid(K, n)``, or vectors given
explicitly) the preference trainer runs with that weighting and those weights into
``<output_dir>/<weighting>/w_<w_1>_..._<w_K>/``, or with ``--seeds s_1,...,s_S`` once per seed (the config's ``seed``
set to ``s``) into ``.../w_<w_1>_..._<w_K>/seed_<s>/``. A run whose ``metrics.json`` exists is finished and is not
trained again (nor evaluated again when its ``eval.json`` exists), so a sweep that stops can simply be started again;
``--finished-only`` trains nothing and draws the front of the runs finished so far (a sweep run in pieces).
The runs share the base model and the pairs, so the reference policy's log-probabilities are computed by the first
run and read by the others (``reference_cache_dir``, by default ``<output_dir>/reference-logps``;
:func:`paretoalign.scoring.cached_dataset_logps`).

The front's axes (``--metric``)
-------------------------------
* ``accuracy`` (default), ``margin``, ``loss``: one held-out preference metric per objective from the run's
  ``metrics.json``; the reference policy scores ``r = 0.5`` (accuracy), 0 (margin), ``log 2`` (loss) on every
  objective. Accuracy is the mean of the per-pair outcomes ``o_i`` in {1, 1/2, 0} (``after_outcomes``), the units the
  bootstrap resamples; margin and loss keep no per-pair values, so they get no intervals.
* ``reward:NAME1,NAME2``: judge scores. After training, :func:`paretoalign.commands.evaluate.evaluate_trained` writes
  ``<run>/eval.json``; the run's point is the trained policy's mean score per named reward of ``eval_rewards``
  (named by their label), with its standard error ``s / sqrt(n)``; the reference point ``r`` is the reference
  policy's mean score, averaged over the runs (each run scores the same reference up to sampling noise). The
  bootstrap resamples prompts (a prompt's samples stay together: its unit is their mean).

What is measured, per weighting
-------------------------------
With ``p_{w,s}`` the point of the run at weights ``w`` and seed ``s`` and ``pbar_w = mean_s p_{w,s}`` (one seed: the
run's point):

* ``hypervolume``: ``HV({pbar_w}_w, r)`` (:func:`paretoalign.pareto.hypervolume`; maximised, ``loss`` minimised),
  the volume of improvement over the reference policy that the weighting's runs dominate; ``hypervolume_low`` and
  ``hypervolume_high``: its 95% percentile-bootstrap interval (1000 resamples, seed 0), each resample drawing the
  seeds and the evaluation units (pairs or prompts) with replacement, the same draw for every run
  (:func:`paretoalign.pareto.bootstrap_hypervolume`);
* ``hypervolume_difference`` (every weighting but the first, the baseline): ``HV - HV_baseline`` with its 95%
  paired-bootstrap interval: each resample draws the seeds and the units once for the runs of both weightings
  (:func:`paretoalign.pareto.bootstrap_hypervolume_difference`), so what they share (which pairs are hard, which seed
  was lucky) cancels; an interval that excludes 0 is a measured difference. Intervals need every run of a weighting
  (and, for the difference, of the baseline) to have the same seeds; otherwise they are None (a partial sweep);
* ``worst_objective_gain``: ``max_w min_k g_{w,k}`` with the gain ``g_w = pbar_w - r`` (``r - pbar_w`` for loss):
  how much the best run of the weighting improves its worst objective; ``worst_objective_gain_weights`` names that
  run's w;
* ``preference_angle``: ``mean_w angle(g_w, w)``, ``angle(g, w) = acos(g . w / (|g| |w|))`` in degrees (the synthetic
  benchmark's angle, :func:`paretoalign.synthetic.tabular.preference_angle_degrees`): 0 when the objectives
  improved exactly in the requested ratio, above 90 when the run lost on the weighted combination; a run with
  ``g = 0`` has no angle and is left out. With judge scores the i-th named reward pairs with the i-th objective's
  weight, and there is no angle unless as many rewards are named as there are objectives.

Per run, ``accuracy_low/<objective>`` and ``accuracy_high/<objective>`` give the 95% percentile-bootstrap interval of
its held-out accuracy over its pairs (:func:`paretoalign.pareto.bootstrap_mean_interval`).

Outputs in ``output_dir``: ``front.json`` and ``front.csv`` (one row per run), ``front.png`` (one colour per
weighting; every seed's point faint, the mean-over-seeds points bold with 95% bootstrap intervals as error bars,
the non-dominated ones joined, the requested weights beside each; the hypervolume and its interval per weighting in
the legend; the first two axes when there are more) and the printed table.
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

from paretoalign.commands.evaluate import evaluate_trained
from paretoalign.commands.train import train as train_one_run
from paretoalign.config import parse_config
from paretoalign.data.columns import is_single_source
from paretoalign.data.preferences import load_preferences
from paretoalign.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from paretoalign.pareto import (
    bootstrap_hypervolume,
    bootstrap_hypervolume_difference,
    bootstrap_mean_interval,
    bootstrap_point_intervals,
    hypervolume,
    pareto_mask,
    simplex_grid,
)
from paretoalign.rewards.specs import reward_label
from paretoalign.synthetic.tabular import preference_angle_degrees
from paretoalign.trainers.preference import ParetoPreferenceConfig
from paretoalign.weighting import WEIGHTINGS, validate_weights

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

__all__ = [
    "BOOTSTRAP_RESAMPLES", "INTERVAL_LEVEL", "METRICS", "FrontMetric", "SweepRun", "main", "objective_names",
    "parse_metric", "parse_seeds", "parse_weight_spec", "plan_sweep", "run_sweep", "summarise_front",
]

#: Held-out metric per objective -> (reference policy's value, True when larger is better).
METRICS = {"accuracy": (0.5, True), "margin": (0.0, True), "loss": (math.log(2.0), False)}
#: The ``--metric`` prefix of judge-score fronts: ``reward:NAME1,NAME2``.
REWARD_PREFIX = "reward:"
#: Resamples, level and seed of every bootstrap interval of a sweep.
BOOTSTRAP_RESAMPLES = 1000
INTERVAL_LEVEL = 0.95
BOOTSTRAP_SEED = 0
BOOTSTRAP_OPTIONS = {"resamples": BOOTSTRAP_RESAMPLES, "level": INTERVAL_LEVEL, "seed": BOOTSTRAP_SEED}


@dataclass(frozen=True)
class FrontMetric:
    """What the front's axes measure: ``name`` one of :data:`METRICS` (one value per objective), or ``reward`` with
    ``rewards`` the named ``eval_rewards`` (the trained policy's mean score per reward)."""

    name: str
    rewards: tuple[str, ...] = ()

    @property
    def larger_is_better(self) -> bool:
        return self.name == "reward" or METRICS[self.name][1]

    def axes(self, objectives: list[str]) -> list[str]:
        """The names of the front's coordinates: the rewards, else the objectives."""
        return list(self.rewards) if self.rewards else list(objectives)

    def column(self, axis: str) -> str:
        """The front.json / front.csv column of a run's value on ``axis``."""
        return f"{self.name}/{axis}"


def parse_metric(spec: str) -> FrontMetric:
    """``accuracy`` | ``margin`` | ``loss`` | ``reward:NAME1,NAME2`` (two or more distinct reward labels)."""
    if spec in METRICS:
        return FrontMetric(spec)
    if spec.startswith(REWARD_PREFIX):
        names = [name.strip() for name in spec.removeprefix(REWARD_PREFIX).split(",")]
        if len(names) < 2 or not all(names) or len(set(names)) != len(names):
            raise ValueError(f"--metric {spec!r}: reward:NAME1,NAME2 needs two or more distinct reward names.")
        return FrontMetric("reward", tuple(names))
    raise ValueError(f"--metric must be one of {sorted(METRICS)} or reward:NAME1,NAME2, got {spec!r}.")


def parse_seeds(spec: str) -> list[int]:
    """``0,1,2`` -> ``[0, 1, 2]`` (distinct integers)."""
    try:
        seeds = [int(item) for item in spec.split(",")]
    except ValueError as error:
        raise ValueError(f"--seeds: could not read {spec!r} as comma-separated integers.") from error
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: {spec!r} names a seed twice.")
    return seeds


@dataclass
class SweepRun:
    """One planned training run of a sweep; ``seed`` None trains with the config's seed."""

    weighting: str
    weights: list[float]
    seed: int | None
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def evaluated(self) -> bool:
        return (self.run_dir / "eval.json").is_file()


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


def plan_sweep(
    output_dir: str | Path, weightings: list[str], weight_vectors: list[list[float]], seeds: list[int] | None = None
) -> list[SweepRun]:
    """Every (weighting, weights[, seed]) run with its folder; unknown weightings are errors."""
    unknown = [name for name in weightings if name not in WEIGHTINGS]
    if unknown:
        raise ValueError(f"unknown weighting(s) {unknown}; choose from {sorted(WEIGHTINGS)}.")
    root = Path(output_dir)
    if seeds is None:
        return [SweepRun(name, list(w), None, root / name / _run_name(w))
                for name in weightings for w in weight_vectors]
    return [SweepRun(name, list(w), seed, root / name / _run_name(w) / f"seed_{seed}")
            for name in weightings for w in weight_vectors for seed in seeds]


def _gains(points: np.ndarray, reference: list[float], larger_is_better: bool) -> np.ndarray:
    """Improvement over the reference point per axis: ``p - r``, or ``r - p`` when smaller is better."""
    difference = points - np.asarray(reference, dtype=float)
    return difference if larger_is_better else -difference


def _best_worst_objective_gain(gains: np.ndarray) -> tuple[float | None, int | None]:
    """``max_w min_k g_{w,k}`` over the runs with finite gains, and that run's index; (None, None) without one."""
    worst = gains.min(axis=1)
    if not np.isfinite(worst).any():
        return None, None
    best = int(np.argmax(np.where(np.isfinite(worst), worst, -np.inf)))
    return float(worst[best]), best


def _mean_preference_angle(gains: np.ndarray, weight_vectors: list[list[float]]) -> float | None:
    """``mean_w angle(g_w, w)`` in degrees over the runs with a finite, nonzero gain of w's length; None without one.

    The angle is :func:`paretoalign.synthetic.tabular.preference_angle_degrees` of the metric read as a loss, whose
    reduction from 0 to ``-g`` is the gain ``g``.
    """
    angles = [preference_angle_degrees(np.zeros_like(gain), -gain, weights)
              for gain, weights in zip(gains, weight_vectors) if len(weights) == len(gain) and np.isfinite(gain).all()]
    angles = [angle for angle in angles if not math.isnan(angle)]
    return float(np.mean(angles)) if angles else None


def summarise_front(
    rows: list[dict[str, Any]],
    axes: list[str],
    metric: str,
    samples: list[dict[str, list[float]]] | None = None,
    reference: list[float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per weighting: its mean-over-seeds points, which are non-dominated, their hypervolume against the reference
    point, the worst-objective gain and the preference angle (see the module docstring); with ``samples`` (per row,
    per axis the values of its evaluation units; a metric where larger is better: accuracy, rewards) also the
    bootstrap intervals of the points and the hypervolume.

    ``rows`` hold ``weighting``, ``weights`` and one column per axis (:meth:`FrontMetric.column`); the rows of one
    (weighting, weights) are its seeds. ``reference`` defaults to the reference policy's value of ``metric`` on
    every axis (:data:`METRICS`).
    """
    front_metric = parse_metric(metric)
    larger_is_better = front_metric.larger_is_better
    if reference is None:
        reference = [METRICS[front_metric.name][0]] * len(axes)
    summary = {}
    resampled: dict[str, tuple[list, tuple[int, ...]]] = {}  # weighting -> (its runs' units, their seeds)
    for weighting in dict.fromkeys(row["weighting"] for row in rows):
        groups: dict[tuple[float, ...], list[int]] = {}
        for index, row in enumerate(rows):
            if row["weighting"] == weighting:
                groups.setdefault(tuple(row["weights"]), []).append(index)
        seed_points = [[[rows[i][front_metric.column(axis)] for axis in axes] for i in members]
                       for members in groups.values()]
        points = np.array([np.mean(np.array(group, dtype=float), axis=0) for group in seed_points],
                          dtype=float).reshape(-1, len(axes))
        finite = np.isfinite(points).all(axis=1)
        mask = np.zeros(len(points), dtype=bool)
        if finite.any():
            mask[finite] = pareto_mask(points[finite], maximize=larger_is_better)
        volume = hypervolume(points[finite], reference, maximize=larger_is_better) if finite.any() else 0.0
        weights = [list(w) for w in groups]
        gains = _gains(points, reference, larger_is_better)
        worst_gain, best = _best_worst_objective_gain(gains)
        entry: dict[str, Any] = {
            "weights": weights, "points": points.tolist(), "seed_points": seed_points,
            "non_dominated": mask.tolist(), "hypervolume": volume, "hypervolume_low": None, "hypervolume_high": None,
            "point_low": None, "point_high": None, "worst_objective_gain": worst_gain,
            "worst_objective_gain_weights": None if best is None else weights[best],
            "preference_angle": _mean_preference_angle(gains, weights), "hypervolume_difference": None,
        }
        seed_lists = {tuple(rows[i].get("seed") for i in members) for members in groups.values()}
        # the bootstrap draws seeds for all of a weighting's runs at once: only when every run has the same seeds
        if samples is not None and len(seed_lists) == 1:
            units = [[[samples[i][axis] for axis in axes] for i in members] for members in groups.values()]
            _, entry["hypervolume_low"], entry["hypervolume_high"] = bootstrap_hypervolume(units, reference,
                                                                                           **BOOTSTRAP_OPTIONS)
            _, low, high = bootstrap_point_intervals(units, **BOOTSTRAP_OPTIONS)
            entry["point_low"], entry["point_high"] = low.tolist(), high.tolist()
            resampled[weighting] = (units, seed_lists.pop())
        summary[weighting] = entry
    # Each weighting against the first (the baseline) on the same pairs and seeds: a paired bootstrap.
    baseline = next(iter(summary), None)
    for weighting, (units, seeds) in resampled.items():
        if weighting != baseline and baseline in resampled and seeds == resampled[baseline][1]:
            value, low, high = bootstrap_hypervolume_difference(units, resampled[baseline][0], reference,
                                                                **BOOTSTRAP_OPTIONS)
            summary[weighting]["hypervolume_difference"] = {"baseline": baseline, "value": value, "low": low,
                                                            "high": high}
    return summary


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); delete it to produce it again.") from error


def _per_prompt_means(scores: list[float | None], samples_per_prompt: int) -> list[float]:
    """One unit per prompt: the mean of its samples' scores (completions ``p * m`` to ``p * m + m - 1``), NaN when
    none is scored."""
    values = np.array([math.nan if value is None else value for value in scores], dtype=float)
    grouped = values.reshape(-1, samples_per_prompt)
    scored = np.isfinite(grouped)
    counts = scored.sum(axis=1)
    totals = np.where(scored, grouped, 0.0).sum(axis=1)
    return [float(total / count) if count else math.nan for total, count in zip(totals, counts)]


def _measure_run(
    run: SweepRun, seed: int, objectives: list[str], front_metric: FrontMetric
) -> tuple[dict[str, Any], dict[str, list[float]] | None]:
    """A run's row (front.json / front.csv) and, per axis, the values of its evaluation units (None for margin and
    loss, which keep none)."""
    metrics_path = run.run_dir / "metrics.json"
    metrics = _read_json(metrics_path)
    if "after" not in metrics:
        raise ValueError(f"{metrics_path}: the run has no held-out metrics; a sweep needs eval_data.")
    if "after_outcomes" not in metrics:
        raise ValueError(f"{metrics_path}: no per-pair outcomes 'after_outcomes'; delete the run folder to train "
                         "it again.")
    row: dict[str, Any] = {"weighting": run.weighting, "weights": run.weights, "seed": seed,
                           "run_dir": str(run.run_dir)}
    for name in objectives:
        for metric in METRICS:
            value = metrics["after"][name][metric]
            row[f"{metric}/{name}"] = float("nan") if value is None else value
    for name in objectives:
        _, row[f"accuracy_low/{name}"], row[f"accuracy_high/{name}"] = bootstrap_mean_interval(
            metrics["after_outcomes"][name], resamples=BOOTSTRAP_RESAMPLES, level=INTERVAL_LEVEL, seed=BOOTSTRAP_SEED)
    if front_metric.name == "accuracy":
        return row, {name: metrics["after_outcomes"][name] for name in objectives}
    if not front_metric.rewards:
        return row, None
    eval_path = run.run_dir / "eval.json"
    generation = _read_json(eval_path).get("generation", {})
    units = {}
    for name in front_metric.rewards:
        if name not in generation.get("rewards", {}) or name not in generation.get("scores", {}):
            raise ValueError(f"{eval_path}: no scores of the reward {name!r} (it has "
                             f"{sorted(generation.get('rewards', {}))}); delete eval.json to evaluate the run again.")
        summaries = generation["rewards"][name]
        for column, value in ((f"reward/{name}", summaries["trained"]["mean"]),
                              (f"reward_stderr/{name}", summaries["trained"]["stderr"]),
                              (f"reference_reward/{name}", summaries["reference"]["mean"])):
            row[column] = float("nan") if value is None else value
        units[name] = _per_prompt_means(generation["scores"][name]["trained"], generation["samples_per_prompt"])
    return row, units


def _columns(objectives: list[str], front_metric: FrontMetric) -> list[str]:
    columns = [f"{metric}/{name}" for metric in METRICS for name in objectives]
    columns += [f"accuracy_{end}/{name}" for end in ("low", "high") for name in objectives]
    for prefix in ("reward", "reward_stderr", "reference_reward"):
        columns += [f"{prefix}/{name}" for name in front_metric.rewards]
    return columns


def _write_csv(path: Path, rows: list[dict[str, Any]], objectives: list[str], front_metric: FrontMetric) -> None:
    columns = _columns(objectives, front_metric)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["weighting", "seed"] + [f"weight/{n}" for n in objectives] + columns + ["run_dir"])
    for row in rows:
        writer.writerow([row["weighting"], row["seed"], *row["weights"], *(row[c] for c in columns), row["run_dir"]])
    write_text_atomic(path, buffer.getvalue())


def _axis_label(front_metric: FrontMetric, axis: str, first: bool) -> str:
    if front_metric.rewards:
        return f"mean score of {axis} (higher is better)" if first else f"mean score of {axis}"
    direction = " (higher is better)" if front_metric.larger_is_better else " (lower is better)"
    return f"held-out {front_metric.name}: {axis}" + (direction if first else "")


def plot_front(
    path: Path, summary: dict[str, dict[str, Any]], axes_names: list[str], metric: str, reference: list[float]
) -> None:
    """front.png: the first two axes, one colour per weighting (see the module docstring)."""
    front_metric = parse_metric(metric)
    figure, axes = plt.subplots(figsize=(6.5, 5.0))
    for index, (weighting, entry) in enumerate(summary.items()):
        colour = f"C{index}"
        for seeds in entry["seed_points"]:
            if len(seeds) > 1:
                faint = np.array(seeds, dtype=float)[:, :2]
                axes.scatter(faint[:, 0], faint[:, 1], color=colour, alpha=0.2, s=12, linewidths=0)
        points = np.array(entry["points"], dtype=float).reshape(-1, len(axes_names))[:, :2]
        finite = np.isfinite(points).all(axis=1)
        if entry["point_low"] is not None:
            low = np.array(entry["point_low"], dtype=float)[:, :2]
            high = np.array(entry["point_high"], dtype=float)[:, :2]
            shown = finite & np.isfinite(low).all(axis=1) & np.isfinite(high).all(axis=1)
            errors = [np.clip(np.stack([points[shown, k] - low[shown, k], high[shown, k] - points[shown, k]]), 0, None)
                      for k in (0, 1)]
            axes.errorbar(points[shown, 0], points[shown, 1], xerr=errors[0], yerr=errors[1], fmt="none",
                          ecolor=colour, elinewidth=0.8, capsize=2, alpha=0.7)
        axes.scatter(points[finite, 0], points[finite, 1], color=colour, s=28, zorder=3)
        front = points[np.array(entry["non_dominated"], dtype=bool)]
        order = np.argsort(front[:, 0])
        label = f"{weighting} (HV {entry['hypervolume']:.4f}"
        if entry["hypervolume_low"] is not None:
            label += f", 95% [{entry['hypervolume_low']:.4f}, {entry['hypervolume_high']:.4f}]"
        axes.plot(front[order, 0], front[order, 1], "-", color=colour, lw=1.6, label=label + ")")
        for point, weights in zip(points[finite], [w for w, keep in zip(entry["weights"], finite) if keep]):
            axes.annotate("/".join(f"{w:.2f}" for w in weights), point, textcoords="offset points", xytext=(4, 4),
                          fontsize=7, color=colour)
    axes.axvline(reference[0], color="grey", lw=0.8, ls=":")
    axes.axhline(reference[1], color="grey", lw=0.8, ls=":")
    axes.set_xlabel(_axis_label(front_metric, axes_names[0], first=True))
    axes.set_ylabel(_axis_label(front_metric, axes_names[1], first=False))
    shown_reference = ", ".join(f"{value:.3g}" for value in reference[:2])
    axes.set_title(f"Pareto front (mean over seeds, 95% bootstrap intervals); hypervolume vs the reference policy "
                   f"at ({shown_reference})", fontsize=8)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130)
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def _check_rewards(front_metric: FrontMetric, config: ParetoPreferenceConfig, spec: str) -> None:
    labels = [reward_label(reward) for reward in config.eval_rewards or []]
    missing = [name for name in front_metric.rewards if name not in labels]
    if missing:
        raise ValueError(f"--metric {spec}: no reward named {missing} in eval_rewards (its rewards: {labels}).")


def run_sweep(
    config: ParetoPreferenceConfig,
    objectives: list[str],
    weightings: list[str],
    weight_vectors: list[list[float]],
    metric: str = "accuracy",
    seeds: list[int] | None = None,
    train=None,
    finished_only: bool = False,
) -> dict[str, Any]:
    """Train (and, for judge scores, evaluate) every unfinished run of the sweep, then write front.json / front.csv /
    front.png; returns front.json.

    ``train`` runs one config (default :func:`paretoalign.commands.train.train`). ``finished_only``: train nothing and
    leave the unfinished runs out of the front (``front.json`` lists them under ``unfinished``).
    """
    front_metric = parse_metric(metric)
    if config.eval_data is None:
        raise ValueError("a sweep evaluates every run on held-out pairs: set eval_data.")
    _check_rewards(front_metric, config, metric)
    train = train or train_one_run
    output_dir = Path(config.output_dir)
    runs = plan_sweep(output_dir, weightings, weight_vectors, seeds)
    unfinished = [run for run in runs if not run.finished]
    if finished_only:
        runs = [run for run in runs if run.finished]
        if not runs:
            raise ValueError(f"--finished-only: none of the {len(unfinished)} runs of the sweep in {output_dir} has "
                             "finished (no metrics.json yet).")
    # The runs share the base model and the pairs: the reference log-probabilities are computed once, then read.
    reference_cache = config.reference_cache_dir or str(output_dir / "reference-logps")
    rows, samples = [], []
    for run in runs:
        seed = config.seed if run.seed is None else run.seed
        run_config = dataclasses.replace(config, weighting=run.weighting, weights=run.weights, objectives=objectives,
                                         output_dir=str(run.run_dir), seed=seed, reference_cache_dir=reference_cache)
        if not run.finished:
            train(run_config)
        if front_metric.rewards and not run.evaluated:
            model_dir = run.run_dir / "model"
            write_json_atomic(run.run_dir / "eval.json",
                              {"model": str(model_dir), **evaluate_trained(model_dir, run_config)})
        row, units = _measure_run(run, seed, objectives, front_metric)
        rows.append(row)
        samples.append(units)
    axes = front_metric.axes(objectives)
    if front_metric.rewards:
        reference = []
        for name in axes:
            means = [row[f"reference_reward/{name}"] for row in rows if math.isfinite(row[f"reference_reward/{name}"])]
            if not means:
                raise ValueError(f"the reward {name!r} scored none of the reference policy's completions in any "
                                 "run's eval.json: the front has no reference point.")
            reference.append(float(np.mean(means)))
    else:
        reference = [METRICS[front_metric.name][0]] * len(axes)
    summary = summarise_front(rows, axes, metric, samples=None if samples[0] is None else samples,
                              reference=reference)
    front = {"objectives": objectives, "metric": metric, "axes": axes, "seeds": seeds, "reference_point": reference,
             "interval_level": INTERVAL_LEVEL, "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "runs": rows,
             "weightings": summary,
             "unfinished": [str(run.run_dir) for run in unfinished] if finished_only else []}
    write_json_atomic(output_dir / "front.json", front)
    _write_csv(output_dir / "front.csv", rows, objectives, front_metric)
    plot_front(output_dir / "front.png", summary, axes, metric, reference)
    return front


def _status(run: SweepRun, front_metric: FrontMetric) -> str:
    if not run.finished:
        return "to train"
    return "to evaluate" if front_metric.rewards and not run.evaluated else "done"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def main(config_file: str, weights: str, weightings: str, metric: str, seeds: str | None, dry_run: bool,
         overrides: list[str], console: Console, finished_only: bool = False) -> int:
    config = parse_config(ParetoPreferenceConfig, config_file, overrides)
    front_metric = parse_metric(metric)
    _check_rewards(front_metric, config, metric)
    objectives = objective_names(config)
    if len(objectives) < 2:
        raise ValueError(f"a sweep needs at least two objectives, got {objectives}.")
    names = [name.strip() for name in weightings.split(",") if name.strip()]
    vectors = parse_weight_spec(weights, len(objectives))
    seed_list = None if seeds is None else parse_seeds(seeds)
    runs = plan_sweep(config.output_dir, names, vectors, seed_list)
    if dry_run:
        table = Table(title=f"sweep plan: {len(runs)} runs over objectives {objectives}")
        for column in ("weighting", "weights", "seed", "run folder", "status"):
            table.add_column(column, overflow="fold")  # a run folder is wrapped, never cut
        for run in runs:
            table.add_row(run.weighting, " / ".join(f"{w:.3f}" for w in run.weights),
                          str(config.seed if run.seed is None else run.seed), str(run.run_dir),
                          _status(run, front_metric))
        console.print(table)
        return 0
    front = run_sweep(config, objectives, names, vectors, metric=metric, seeds=seed_list, finished_only=finished_only)
    axes_text = ", ".join(f"{axis} {value:.4g}" for axis, value in zip(front["axes"], front["reference_point"]))
    table = Table(title=f"front of {metric} (reference point: {axes_text}; 95% bootstrap intervals)")
    baseline = next(iter(front["weightings"]), "")
    for column in ("weighting", "runs", "non-dominated", "hypervolume", "95% interval", f"minus {baseline} (paired)",
                   "worst-objective gain", "at weights", "preference angle"):
        table.add_column(column, justify="left" if column == "weighting" else "right")
    for name, entry in front["weightings"].items():
        interval = ("-" if entry["hypervolume_low"] is None
                    else f"[{entry['hypervolume_low']:.5f}, {entry['hypervolume_high']:.5f}]")
        best = entry["worst_objective_gain_weights"]
        difference = entry["hypervolume_difference"]
        paired = ("-" if difference is None
                  else f"{difference['value']:+.5f} [{difference['low']:+.5f}, {difference['high']:+.5f}]")
        table.add_row(name, str(sum(len(seeds) for seeds in entry["seed_points"])), str(sum(entry["non_dominated"])),
                      f"{entry['hypervolume']:.5f}", interval, paired, _number(entry["worst_objective_gain"], 4),
                      "-" if best is None else " / ".join(f"{w:.2f}" for w in best),
                      _number(entry["preference_angle"], 1))
    console.print(table)
    if front["unfinished"]:
        console.print(f"{len(front['unfinished'])} unfinished runs left out (--finished-only).")
    console.print(f"[bold]front written to[/bold] {Path(config.output_dir).resolve()}/front.{{json,csv,png}}")
    return 0
