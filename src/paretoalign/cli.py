"""``paretoalign <command>``: train, demo, rl, transfer, eval, sweep, synthetic, data inspect, data label.

This module only parses the command line and dispatches to :mod:`paretoalign.commands`, one module per command.
Every command that trains takes ``--config FILE.yaml`` and any config field as ``--field value``, which overrides
the file; ``paretoalign train --help`` lists every field with its help text. Errors in the input (a bad config, a
missing file, malformed data) print one unwrapped line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from paretoalign.commands import (
    data,
    demo,
    evaluate,
    rl,
    sweep,
    synthetic,
    train,
    transfer,
)
from paretoalign.config import ConfigParser
from paretoalign.engine import NonFiniteTrainingError
from paretoalign.trainers.grpo import MultiRewardGRPOConfig
from paretoalign.trainers.preference import ParetoPreferenceConfig
from paretoalign.trainers.transfer import TransferConfig

__all__ = ["build_parser", "main"]

#: The config dataclass whose fields each training command accepts as ``--field value``.
CONFIG_CLASSES = {
    "train": ParetoPreferenceConfig,
    "demo": ParetoPreferenceConfig,
    "rl": MultiRewardGRPOConfig,
    "transfer": TransferConfig,
}


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paretoalign",
        description="Multi-objective alignment of language models: RACO preference training and its baselines.",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("train", "train on pairwise preference data for K objectives"),
        ("rl", "online multi-reward RL: GRPO, GDPO or per-reward gradients combined by a weighting"),
        ("transfer", "online DPO/IPO under a label budget, borrowing responses from imperfect reward models (TPO)"),
    ):  # `--help` after these prints the fields of their config
        command = commands.add_parser(name, help=text, add_help=False)
        command.add_argument("--config", help="YAML config file; --field value pairs override it")
    commands.add_parser(
        "demo", add_help=False,
        help="the embedded default: SmolLM2-135M-Instruct, harmless vs concise, LoRA, RACO, weights 0.5/0.5",
    )
    evaluate_parser = commands.add_parser(
        "eval", help="held-out per-objective accuracy, margin and loss of a trained model (and generation scores)",
        description="Evaluate a trained model (a run's model/ folder) on the config's eval_data, and with eval_rewards "
                    "or eval_judge its greedy completions against the reference policy's; writes eval.json. Any "
                    "config field may follow as --field value.",
    )
    evaluate_parser.add_argument("--model", required=True,
                                 help="the model/ folder a run wrote (adapter or full weights)")
    evaluate_parser.add_argument("--config", required=True, help="YAML config giving eval_data (and the base model)")
    evaluate_parser.add_argument("--output", help="where to write eval.json (default: beside the model folder)")
    sweep_parser = commands.add_parser(
        "sweep", help="one run per (weighting, weight vector): Pareto front, hypervolume, front.png",
        description="Train one run per weighting and weight vector, evaluate each, and draw the Pareto front.",
    )
    sweep_parser.add_argument("--config", required=True, help="YAML config of one run (output_dir holds the sweep)")
    sweep_parser.add_argument("--weights", default="grid:4", help="grid:N (simplex lattice) or 'w1,w2;w1,w2;...'")
    sweep_parser.add_argument("--weightings", default="raco,weighted_sum", help="comma-separated weighting names")
    sweep_parser.add_argument("--metric", default="accuracy",
                              help="what spans the front: accuracy | margin | loss (held-out, per objective) or "
                                   "reward:NAME1,NAME2 (mean score of those eval_rewards, written to each run's "
                                   "eval.json)")
    sweep_parser.add_argument("--seeds", help="comma-separated training seeds: every run once per seed into "
                                              "<run>/seed_<s>/ (default: one run with the config's seed)")
    sweep_parser.add_argument("--dry-run", action="store_true", help="print the plan and what is already done")
    sweep_parser.add_argument("--finished-only", action="store_true",
                              help="train nothing: the front of the runs finished so far (a sweep run in pieces)")
    data_parser = commands.add_parser("data", help="look at preference data before training on it")
    data_actions = data_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect_parser = data_actions.add_parser(
        "inspect", help="labels and ties per objective, their conflicts, lengths in tokens and truncation",
        description="Report what train_data (and eval_data) of a `paretoalign train` config hold: labelled pairs and "
                    "ties per objective, how often each two objectives disagree, prompt and response lengths in the "
                    "model's tokens and the pairs max_length would truncate. Any config field may follow as "
                    "--field value.",
    )
    inspect_parser.add_argument("--config", required=True, help="YAML config of `paretoalign train`")
    inspect_parser.add_argument("--json", metavar="OUT", help="also write the report to this JSON file")
    label_parser = data_actions.add_parser(
        "label", help="label every pair with a judge's preference as a new objective (e.g. faithfulness)",
        description="Score both responses of every pair of train_data (or eval_data) with a judge (a reward spec, "
                    "e.g. '{name: pair_classifier, path: CogComp/bart-faithful-summary-detector}') and write the pairs "
                    "with a new objective whose label is the response the judge scores higher. Any config field may "
                    "follow as --field value.",
    )
    label_parser.add_argument("--config", required=True, help="YAML config of `paretoalign train`")
    label_parser.add_argument("--judge", required=True, help="the judge: a reward spec (YAML text or NAME:key=value)")
    label_parser.add_argument("--objective", required=True, help="name of the new objective")
    label_parser.add_argument("--output", required=True, help="JSON Lines file of multi-labelled pairs to write")
    label_parser.add_argument("--split", default="train", choices=["train", "eval"], help="which pairs to label")
    commands.add_parser(
        "synthetic", add_help=False,
        help="synthetic benchmarks with an exact evaluation: tabular DPO (every weighting, RACO's clip) or "
             "--benchmark policy (a neural policy under gradient noise and scale imbalance); --help for options",
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
        return synthetic.main(rest)
    if args.command in CONFIG_CLASSES and any(flag in rest for flag in ("-h", "--help")):
        ConfigParser(CONFIG_CLASSES[args.command], prog=f"paretoalign {args.command}").print_help()
        return 0
    _configure_logging(args.verbose)
    try:
        if args.command == "train":
            return train.main(args.config, rest, console)
        if args.command == "demo":
            return demo.main(rest, console)
        if args.command == "rl":
            return rl.main(args.config, rest, console)
        if args.command == "transfer":
            return transfer.main(args.config, rest, console)
        if args.command == "data" and args.action == "label":
            return data.label_main(args.config, args.judge, args.objective, args.output, args.split, rest, console)
        if args.command == "data":
            return data.main(args.config, args.json, rest, console)
        if args.command == "eval":
            return evaluate.main(args.model, args.config, args.output, rest, console)
        return sweep.main(args.config, args.weights, args.weightings, args.metric, args.seeds, args.dry_run, rest,
                          console, finished_only=args.finished_only)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
        return 2
    except NonFiniteTrainingError as stop:
        console.print(f"[bold red]stopped:[/bold red] {escape(str(stop))}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
