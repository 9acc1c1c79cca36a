"""``paretoalign synthetic``: every weighting against the exact Pareto front of tabular DPO, and RACO's clip study.

For each requested K it runs :func:`paretoalign.synthetic.tabular.run_benchmark` and prints one row per weighting; then, unless
``--no-clipping-study``, :func:`paretoalign.synthetic.tabular.clipping_study` (K = 2, RACO with and without its clip);
``--json FILE`` writes every record. ``--quick`` shrinks the problem and the grids for a run under 30 seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence

from paretoalign.synthetic.tabular import (
    clipping_study,
    clipping_verdict,
    EXACT_OPTIMUM_LABEL,
    run_benchmark,
    SyntheticConfig,
    WEIGHTING_VARIANTS,
)

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(
        prog="paretoalign synthetic",
        description="Tabular DPO benchmark with an exact Pareto front: weightings vs the true front, and RACO's clip.",
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run (fewer steps, weights, angles; < 30 s)")
    parser.add_argument("--objectives", type=int, nargs="+", default=[2, 3], help="values of K to run (default: 2 3)")
    parser.add_argument("--angle", type=float, default=defaults.angle_degrees, help="conflict angle in degrees")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps per run (default 400, quick 80)")
    parser.add_argument("--pairs-per-step", type=int, default=None, help="sampled pairs per step (default: exact)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--weightings", nargs="+", default=list(defaults.weightings), choices=list(WEIGHTING_VARIANTS)
    )
    parser.add_argument("--no-clipping-study", action="store_true", help="skip the RACO clip vs no-clip study")
    parser.add_argument("--json", default=None, help="write every record to this JSON file")
    return parser


def _benchmark_config(num_objectives: int, args: argparse.Namespace) -> SyntheticConfig:
    """The config of one K: the full run, or with ``--quick`` 4 prompts x 4 responses, 80 steps and coarser grids."""
    quick = args.quick
    return SyntheticConfig(
        num_prompts=4 if quick else SyntheticConfig.num_prompts,
        num_responses=4 if quick else SyntheticConfig.num_responses,
        num_objectives=num_objectives,
        angle_degrees=args.angle,
        max_steps=args.steps or (80 if quick else SyntheticConfig.max_steps),
        seed=args.seed,
        weightings=tuple(args.weightings),
        weight_divisions=(4 if quick else 10) if num_objectives == 2 else (2 if quick else 5),
        front_divisions=(100 if quick else 400) if num_objectives == 2 else (12 if quick else 40),
        pairs_per_step=args.pairs_per_step,
    )


def _format_optional(value: float | int | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _format_table(records: list[dict]) -> str:
    """A plain-text table of :func:`paretoalign.synthetic.tabular.run_benchmark` records, one row per weighting."""
    header = f"{'weighting':<33}{'HV frac':>9}{'eps reached':>13}{'mean steps':>12}{'L_w gap':>11}{'pref. angle':>13}"
    first = records[0]
    lines = [
        f"K = {first['num_objectives']}, angle = {first['angle_degrees']:g} deg, reference point "
        f"{[round(v, 4) for v in first['reference_point']]}, true-front hypervolume {first['front_hypervolume']:.6g}",
        header,
        "-" * len(header),
    ]
    for record in records:
        reached = f"{record['reached_eps']}/{record['num_runs']}" if record["weighting"] != EXACT_OPTIMUM_LABEL else "-"
        lines.append(
            f"{record['weighting']:<33}{record['hypervolume_fraction']:>9.4f}{reached:>13}"
            f"{_format_optional(record['mean_steps_to_eps'], '.1f'):>12}{record['mean_weighted_loss_gap']:>11.2e}"
            f"{_format_optional(record['mean_preference_angle'], '.1f'):>13}"
        )
    return "\n".join(lines)


def _format_clipping_table(records: list[dict], checkpoints: Sequence[int] = (10, 25)) -> str:
    """A plain-text table of :func:`paretoalign.synthetic.tabular.clipping_study` records: clipped vs unclipped RACO per
    angle, c and w."""
    gap_headers = "".join(f"{f'gap@{t} clip':>14}{'no-clip':>10}" for t in checkpoints)
    header = (
        f"{'angle':>6}{'c':>6}{'w':>12}{gap_headers}{'steps clip':>12}{'no-clip':>9}"
        f"{'eps clip':>10}{'no-clip':>9}{'clip on':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        w = "(" + ",".join(f"{v:g}" for v in r["weights"]) + ")"
        gaps = "".join(f"{r[f'clip_gap_{t}']:>14.2e}{r[f'no_clip_gap_{t}']:>10.2e}" for t in checkpoints)
        lines.append(
            f"{r['angle_degrees']:>6g}{r['c']:>6g}{w:>12}{gaps}"
            f"{_format_optional(r['clip_steps_to_gap'], 'd'):>12}{_format_optional(r['no_clip_steps_to_gap'], 'd'):>9}"
            f"{_format_optional(r['clip_steps_to_eps'], 'd'):>10}{_format_optional(r['no_clip_steps_to_eps'], 'd'):>9}"
            f"{r['clip_active_steps']:>9d}"
        )
    return "\n".join(lines)


def _format_clipping_report(study: list[dict], config: SyntheticConfig) -> str:
    """What the columns of the clipping table mean, the table, and the faster / as fast / slower counts."""
    verdict = clipping_verdict(study)
    return "\n".join([
        "RACO clip vs clip=False, K = 2, w and c as listed: weighted-loss gap L_w - min L_w after 10 and 25 steps,",
        f"steps until the gap < 1e-6 and until sqrt(criticality) < {config.eps:g} (of {config.max_steps})",
        _format_clipping_table(study),
        f"clip reaches the gap tolerance faster in {verdict['faster']}, as fast in {verdict['equal']}, "
        f"slower in {verdict['slower']} of {len(study)} settings",
    ])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each requested K, then the K = 2 clipping study; print tables; return 0."""
    args = _build_parser().parse_args(argv)
    output: dict[str, list[dict]] = {}
    for num_objectives in args.objectives:
        started = time.perf_counter()
        records = run_benchmark(_benchmark_config(num_objectives, args))
        print(_format_table(records))
        print(f"({time.perf_counter() - started:.1f} s)\n")
        output[f"K={num_objectives}"] = records
    if not args.no_clipping_study:
        started = time.perf_counter()
        config = _benchmark_config(2, args)
        study = clipping_study(config, angles=(120.0,) if args.quick else (30.0, 60.0, 90.0, 120.0, 150.0))
        print(_format_clipping_report(study, config))
        print(f"({time.perf_counter() - started:.1f} s)")
        output["clipping_study"] = study
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle, indent=1)
    return 0
