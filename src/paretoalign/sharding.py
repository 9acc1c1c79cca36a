r"""The Gram matrix and the combined gradient when every process holds only a shard of each gradient (FSDP2).

Under fully sharded data parallelism (torch FSDP2, ``torch.distributed.fsdp.fully_shard``) every parameter is a
``DTensor`` split across the P processes of its device mesh, and a backward pass leaves in ``.grad`` this process's
shard of the gradient, already averaged over the processes' batches (a reduce-scatter). The K objectives' gradients
``g_k`` are split the same way, ``g_k = concat_p g_k^(p)``, so the Gram matrix is a sum over the shards:

    G_kl = <g_k, g_l> = sum_p sum_{s in shards of process p} <g_k^(s), g_l^(s)>

Each process forms its partial K x K sum, and one all-reduce (sum) of those K^2 numbers gives every process the Gram
of the global gradients (:func:`gram_from_shards`); no process ever holds a whole gradient. The weighting's
``alpha`` is then the same on every process, and each writes its own shard of ``d = sum_k alpha_k g_k``
(:func:`combine_shards`) into ``.grad`` (:func:`add_local_gradients`): the optimizer steps the sharded parameters
as usual. Multi-objective weighting of the Gram matrix: Quinton & Rey 2024 (arXiv 2406.16232); FSDP2:
Zhao et al. 2023, "PyTorch FSDP" (arXiv 2304.11277).

The same functions serve unsharded training: one shard per parameter and no ``reduce`` give
``G_kl = sum_params <g_k, g_l>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

__all__ = [
    "GRAM_CHUNK_ELEMENTS",
    "GRAM_CHUNK_ELEMENTS_GPU",
    "add_local_gradients",
    "backward_local_gradients",
    "combine_shards",
    "gram_from_shards",
    "is_sharded",
    "local_shard",
    "sum_over_shard_group",
]


GRAM_CHUNK_ELEMENTS = 1 << 16
"""Elements per objective of the float64 chunks the Gram matrix is summed over on the CPU (they stay in cache)."""

GRAM_CHUNK_ELEMENTS_GPU = 1 << 24
"""The same on a GPU, where fewer, larger products cost fewer kernel launches."""


def is_sharded(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (an FSDP2 parameter or gradient) rather than a plain tensor."""
    return isinstance(tensor, DTensor)


