"""``paretoalign synthetic``: the synthetic benchmarks, chosen by ``--benchmark``.

``tabular`` (the default): for each requested K, :func:`paretoalign.synthetic.tabular.run_benchmark` and one row per
weighting; then, unless ``--no-clipping-study``, :func:`paretoalign.synthetic.tabular.clipping_study` (K = 2, RACO with
and without its clip). ``--quick`` shrinks the problem and the grids for a run under 30 seconds.

``policy``: :func:`paretoalign.synthetic.policy.policy_benchmark`, a small neural policy trained on sampled pairs,
over K x ``--batch-sizes`` x ``--scale-ratios`` x ``--seeds``, printed as Markdown tables (``--markdown FILE`` also
writes them to a file). ``--quick`` runs 2 seeds, batch sizes 4 and 64, fewer steps and a coarser reference front,
under 60 seconds on one core.

``--json FILE`` writes every record.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence

from paretoalign.synthetic.policy import (
    format_policy_tables,
    policy_benchmark,
    POLICY_WEIGHTINGS,
    PolicyBenchmarkConfig,
)
from paretoalign.synthetic.tabular import (
    clipping_study,
    clipping_verdict,
    EXACT_OPTIMUM_LABEL,
    run_benchmark,
    SyntheticConfig,
    WEIGHTING_VARIANTS,
)

__all__ = ["main"]


#: The grid of ``--benchmark policy`` and of ``--benchmark policy --quick`` (which also runs fewer steps).
POLICY_GRID = {"seeds": [0, 1, 2, 3, 4], "batch_sizes": [4, 16, 64], "scale_ratios": [1.0, 10.0]}
POLICY_QUICK_GRID = {"seeds": [0, 1], "batch_sizes": [4, 64], "scale_ratios": [1.0, 10.0]}
POLICY_QUICK_SETTINGS = {"steps": 80, "front_steps": 400, "front_restarts": 2}


def _build_parser() -> argparse.ArgumentParser:
    defaults = SyntheticConfig()
    policy_defaults = PolicyBenchmarkConfig()
    parser = argparse.ArgumentParser(
        prog="paretoalign synthetic",
        description="Synthetic benchmarks with an exact evaluation: tabular DPO against its true Pareto front and "
                    "RACO's clip (--benchmark tabular), or a small neural policy trained on sampled pairs under "
                    "gradient noise and gradient-scale imbalance (--benchmark policy).",
    )
    parser.add_argument("--benchmark", choices=["tabular", "policy"], default="tabular", help="which benchmark to run")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced run (tabular: fewer steps, weights, angles, < 30 s; policy: < 60 s)")
    parser.add_argument("--objectives", type=int, nargs="+", default=[2, 3], help="values of K to run (default: 2 3)")
    parser.add_argument("--angle", type=float, default=defaults.angle_degrees, help="conflict angle in degrees")
    parser.add_argument("--steps", type=int, default=None,
                        help="gradient steps per run (tabular: 400, quick 80; policy: "
                             f"{policy_defaults.steps}, quick {POLICY_QUICK_SETTINGS['steps']})")
    parser.add_argument("--weightings", nargs="+", default=None, choices=list(WEIGHTING_VARIANTS),
                        help=f"weightings to run (tabular: all; policy: {' '.join(POLICY_WEIGHTINGS)})")
    parser.add_argument("--json", default=None, help="write every record to this JSON file")
    tabular = parser.add_argument_group("--benchmark tabular")
    tabular.add_argument("--pairs-per-step", type=int, default=None, help="sampled pairs per step (default: exact)")
    tabular.add_argument("--seed", type=int, default=None, help=f"seed of the instance (default {defaults.seed})")
    tabular.add_argument("--no-clipping-study", action="store_true", help="skip the RACO clip vs no-clip study")
    policy = parser.add_argument_group("--benchmark policy")
    policy.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="instances and minibatch streams (default: 0 1 2 3 4; quick 0 1)")
    policy.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="sampled pairs per step, the noise levels (default: 4 16 64; quick 4 64)")
    policy.add_argument("--scale-ratios", type=float, nargs="+", default=None,
                        help="loss scale of objective 1 over the others (default: 1 10)")
    policy.add_argument("--markdown", default=None, help="also write the Markdown tables to this file")
    return parser


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse the options of the benchmark that was not chosen."""
    other = {
        "tabular": {"--seeds": args.seeds, "--batch-sizes": args.batch_sizes, "--scale-ratios": args.scale_ratios,
                    "--markdown": args.markdown},
        "policy": {"--pairs-per-step": args.pairs_per_step, "--seed": args.seed,
                   "--no-clipping-study": args.no_clipping_study or None},
    }[args.benchmark]
    given = [option for option, value in other.items() if value is not None]
    if given:
        other_benchmark = "tabular" if args.benchmark == "policy" else "policy"
        verb = "is an option" if len(given) == 1 else "are options"
        parser.error(f"{', '.join(given)} {verb} of --benchmark {other_benchmark}, not of --benchmark "
                     f"{args.benchmark}.")


def _benchmark_config(num_objectives: int, args: argparse.Namespace) -> SyntheticConfig:
    """The config of one K: the full run, or with ``--quick`` 4 prompts x 4 responses, 80 steps and coarser grids."""
    quick = args.quick
    return SyntheticConfig(
        num_prompts=4 if quick else SyntheticConfig.num_prompts,
        num_responses=4 if quick else SyntheticConfig.num_responses,
        num_objectives=num_objectives,
        angle_degrees=args.angle,
        max_steps=args.steps or (80 if quick else SyntheticConfig.max_steps),
        seed=SyntheticConfig.seed if args.seed is None else args.seed,
        weightings=tuple(args.weightings or WEIGHTING_VARIANTS),
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


def _policy_config(args: argparse.Namespace) -> PolicyBenchmarkConfig:
    """The policy benchmark's settings: the defaults, or with ``--quick`` fewer steps and a cheaper reference front."""
    settings = {"angle_degrees": args.angle, "weightings": tuple(args.weightings or POLICY_WEIGHTINGS)}
    if args.quick:
        settings.update(POLICY_QUICK_SETTINGS)
    if args.steps is not None:
        settings["steps"] = args.steps
    return PolicyBenchmarkConfig(**settings)


def _run_policy(args: argparse.Namespace) -> dict[str, list[dict]]:
    """The policy benchmark, one K at a time; prints each K's table when it is done."""
    config = _policy_config(args)
    grid = POLICY_QUICK_GRID if args.quick else POLICY_GRID
    records: list[dict] = []
    for num_objectives in args.objectives:
        started = time.perf_counter()
        done = policy_benchmark(
            config,
            seeds=args.seeds or grid["seeds"],
            objectives=[num_objectives],
            batch_sizes=args.batch_sizes or grid["batch_sizes"],
            scale_ratios=args.scale_ratios or grid["scale_ratios"],
        )
        print(format_policy_tables(done))
        print(f"({time.perf_counter() - started:.1f} s)\n")
        records += done
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(format_policy_tables(records) + "\n")
    return {"policy": records}


def _run_tabular(args: argparse.Namespace) -> dict[str, list[dict]]:
    """The tabular benchmark for each requested K, then (unless ``--no-clipping-study``) the clipping study; prints
    each table when it is done."""
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
    return output


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmark (tabular: each requested K, then the K = 2 clipping study); print tables; return 0."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _check_options(parser, args)
    if args.benchmark == "policy":
        output = _run_policy(args)
    else:
        output = _run_tabular(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle, indent=1)
    return 0
