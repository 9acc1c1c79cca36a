"""``paretoalign <command>``: train, demo.

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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    console = Console()
    if args.command is None:
        parser.print_help()
        return 0 if not rest else 2
    if args.command in ("train", "demo") and any(flag in rest for flag in ("-h", "--help")):
        from transformers import HfArgumentParser

        from paretoalign.config import ParetoPreferenceConfig

        HfArgumentParser(ParetoPreferenceConfig, prog=f"paretoalign {args.command}").print_help()
        return 0
    _configure_logging(args.verbose)
    try:
        return _train(args.config, rest, console)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        console.print(f"[bold red]error:[/bold red] {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
