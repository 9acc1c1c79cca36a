"""Tabular transfer benchmark: ``python benchmarks/transfer.py [--seeds 0 1 2] [--budget N] [--json FILE]``.

Labels (oracle queries) the empirical TPO algorithm needs to reach 90% of the optimal KL-regularised value, without
transfer, with a good source among bad ones, and with only bad sources (:mod:`paretoalign.synthetic.bandit`).
"""

import argparse
import json
import sys
import time

from paretoalign.synthetic.bandit import TransferBanditConfig, format_transfer_table, transfer_benchmark


def main(argv: list[str] | None = None) -> int:
    """Run every transfer variant on every seed, print the table, optionally write every record to JSON."""
    defaults = TransferBanditConfig()
    parser = argparse.ArgumentParser(
        prog="benchmarks/transfer.py",
        description="Labels needed to reach 90% of the optimal KL-regularised value, with and without transfer.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--budget", type=int, default=defaults.label_budget, help="labels per run")
    parser.add_argument("--target", type=float, default=defaults.target_fraction, help="normalised value to reach")
    parser.add_argument("--json", default=None, help="write every record to this JSON file")
    args = parser.parse_args(argv)
    config = TransferBanditConfig(label_budget=args.budget, target_fraction=args.target)
    started = time.perf_counter()
    records = transfer_benchmark(config, args.seeds)
    print(f"{config.num_prompts} prompts x {config.num_responses} responses, beta {config.beta}, r* in "
          f"[0, {config.reward_scale}], n {config.n}, m {config.m}, {config.num_replaced} replaced, refresh every "
          f"{config.refresh_prompts} prompts, {config.prompts_per_iteration} prompts/iteration, "
          f"{config.steps_per_iteration} DPO steps of {config.learning_rate:g}/iteration, seeds {args.seeds}")
    print(format_transfer_table(records, config))
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
