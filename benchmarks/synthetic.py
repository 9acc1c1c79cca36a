"""Synthetic tabular DPO benchmark: ``python benchmarks/synthetic.py [--quick] [--objectives 2 3] [--json FILE]``.

The same run as ``paretoalign synthetic`` (:mod:`paretoalign.commands.synthetic`): every weighting against the exact
Pareto front and RACO's clip vs clip=False study (:mod:`paretoalign.synthetic.tabular`); ``--help`` lists every option.
"""

import sys

from paretoalign.commands.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
