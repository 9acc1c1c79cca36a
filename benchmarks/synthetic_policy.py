"""Noisy, non-convex synthetic benchmark: ``python benchmarks/synthetic_policy.py [--quick] [--markdown FILE] ...``.

The same run as ``paretoalign synthetic --benchmark policy`` (:mod:`paretoalign.commands.synthetic`): a small MLP
policy trained by multi-objective DPO on sampled pairs, every weighting over K x batch size x loss-scale ratio x
seeds, measured exactly against a reference front (:mod:`paretoalign.synthetic.policy`); prints Markdown tables and
with ``--markdown FILE`` writes them to FILE. ``--help`` lists every option.
"""

import sys

from paretoalign.commands.synthetic import main

if __name__ == "__main__":
    sys.exit(main(["--benchmark", "policy", *sys.argv[1:]]))
