"""``paretoalign <command>``: train, demo, rl, transfer, eval, sweep, synthetic.

Every command that trains takes ``--config FILE.yaml`` and any config field as ``--field value``, which overrides
the file; ``paretoalign train --help`` lists every field with its help text.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

__all__ = ["main"]

DEMO_CONFIG = Path(__file__).resolve().parent / "resources" / "demo.yaml"


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_before_after(metrics: dict, console: Console) -> None:
    """A table of each objective's held-out accuracy and margin before and after training."""
    if "before" not in metrics or "after" not in metrics:
        return
    table = Table(title="held-out preference metrics (implicit reward; a tie counts 1/2)")
    for column in ("objective", "weight", "pairs", "acc. before", "acc. after", "margin after", "loss before", "loss after"):
        table.add_column(column, justify="right" if column != "objective" else "left")
    for name, weight in zip(metrics["objectives"], metrics["weights"]):
        before, after = metrics["before"][name], metrics["after"][name]
        table.add_row(
            name,
            f"{weight:.2f}",
            str(after["pairs"]),
            f"{before['accuracy']:.3f}",
            f"{after['accuracy']:.3f}",
            f"{after['margin']:+.4f}",
            f"{before['loss']:.4f}",
            f"{after['loss']:.4f}",
        )
    console.print(table)


def _train(config_file: str | None, overrides: list[str], console: Console) -> int:
    from paretoalign.config import ParetoPreferenceConfig, parse_config
    from paretoalign.trainers.preference import run_preference_training

    config = parse_config(ParetoPreferenceConfig, config_file, overrides)
    metrics = run_preference_training(config)
    print_before_after(metrics, console)
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0


def _transfer(config_file: str | None, overrides: list[str], console: Console) -> int:
    from paretoalign.trainers.transfer import OracleInterrupted, parse_transfer_config, run_transfer

    config = parse_transfer_config(config_file, overrides)
    try:
        result = run_transfer(config)
    except OracleInterrupted as stop:
        console.print(f"[bold yellow]stopped:[/bold yellow] {stop}")
        return 1
    table = Table(title=f"transfer: {result['labels_spent']} of {result['label_budget']} labels spent")
    for column in ("iteration", "labels", "pairs", "source", "est. win rate", "win rate vs initial"):
        table.add_column(column, justify="right")
    for row in result["history"]:
        win, evaluation = row["selected_win_rate"], row.get("eval_win_rate_vs_initial")
        table.add_row(str(row["iteration"]), str(row["labels_spent"]), str(row["pairs"]), row["selected_source"],
                      "-" if win is None else f"{win:.3f}", "-" if evaluation is None else f"{evaluation:.3f}")
    console.print(table)
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0


def print_generation_scores(generation: dict, console: Console) -> None:
    """A table of each reward's mean and share scored on the trained and the reference policy's completions, with
    the judge's win rate of the trained policy against the reference below it."""
    table = Table(title=f"generation scores on {generation['prompts']} held-out prompts "
                        f"({generation['decoding']}, at most {generation['max_new_tokens']} new tokens)")
    for column in ("reward", "trained\nmean", "reference\nmean", "trained -\nreference", "scored\ntrained",
                   "scored\nreference"):
        table.add_column(column, justify="left" if column == "reward" else "right", no_wrap=True)
    for name, values in generation["rewards"].items():
        trained, reference = values["trained"], values["reference"]
        table.add_row(name, f"{trained['mean']:.4f}", f"{reference['mean']:.4f}",
                      f"{trained['mean'] - reference['mean']:+.4f}", f"{trained['scored']:.2f}",
                      f"{reference['scored']:.2f}")
    judged = generation.get("win_rate_vs_reference")
    if judged is not None:
        rate = "-" if judged["win_rate"] is None else f"{judged['win_rate']:.3f}"
        table.caption = (f"win rate vs reference under judge {judged['judge']!r}: {rate} over {judged['prompts']} "
                         f"prompts ({judged['wins']} won, {judged['ties']} tied, {judged['losses']} lost; "
                         "a tie counts 1/2)")
    console.print(table)


