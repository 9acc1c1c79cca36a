"""``paretoalign train`` with one rank's loss made NaN at one optimizer step, launched by
``test_collective_skip.py`` (1 process, or 2 under torchrun).

Usage: ``python poisoned_rank_worker.py CONFIG OUTPUT POISONED_RANK POISONED_STEP [--field value ...]``. On the
process of rank ``POISONED_RANK`` the K objective losses of every micro-batch of optimizer step ``POISONED_STEP``
(1-based) are NaN; every other batch is untouched. The run writes its model as usual and ``rank-<rank>.json``: the
optimizer steps skipped on that process and a SHA-256 of its parameters after training.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from paretoalign.cli import main as cli_main
from paretoalign.trainers.preference import ParetoPreferenceTrainer


def main() -> int:
    config, output, poisoned_rank, poisoned_step, *overrides = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    objective_losses = ParetoPreferenceTrainer.objective_losses
    skips: list[int] = []
    trainers: list[ParetoPreferenceTrainer] = []

    def poisoned_losses(self, model, inputs, on_token_logps=None):
        losses, delta = objective_losses(self, model, inputs, on_token_logps)
        if rank == int(poisoned_rank) and self.state.global_step + 1 == int(poisoned_step):
            losses = losses * torch.nan
        return losses, delta

    finish_update = ParetoPreferenceTrainer.finish_update

    def recorded_finish_update(self, model, fault, step, metrics):
        trainers[:] = [self]
        if fault is not None:
            skips.append(self.state.global_step + 1)
        finish_update(self, model, fault, step, metrics)

    ParetoPreferenceTrainer.objective_losses = poisoned_losses
    ParetoPreferenceTrainer.finish_update = recorded_finish_update
    status = cli_main(["train", "--config", config, "--output_dir", output, *overrides])
    model = trainers[0].accelerator.unwrap_model(trainers[0].model)
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()
    Path(output, f"rank-{rank}.json").write_text(json.dumps({"skipped_steps": skips, "parameters": digest}))
    return status


if __name__ == "__main__":
    sys.exit(main())
