"""``python fsdp_on_cpu.py ARGS...``: ``paretoalign ARGS...`` with accelerate's FSDP switched on for gloo CPU processes.

Accelerate turns a run with an FSDP plugin into ``DistributedType.FSDP`` only on accelerators (GPU, NPU, XPU, ...);
on CPU processes it silently stays ``MULTI_CPU`` (plain data parallelism) and ignores the plugin. Torch's FSDP2
(``fully_shard``) itself runs on CPU with gloo, so this launcher lifts that one check: whenever accelerate's state
is (re)built as ``MULTI_CPU`` while an FSDP plugin was given, it becomes ``FSDP`` with that plugin. Everything else
(``Accelerator.prepare`` sharding the model, the trainer's exact engine on sharded gradients, sharded checkpoints
through torch.distributed.checkpoint, gathering the full weights to save) is the code that runs on GPUs.
"""

from __future__ import annotations

import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType

from paretoalign.cli import main

build_state = AcceleratorState.__init__


def build_state_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    build_state(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None:
        self.fsdp_plugin = fsdp_plugin
    # Every AcceleratorState() copies PartialState's distributed type (MULTI_CPU) back: switch it again each time.
    if getattr(self, "fsdp_plugin", None) is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP


AcceleratorState.__init__ = build_state_with_fsdp_on_cpu

if __name__ == "__main__":
    sys.exit(main())