def _evaluate(args, overrides: list[str], console: Console) -> int:
    from paretoalign.config import ParetoPreferenceConfig, parse_config
    from paretoalign.evaluation import evaluate_trained
    from paretoalign.io import write_json_atomic

    config = parse_config(ParetoPreferenceConfig, args.config, overrides)
    report = evaluate_trained(args.model, config)
    if report["metrics"]:
        table = Table(title=f"held-out preference metrics of {args.model}")
        for column in ("objective", "pairs", "accuracy", "margin", "loss"):
            table.add_column(column, justify="left" if column == "objective" else "right")
        for name, values in report["metrics"].items():
            table.add_row(name, str(values["pairs"]), f"{values['accuracy']:.3f}", f"{values['margin']:+.4f}",
                          f"{values['loss']:.4f}")
        console.print(table)
    if "generation" in report:
        print_generation_scores(report["generation"], console)
    output = Path(args.output) if args.output else Path(args.model).resolve().parent / "eval.json"
    write_json_atomic(output, {"model": str(args.model), **report})
    console.print(f"[bold]written[/bold] {output}")
    return 0


def _rl(config_file: str | None, overrides: list[str], console: Console) -> int:
    from paretoalign.trainers.grpo import NonFiniteTrainingError, load_rl_config, run_rl_training

    config = load_rl_config(config_file, overrides)
    try:
        metrics = run_rl_training(config)
    except NonFiniteTrainingError as stop:
        console.print(f"[bold red]stopped:[/bold red] {stop}")
        return 1
    if "before" in metrics and "after" in metrics:
        sampling = "sampled" if config.eval_do_sample else "greedy"
        table = Table(title=f"held-out mean reward per reward function ({sampling} completions)")
        for column in ("reward", "weight", "before", "after", "scored after"):
            table.add_column(column, justify="left" if column == "reward" else "right", no_wrap=column == "reward")
        for name, weight in zip(metrics["rewards"], metrics["reward_weights"]):
            before, after = metrics["before"][name], metrics["after"][name]
            table.add_row(name, f"{weight:.2f}", f"{before['mean']:.3f}", f"{after['mean']:.3f}", f"{after['scored']:.2f}")
        console.print(table)
    train = metrics["train"]
    console.print(
        f"{train['steps']} steps, {train['skipped_steps']} skipped; distinct advantages per group "
        f"{train.get('advantages/distinct_per_group', float('nan')):.2f} "
        f"(rewards: {train.get('rewards/distinct_per_group', float('nan')):.2f})"
    )
    console.print(f"[bold]run written to[/bold] {Path(config.output_dir).resolve()}")
    return 0


def _sweep(args, overrides: list[str], console: Console) -> int:
    from paretoalign.config import ParetoPreferenceConfig, parse_config
    from paretoalign.sweep import objective_names, parse_weight_spec, plan_sweep, run_sweep

    config = parse_config(ParetoPreferenceConfig, args.config, overrides)
    objectives = objective_names(config)
    if len(objectives) < 2:
        raise ValueError(f"a sweep needs at least two objectives, got {objectives}.")
    weightings = [name.strip() for name in args.weightings.split(",") if name.strip()]
    vectors = parse_weight_spec(args.weights, len(objectives))
    runs = plan_sweep(config.output_dir, weightings, vectors)
    if args.dry_run:
        table = Table(title=f"sweep plan: {len(runs)} runs over objectives {objectives}")
        for column in ("weighting", "weights", "run folder", "status"):
            table.add_column(column)
        for run in runs:
            weights = " / ".join(f"{w:.3f}" for w in run.weights)
            table.add_row(run.weighting, weights, str(run.run_dir), "done" if run.finished else "to train")
        console.print(table)
        return 0
    front = run_sweep(config, objectives, weightings, vectors, metric=args.metric)
    table = Table(title=f"hypervolume of held-out {args.metric} (reference point {front['reference_point']})")
    for column in ("weighting", "runs", "non-dominated", "hypervolume"):
        table.add_column(column, justify="left" if column == "weighting" else "right")
    for name, entry in front["weightings"].items():
        table.add_row(name, str(len(entry["points"])), str(sum(entry["non_dominated"])), f"{entry['hypervolume']:.5f}")
    console.print(table)
    console.print(f"[bold]front written to[/bold] {Path(config.output_dir).resolve()}/front.{{json,csv,png}}")
    return 0


