"""FSDP2: the Gram matrix formed from each process's gradient shards gives the update of one process with the whole
batch; the trainers refuse the sharding schemes whose gradients they cannot reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors import safe_open
from safetensors.torch import load_file

from paretoalign.trainers.base import refuse_sharded_gradients

WORKER = Path(__file__).resolve().parent / "fsdp_worker.py"


def run(run_processes, tmp_path: Path, model_dir: Path, output: Path, processes: int, weighting: str, variant: str,
        port: int):
    output.mkdir()
    run_processes([str(WORKER), str(model_dir), str(output), weighting, variant], processes, port, tmp_path, 300)
    path = output / "parameters.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    return load_file(path), metadata["sharded"] == "True", json.loads(metadata["alphas"])


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch.distributed without gloo")
@pytest.mark.parametrize("variant", ["lora", "full"])
@pytest.mark.parametrize("weighting", ["raco", "weighted_sum"])
def test_two_fsdp2_processes_equal_one_process_with_the_whole_batch(
    run_processes, tmp_path, tiny_model_dir, free_port, weighting, variant
):
    single, single_sharded, single_alphas = run(run_processes, tmp_path, tiny_model_dir, tmp_path / "single", 1,
                                                weighting, variant, free_port())
    double, double_sharded, double_alphas = run(run_processes, tmp_path, tiny_model_dir, tmp_path / "double", 2,
                                                weighting, variant, free_port())
    assert (single_sharded, double_sharded) == (False, True)
    assert torch.allclose(torch.tensor(single_alphas), torch.tensor(double_alphas), atol=1e-6)
    if weighting == "weighted_sum":
        assert single_alphas == [[0.6, 0.4], [0.6, 0.4]]
    assert single.keys() == double.keys()
    assert (variant == "lora") == all("lora_" in name for name in single)
    for name in single:
        assert torch.allclose(single[name], double[name], atol=1e-5), name


def test_fsdp2_is_accepted_by_a_trainer_that_takes_its_shards_and_the_rest_is_refused():
    refuse_sharded_gradients(DistributedType.FSDP, "per-objective gradients", "use DDP.", fsdp_version=2)
    refuse_sharded_gradients(DistributedType.MULTI_GPU, "per-objective gradients", "use DDP.")
    with pytest.raises(ValueError, match=r"^FSDP1 .* per-objective gradients bypass; use DDP\.$"):
        refuse_sharded_gradients(DistributedType.FSDP, "per-objective gradients", "use DDP.", fsdp_version=1)
    with pytest.raises(ValueError, match=r"^FSDP shards .* per-reward gradients bypass; use DDP\.$"):
        refuse_sharded_gradients(DistributedType.FSDP, "per-reward gradients", "use DDP.")
    with pytest.raises(ValueError, match=r"^DeepSpeed ZeRO .* per-objective gradients bypass; use DDP\.$"):
        refuse_sharded_gradients(DistributedType.DEEPSPEED, "per-objective gradients", "use DDP.", fsdp_version=2)
