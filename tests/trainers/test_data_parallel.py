"""Several processes must not change the maths: per-objective gradients are all-reduced before the Gram matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paretoalign.engine import ObjectiveGradients
from paretoalign.weighting import get_weighting


def test_gram_of_the_global_gradient_is_not_the_mean_of_local_grams():
    # Two processes, two objectives. Process 0: g = (1, 0), (0, 1); process 1: g = (1, 0), (-1, 1).
    # Global (mean) gradients: (1, 0) and (-1/2, 1) -> G = [[1, -1/2], [-1/2, 5/4]].
    # Mean of the local Grams: [[1, -1/2], [-1/2, 3/2]], a different matrix and a different RACO alpha.
    local = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [-1.0, 1.0]])]
    global_jacobian = sum(local) / 2
    global_gram = (global_jacobian @ global_jacobian.T).double()
    naive_gram = sum((j @ j.T).double() for j in local) / 2
    raco = get_weighting("raco", [0.5, 0.5])
    assert not torch.allclose(raco(global_gram), raco(naive_gram), atol=1e-3)

    # The engine's reduce hook (here: replace each local gradient by the global mean) yields the global Gram.
    theta = torch.nn.Parameter(torch.zeros(2))
    calls: list[int] = []

    def all_reduce_mean(gradient: torch.Tensor) -> None:
        gradient.copy_(global_jacobian[len(calls)])
        calls.append(1)

    engine = ObjectiveGradients([theta], raco, reduce_gradients=all_reduce_mean)
    step = engine.backward(local[0] @ theta)
    assert torch.allclose(step.gram, global_gram)
    assert torch.allclose(step.alpha, raco(global_gram))


def run_training(run_processes, tmp_path: Path, config_file: Path, output: Path, processes: int, batch_size: int,
                 port: int):
    # On CPU, accelerate's own multi-CPU mode needs MPI, while torchrun + gloo needs nothing more.
    arguments = ["-m", "paretoalign.cli", "train", "--config", str(config_file), "--output_dir", str(output),
                 "--per_device_train_batch_size", str(batch_size)]
    run_processes(arguments, processes, port, tmp_path, 600)
    return load_file(output / "model" / "model.safetensors")


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch.distributed without gloo")
@pytest.mark.parametrize("engine", ["exact", "fused"])
def test_two_processes_equal_one_process_with_the_same_global_batch(
    run_processes, tmp_path, data_parallel_config, free_port, engine
):
    config_file = data_parallel_config(engine)
    single = run_training(run_processes, tmp_path, config_file, tmp_path / "single", processes=1, batch_size=8, port=free_port())
    double = run_training(run_processes, tmp_path, config_file, tmp_path / "double", processes=2, batch_size=4, port=free_port())
    assert single.keys() == double.keys()
    for name in single:
        assert torch.allclose(single[name], double[name], atol=1e-5), name
