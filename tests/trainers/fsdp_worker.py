"""Two optimizer steps of multi-objective preference training with :mod:`paretoalign.sharding`, for
``test_fsdp.py``: 1 process with the whole batch, or 2 under torchrun with FSDP2 (``fully_shard``) and half each.

Usage: ``python fsdp_worker.py MODEL_DIR OUTPUT WEIGHTING lora|full``. Batch: 8 pairs of random 16-token sequences
(seeded; the last 12 tokens are the response), labels +1 / -1 for K = 2 objectives with the same number of each
sign in either half, a fixed reference log-probability per sequence; process p takes pairs 4p .. 4p + 3. Each step:
the K preference losses, one backward pass per objective (:func:`~paretoalign.sharding.backward_local_gradients`),
the Gram matrix from the local shards (:func:`~paretoalign.sharding.gram_from_shards`, all-reduced over the
processes), the weighting's alpha (user weights 0.6 / 0.4), ``sum_k alpha_k g_k`` into ``.grad``, AdamW. The main
process writes ``OUTPUT/parameters.safetensors`` (every trainable parameter in full; metadata: ``sharded``, whether
they were FSDP2 ``DTensor`` shards, and ``alphas``, the alpha of each step as JSON).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from paretoalign.losses import preference_losses
from paretoalign.models import apply_lora, sequence_logps
from paretoalign.sharding import (
    add_local_gradients,
    backward_local_gradients,
    combine_shards,
    gram_from_shards,
    sum_over_shard_group,
)
from paretoalign.weighting import get_weighting

PAIRS, LENGTH, PROMPT = 8, 16, 4
LABELS = [[1, 1], [1, -1], [-1, 1], [-1, -1]] * 2


def batch(vocab_size: int, rank: int, world_size: int):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (2 * PAIRS, LENGTH), generator=generator)
    reference = torch.randn(2 * PAIRS, generator=generator) - LENGTH
    mine = torch.arange(PAIRS).reshape(world_size, -1)[rank]
    rows = torch.cat([mine, mine + PAIRS])
    attention_mask = torch.ones(len(rows), LENGTH, dtype=torch.long)
    response_mask = attention_mask.clone()
    response_mask[:, :PROMPT] = 0
    return input_ids[rows], attention_mask, response_mask, reference[rows], torch.tensor(LABELS)[mine]


def main() -> int:
    model_dir, output, weighting_name, variant = sys.argv[1:]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:
        dist.init_process_group("gloo")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if variant == "lora":
        torch.manual_seed(1)
        model = apply_lora(model, r=4, lora_alpha=8)
        for name, param in model.named_parameters():  # a fresh adapter's B is zero: start from a non-zero one
            if "lora_B" in name:
                param.data.normal_(std=0.1, generator=torch.Generator().manual_seed(len(name)))
    if world_size > 1:
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                fully_shard(module)
        fully_shard(model)
    params = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    weighting = get_weighting(weighting_name, [0.6, 0.4])
    input_ids, attention_mask, response_mask, reference, labels = batch(model.config.vocab_size, rank, world_size)
    reduce = sum_over_shard_group(params)
    alphas = []
    for _ in range(2):
        logratios = sequence_logps(model, input_ids, attention_mask, response_mask) - reference
        delta = logratios[: len(labels)] - logratios[len(labels):]
        shards = backward_local_gradients(preference_losses(delta, labels, beta=0.2), params)
        alpha = weighting(gram_from_shards(shards, reduce))
        add_local_gradients(params, combine_shards(shards, alpha))
        optimizer.step()
        optimizer.zero_grad()
        alphas.append(alpha.tolist())
    parameters = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            full = param.full_tensor() if isinstance(param, DTensor) else param  # collective on every process
            parameters[name] = full.detach().contiguous()
    if rank == 0:
        sharded = str(any(isinstance(param, DTensor) for param in params))
        metadata = {"sharded": sharded, "alphas": json.dumps(alphas)}
        save_file(parameters, str(Path(output) / "parameters.safetensors"), metadata=metadata)
    if world_size > 1:
        dist.barrier()  # no process tears the group down while another still writes or communicates
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without interpreter finalisation: gloo's worker threads can still hold FSDP2's finished collective work
    # (tensors with Python references) then, and destroying it while the interpreter is torn down aborts the process
    # now and then ("terminate called without an active exception") after everything above has succeeded.
    os._exit(status)
