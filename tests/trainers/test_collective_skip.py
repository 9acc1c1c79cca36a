"""A non-finite loss on one process skips the step on every process: no hang, identical parameters everywhere, and the
same update as one process that skips that step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).resolve().parent / "poisoned_rank_worker.py"
POISONED_STEP = 2


def run(run_processes, tmp_path: Path, config_file: Path, output: Path, processes: int, batch_size: int,
        poisoned_rank: int, port: int):
    arguments = [str(WORKER), str(config_file), str(output), str(poisoned_rank), str(POISONED_STEP),
                 "--per_device_train_batch_size", str(batch_size)]
    run_processes(arguments, processes, port, tmp_path, 180)  # a hang fails here
    ranks = [json.loads((output / f"rank-{rank}.json").read_text()) for rank in range(processes)]
    assert len({entry["parameters"] for entry in ranks}) == 1  # every process holds the same parameters
    return load_file(output / "model" / "model.safetensors"), [entry["skipped_steps"] for entry in ranks]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch.distributed without gloo")
@pytest.mark.parametrize("engine", ["exact", "fused"])
def test_a_poisoned_batch_on_one_rank_skips_the_step_on_both(
    run_processes, tmp_path, data_parallel_config, free_port, engine
):
    config_file = data_parallel_config(engine)
    single, single_skips = run(run_processes, tmp_path, config_file, tmp_path / "single", processes=1, batch_size=8,
                               poisoned_rank=0, port=free_port())
    double, double_skips = run(run_processes, tmp_path, config_file, tmp_path / "double", processes=2, batch_size=4,
                               poisoned_rank=1, port=free_port())
    assert single_skips == [[POISONED_STEP]]
    assert double_skips == [[POISONED_STEP], [POISONED_STEP]]  # rank 0's own batch was finite
    untouched, _ = run(run_processes, tmp_path, config_file, tmp_path / "clean", processes=1, batch_size=8, poisoned_rank=-1,
                       port=free_port())
    assert single.keys() == double.keys()
    for name in single:
        assert torch.allclose(single[name], double[name], atol=1e-5), name
    assert any(not torch.allclose(single[name], untouched[name], atol=1e-5) for name in single)