def _config_class(command: str) -> type:
    """The config dataclass whose fields a training command accepts as ``--field value``."""
    if command == "rl":
        from paretoalign.trainers.grpo import MultiRewardGRPOConfig

        return MultiRewardGRPOConfig
    if command == "transfer":
        from paretoalign.trainers.transfer import TransferConfig

        return TransferConfig
    from paretoalign.config import ParetoPreferenceConfig

    return ParetoPreferenceConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paretoalign",
        description="Multi-objective alignment of language models: RACO preference training and its baselines.",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train on pairwise preference data for K objectives",
        add_help=False,
        description="Train a policy on preference pairs for several objectives (RACO by default).",
    )
    train.add_argument("--config", help="YAML config file; --field value pairs override it")
    demo = commands.add_parser(
        "demo",
        help="the embedded default: SmolLM2-135M-Instruct, harmless vs concise, LoRA, RACO, weights 0.5/0.5",
        add_help=False,
    )
    demo.add_argument("--config", default=str(DEMO_CONFIG), help=argparse.SUPPRESS)
    rl = commands.add_parser(
        "rl",
        help="online multi-reward RL: GRPO, GDPO or per-reward gradients combined by a weighting",
        add_help=False,
        description="Sample completions, score them with K reward functions, train with GRPO / GDPO advantages.",
    )
    rl.add_argument("--config", help="YAML config file; --field value pairs override it")
    evaluate = commands.add_parser(
        "eval", help="held-out per-objective accuracy, margin and loss of a trained model (and generation scores)",
        description="Evaluate a trained model (a run's model/ folder) on the config's eval_data, and with eval_rewards "
                    "or eval_judge its greedy completions against the reference policy's; writes eval.json. Any "
                    "config field may follow as --field value.",
    )
    evaluate.add_argument("--model", required=True, help="the model/ folder a run wrote (adapter or full weights)")
    evaluate.add_argument("--config", required=True, help="YAML config giving eval_data (and the base model)")
    evaluate.add_argument("--output", help="where to write eval.json (default: beside the model folder)")
    sweep = commands.add_parser(
        "sweep", help="one run per (weighting, weight vector): Pareto front, hypervolume, front.png",
        description="Train one run per weighting and weight vector, evaluate each, and draw the Pareto front.",
    )
    sweep.add_argument("--config", required=True, help="YAML config of one run (output_dir holds the sweep)")
    sweep.add_argument("--weights", default="grid:4", help="grid:N (simplex lattice) or 'w1,w2;w1,w2;...'")
    sweep.add_argument("--weightings", default="raco,weighted_sum", help="comma-separated weighting names")
    sweep.add_argument("--metric", default="accuracy", choices=["accuracy", "margin", "loss"],
                       help="held-out metric per objective that spans the front")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and what is already done")
    transfer = commands.add_parser(
        "transfer",
        help="online DPO/IPO under a label budget, borrowing responses from imperfect reward models (TPO)",
        add_help=False,
        description="Online preference learning from a trusted oracle, with UCB-selected imperfect reward models.",
    )
    transfer.add_argument("--config", help="YAML config file; --field value pairs override it")
    commands.add_parser(
        "synthetic", add_help=False,
        help="tabular DPO benchmark with an exact Pareto front: every weighting, RACO's clip (--help for options)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    console = Console()
    if args.command is None:
        parser.print_help()
        return 0 if not rest else 2
    if args.command == "synthetic":
        from paretoalign.synthetic import main as synthetic_main

        return synthetic_main(rest)
    if args.command in ("train", "demo", "rl", "transfer") and any(flag in rest for flag in ("-h", "--help")):
        from transformers import HfArgumentParser

        HfArgumentParser(_config_class(args.command), prog=f"paretoalign {args.command}").print_help()
        return 0
    _configure_logging(args.verbose)
    try:
        if args.command == "rl":
            return _rl(args.config, rest, console)
        if args.command == "eval":
            return _evaluate(args, rest, console)
        if args.command == "sweep":
            return _sweep(args, rest, console)
        if args.command == "transfer":
            return _transfer(args.config, rest, console)
        return _train(args.config, rest, console)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        console.print(f"[bold red]error:[/bold red] {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