def local_shard(tensor: Tensor) -> Tensor:
    """This process's part of ``tensor``: the local tensor of a ``DTensor``, the tensor itself otherwise."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def gram_from_shards(shards: Sequence[Sequence[Tensor]], reduce: Callable[[Tensor], None] | None = None) -> Tensor:
    r"""The K x K Gram matrix ``G_kl = reduce(sum_s <g_k^(s), g_l^(s)>)`` (float64, on the CPU).

    ``shards[k][s]`` is shard s of objective k's gradient (every objective has its shards in the same order and of
    the same shapes; shard sizes may differ from one another). ``reduce`` is an in-place sum across the processes
    that hold the other shards (:func:`sum_over_shard_group`); None when this process holds every shard.
    """
    num_objectives = len(shards)
    if num_objectives == 0:
        raise ValueError("no per-objective gradients: the Gram matrix needs at least one objective.")
    num_shards = len(shards[0])
    if any(len(objective) != num_shards for objective in shards):
        raise ValueError(f"every objective needs {num_shards} gradient shards, got {[len(o) for o in shards]}.")
    device = shards[0][0].device if num_shards else torch.device("cpu")
    gram = torch.zeros(num_objectives, num_objectives, dtype=torch.float64, device=device)
    # float64 dot products over chunks of a reused buffer: no float64 copy of whole gradients is made.
    chunk_elements = GRAM_CHUNK_ELEMENTS if device.type == "cpu" else GRAM_CHUNK_ELEMENTS_GPU
    chunk = torch.empty(num_objectives, chunk_elements, dtype=torch.float64, device=device)
    for index in range(num_shards):
        flats = [objective[index].reshape(-1) for objective in shards]
        size = flats[0].numel()
        for start in range(0, size, chunk_elements):
            block = chunk[:, : min(size, start + chunk_elements) - start]
            for row, flat in zip(block, flats):
                row.copy_(flat[start : start + block.shape[1]])
            gram.addmm_(block, block.T)
    if reduce is not None:
        reduce(gram)
    return gram.cpu()


def combine_shards(shards: Sequence[Sequence[Tensor]], alpha: Tensor) -> list[Tensor]:
    r"""Shard s of the combined gradient, ``d^(s) = sum_k alpha_k g_k^(s)``, for every shard s (alpha [K])."""
    if alpha.numel() != len(shards):
        raise ValueError(f"alpha has {alpha.numel()} entries for {len(shards)} objectives.")
    coefficients = [float(value) for value in alpha.flatten()]
    combined = []
    for index in range(len(shards[0])):
        total = shards[0][index] * coefficients[0]
        for coefficient, objective in zip(coefficients[1:], shards[1:]):
            total.add_(objective[index], alpha=coefficient)
        combined.append(total)
    return combined


def sum_over_shard_group(params: Sequence[Tensor]) -> Callable[[Tensor], None] | None:
    """The ``reduce`` of :func:`gram_from_shards` for these parameters: an in-place all-reduce (sum) over the
    processes of their device mesh, run on the mesh's device (gloo on the CPU, NCCL on the GPU); None when no
    parameter is sharded.

    Raises:
        ValueError: the sharded parameters do not share one one-dimensional device mesh (HSDP, or tensor and data
            parallelism combined), where the shards of one gradient do not lie in one process group.
    """
    meshes = {param.device_mesh for param in params if isinstance(param, DTensor)}
    if not meshes:
        return None
    if len(meshes) > 1 or next(iter(meshes)).ndim != 1:
        raise ValueError(
            "the sharded parameters must share one one-dimensional device mesh (plain FSDP2 fully_shard); got "
            f"{len(meshes)} mesh(es) of dimensions {sorted(mesh.ndim for mesh in meshes)}."
        )
    mesh = next(iter(meshes))
    group, device = mesh.get_group(), torch.device(mesh.device_type)

    def all_reduce_sum(tensor: Tensor) -> None:
        on_device = tensor.to(device)
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM, group=group)
        tensor.copy_(on_device)

    return all_reduce_sum


def backward_local_gradients(losses: Tensor, params: Sequence[Tensor]) -> list[list[Tensor] | None]:
    """One backward pass per loss through the sharding framework's own hooks; for each objective k, this process's
    shards of ``grad L_k`` (zeros for a parameter the loss does not reach), or None when ``L_k`` does not depend on
    the parameters.

    ``torch.autograd.grad`` cannot differentiate FSDP2's sharded parameters (the forward pass used their gathered,
    unsharded copies); ``backward()`` runs FSDP2's reduce-scatter and leaves the shard in ``.grad``, which is
    copied aside before the next objective's pass. The ``.grad`` the parameters had before is restored.
    """
    kept = [param.grad for param in params]
    for param in params:
        param.grad = None
    per_objective: list[list[Tensor] | None] = []
    try:
        for k in range(losses.numel()):
            if not losses[k].requires_grad:
                per_objective.append(None)
                continue
            losses[k].backward(retain_graph=k < losses.numel() - 1)
            per_objective.append([
                torch.zeros_like(local_shard(param)) if param.grad is None else local_shard(param.grad).clone()
                for param in params
            ])
            for param in params:
                param.grad = None
    finally:
        for param, grad in zip(params, kept):
            param.grad = grad
    return per_objective


def add_local_gradients(params: Sequence[Tensor], local_gradients: Sequence[Tensor]) -> None:
    """Add each local gradient to its parameter's ``.grad``: as a ``DTensor`` laid out like the parameter when the
    parameter is sharded, as a plain tensor otherwise."""
    for param, local in zip(params, local_gradients):
        if isinstance(param, DTensor):
            local = DTensor.from_local(
                local, param.device_mesh, param.placements, run_check=False, shape=param.shape, stride=param.stride()
            )
        param.grad = local if param.grad is None else param.grad + local
