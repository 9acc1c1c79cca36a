"""Tabular transfer benchmark: ``python benchmarks/transfer.py [--seeds 0 1 2] [--budget N] [--json FILE]``.

Labels (oracle queries) the empirical TPO algorithm needs to reach 90% of the optimal KL-regularised value, without
transfer, with a good source among bad ones, and with only bad sources (:mod:`paretoalign.synthetic`, last section).
"""

import sys

from paretoalign.synthetic import transfer_main

if __name__ == "__main__":
    sys.exit(transfer_main())
