"""The fused engine: one backward pass gives the same Gram matrix, alpha and combined gradient as the exact engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

import paretoalign.config
from paretoalign.commands.train import train
from paretoalign.engine import ObjectiveGradients
from paretoalign.fused import (
    FusedObjectiveGradients,
    _add_linear_weight_gradients,
    _Workspace,
    row_rank_factors,
)
from paretoalign.losses import preference_losses
from paretoalign.models import load_trained, sequence_logps
from paretoalign.weighting import get_weighting

NUM_PAIRS = 3
LENGTH = 10


def build_policy(make_tiny_llama, lora: bool, vocab: int, tied: bool = False):
    model = make_tiny_llama(vocab, seed=0)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    if lora:
        torch.manual_seed(1)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
        model = get_peft_model(model, config)
    return model


def padded_batch(vocab: int, seed: int):
    """2N right-padded sequences (pairs i and N + i) with responses after a 3-token prompt, and [N, 3] labels."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (2 * NUM_PAIRS, LENGTH), generator=generator)
    lengths = torch.tensor([10, 7, 9, 6, 10, 8])
    attention_mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    input_ids = torch.where(attention_mask.bool(), input_ids, torch.zeros_like(input_ids))
    response_mask = attention_mask.clone()
    response_mask[:, :3] = 0
    labels = torch.tensor([[1, -1, 0], [-1, 1, 1], [1, 0, -1]])
    return input_ids, attention_mask, response_mask, labels


def preference_step(model, batch, num_objectives: int):
    input_ids, attention_mask, response_mask, labels = batch
    logps = sequence_logps(model, input_ids, attention_mask, response_mask)
    delta = logps[:NUM_PAIRS] - logps[NUM_PAIRS:]
    return preference_losses(delta, labels[:, :num_objectives], beta=0.5), delta


def trainable_grads(model):
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


def run_engine(make_tiny_llama, mode: str, lora: bool, vocab: int, num_objectives: int, tied: bool = False):
    model = build_policy(make_tiny_llama, lora, vocab, tied)
    engine = ObjectiveGradients(model, get_weighting("raco", [1.0 / num_objectives] * num_objectives), mode=mode)
    losses, delta = preference_step(model, padded_batch(vocab, seed=2), num_objectives)
    step = engine.backward(losses, pair_values=delta)
    return step, trainable_grads(model)


def assert_same_update(exact, fused):
    (exact_step, exact_grads), (fused_step, fused_grads) = exact, fused
    assert exact_step.finite and fused_step.finite
    assert torch.allclose(fused_step.gram, exact_step.gram, rtol=1e-4, atol=1e-12)
    assert torch.allclose(fused_step.alpha, exact_step.alpha, atol=1e-5)
    for ours, theirs in zip(fused_grads, exact_grads, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("num_objectives", [1, 2, 3])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_agrees_with_exact_on_a_padded_preference_batch(tiny_tokenizer, make_tiny_llama, lora, num_objectives):
    vocab = len(tiny_tokenizer)
    exact = run_engine(make_tiny_llama, "exact", lora, vocab, num_objectives)
    fused = run_engine(make_tiny_llama, "fused", lora, vocab, num_objectives)
    assert_same_update(exact, fused)
    assert exact[0].gram.diagonal().min() > 0


BF16_TOLERANCE = 2e-2
"""bf16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4%); the two engines round in different orders, so their
Gram matrices, alphas and gradients agree to a few roundings, measured relative to the largest entry."""


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_agrees_with_exact_under_bf16_autocast(tiny_tokenizer, make_tiny_llama, lora):
    def run(mode):
        model = build_policy(make_tiny_llama, lora, len(tiny_tokenizer))
        engine = ObjectiveGradients(model, get_weighting("raco", [0.5, 0.5]), mode=mode)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses, delta = preference_step(model, padded_batch(len(tiny_tokenizer), seed=2), 2)
        assert losses.dtype == torch.float32 and delta.dtype == torch.float32  # log-softmax runs in float32
        return engine.backward(losses, pair_values=delta), trainable_grads(model)

    (exact_step, exact_grads), (fused_step, fused_grads) = run("exact"), run("fused")
    assert exact_step.finite and fused_step.finite

    def relative(ours, theirs):
        return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))

    assert relative(fused_step.gram, exact_step.gram) < BF16_TOLERANCE
    assert relative(fused_step.alpha, exact_step.alpha) < BF16_TOLERANCE
    assert max(relative(ours, theirs) for ours, theirs in zip(fused_grads, exact_grads, strict=True)) < BF16_TOLERANCE


def test_tied_embedding_and_head_collect_both_contributions(tiny_tokenizer, make_tiny_llama):
    vocab = len(tiny_tokenizer)
    assert_same_update(run_engine(make_tiny_llama, "exact", False, vocab, 2, tied=True),
                       run_engine(make_tiny_llama, "fused", False, vocab, 2, tied=True))


class ScaledHead(torch.nn.Module):
    """A module owning a parameter and a submodule: its parameter takes the exact fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([1.5, -0.5]))
        self.linear = torch.nn.Linear(6, 2)

    def forward(self, hidden):
        return self.linear(hidden) * self.scale


def toy_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.LayerNorm(6), torch.nn.Linear(6, 5, bias=False),
        torch.nn.Linear(5, 6), ScaledHead(),
    )


def toy_losses(model, inputs):
    values = model(inputs).sum(dim=(1, 2))
    pair_values = values[:2] - values[2:]
    signs = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    return -torch.nn.functional.logsigmoid(signs * pair_values[:, None]).mean(dim=0), pair_values


def test_linear_with_bias_layer_norm_and_fallback_parameters_agree_with_exact():
    inputs = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(1))
    results = {}
    for mode in ("exact", "fused"):
        model = toy_model()
        engine = ObjectiveGradients(model, get_weighting("upgrad", [0.5, 0.5]), mode=mode)
        if mode == "fused":
            assert engine._fused.uncovered == [model[5].scale]
        losses, pair_values = toy_losses(model, inputs)
        results[mode] = engine.backward(losses, pair_values=pair_values), trainable_grads(model)
    assert_same_update(results["exact"], results["fused"])


def test_fused_accumulates_micro_batches_like_exact(tiny_tokenizer, make_tiny_llama):
    vocab = len(tiny_tokenizer)
    results = {}
    for mode in ("exact", "fused"):
        model = build_policy(make_tiny_llama, True, vocab)
        engine = ObjectiveGradients(model, get_weighting("raco", [0.5, 0.5]), mode=mode)
        for seed in (3, 4):
            losses, delta = preference_step(model, padded_batch(vocab, seed), 2)
            engine.accumulate(losses, scale=0.5, pair_values=delta)
        results[mode] = engine.step(), trainable_grads(model)
    assert_same_update(results["exact"], results["fused"])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_runs_one_backward_pass_over_the_model(tiny_tokenizer, make_tiny_llama, lora):
    vocab = len(tiny_tokenizer)
    passes = {}
    for mode in ("exact", "fused"):
        model = build_policy(make_tiny_llama, lora, vocab)
        counts = {"logits": 0, "first_layer": 0}

        def count_backward(name):
            def hook(module, args, output):
                output.register_hook(lambda grad: counts.__setitem__(name, counts[name] + 1))

            return hook

        base = model.get_base_model() if lora else model
        base.lm_head.register_forward_hook(count_backward("logits"))
        base.model.layers[0].self_attn.q_proj.register_forward_hook(count_backward("first_layer"))
        engine = ObjectiveGradients(model, get_weighting("raco", [1 / 3] * 3), mode=mode)
        losses, delta = preference_step(model, padded_batch(vocab, seed=5), 3)
        engine.backward(losses, pair_values=delta)
        passes[mode] = counts
    assert passes["exact"] == {"logits": 3, "first_layer": 3}
    assert passes["fused"] == {"logits": 1, "first_layer": 1}


def test_fused_hooks_leave_other_backward_passes_alone(tiny_tokenizer, make_tiny_llama):
    vocab = len(tiny_tokenizer)
    batch = padded_batch(vocab, seed=6)
    weights = torch.tensor([0.2, 0.3, 0.5])
    reference = build_policy(make_tiny_llama, True, vocab)
    (preference_step(reference, batch, 3)[0] @ weights).backward()

    model = build_policy(make_tiny_llama, True, vocab)
    ObjectiveGradients(model, get_weighting("raco", [1 / 3] * 3), mode="fused")
    (preference_step(model, batch, 3)[0] @ weights).backward()
    for ours, theirs in zip(trainable_grads(model), trainable_grads(reference), strict=True):
        assert torch.equal(ours, theirs)


def test_trainer_with_the_fused_engine_takes_the_exact_engines_steps(tmp_path, tiny_model_dir, make_preference_config):
    def final_weights(engine):
        (tmp_path / engine).mkdir()
        config = make_preference_config(tmp_path / engine, tiny_model_dir, engine=engine,
                                        per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2,
                                        optim="sgd", learning_rate=0.1, eval_data=None)
        train(config)
        policy, _ = load_trained(Path(config.output_dir) / "model")
        return torch.cat([p.flatten() for p in policy.parameters()])

    assert torch.allclose(final_weights("fused"), final_weights("exact"), atol=1e-6)


def test_config_rejects_fused_with_gradient_checkpointing(tmp_path, tiny_model_dir, make_preference_config):
    with pytest.raises(ValueError, match="turn gradient_checkpointing off or use engine=exact"):
        make_preference_config(tmp_path, tiny_model_dir, engine="fused", gradient_checkpointing=True)


class FunctionalReuse(torch.nn.Module):
    """Uses its Linear's weight a second time outside the Linear's call (as DoRA does with LoRA weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)

    def forward(self, hidden):
        return self.linear(hidden) @ self.linear.weight


def test_a_covered_parameter_used_outside_its_module_is_rejected():
    torch.manual_seed(0)
    model = FunctionalReuse()
    engine = ObjectiveGradients(model, get_weighting("raco", [1.0]), mode="fused")
    values = model(torch.randn(2, 3)).sum(dim=1)
    with pytest.raises(ValueError, match="linear.weight enters the forward outside"):
        engine.backward(values.sum().reshape(1), pair_values=values)


class LinearWithTwoOutputs(torch.nn.Linear):
    def forward(self, hidden):
        return super().forward(hidden), hidden


def test_fused_rejects_bad_inputs():
    with pytest.raises(ValueError, match="needs the model"):
        ObjectiveGradients(list(torch.nn.Linear(2, 1).parameters()), get_weighting("raco", [1.0]), mode="fused")
    model = torch.nn.Linear(2, 1)
    engine = ObjectiveGradients(model, get_weighting("raco", [1.0]), mode="fused")
    values = model(torch.ones(2, 2)).squeeze(1)
    with pytest.raises(ValueError, match="needs pair_values"):
        engine.backward(values.sum().reshape(1))
    with pytest.raises(ValueError, match="weight other than through pair_values"):
        engine.backward((values.sum() + model.weight.sum()).reshape(1), pair_values=values)
    pair_values = model(torch.ones(3, 2)).squeeze(1)[:2]
    with pytest.raises(ValueError, match="3 rows, not a multiple of the 2 pairs"):
        engine.backward(pair_values.sum().reshape(1), pair_values=pair_values)
    two_outputs = LinearWithTwoOutputs(2, 1)
    ObjectiveGradients(two_outputs, get_weighting("raco", [1.0]), mode="fused")
    with pytest.raises(TypeError, match="returned a tuple, not one tensor"):
        two_outputs(torch.ones(2, 2))
    checkpointed = torch.nn.Linear(2, 1)
    checkpointed.gradient_checkpointing = True
    with pytest.raises(ValueError, match="gradient checkpointing"):
        ObjectiveGradients(checkpointed, get_weighting("raco", [1.0]), mode="fused")


@pytest.fixture()
def final_weights(tmp_path, tiny_model_dir, make_preference_config):
    """``final_weights(engine, max_steps)``: all parameters after a short SGD run of the preference trainer with
    ``engine``, flattened."""

    def run(engine: str, max_steps: int) -> torch.Tensor:
        (tmp_path / engine).mkdir()
        config = make_preference_config(tmp_path / engine, tiny_model_dir, engine=engine, max_steps=max_steps,
                                        optim="sgd", learning_rate=0.1, eval_data=None)
        train(config)
        policy, _ = load_trained(Path(config.output_dir) / "model")
        return torch.cat([p.flatten() for p in policy.parameters()])

    return run


def engine_choices(caplog) -> list[str]:
    """The "engine auto: ..." log lines."""
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("engine auto")]


def test_auto_engine_chooses_fused_logs_it_once_and_matches_exact(final_weights, caplog):
    with caplog.at_level("INFO", logger="paretoalign"):
        auto = final_weights("auto", max_steps=3)
    assert engine_choices(caplog) == ["engine auto: fused (one backward pass gives the per-objective gradients)"]
    assert torch.allclose(auto, final_weights("exact", max_steps=3), atol=1e-6)


def test_auto_engine_falls_back_to_exact_where_the_hooks_do_not_apply(final_weights, monkeypatch, caplog):
    """A model that reads a Linear's weight outside the Linear's call: the first micro-batch shows it, exact takes
    over for the whole run, and the run equals an exact run."""
    load_policy = paretoalign.config.load_policy

    def load_policy_reusing_a_weight(*args, **kwargs):
        model, tokenizer = load_policy(*args, **kwargs)
        mlp = model.model.layers[0].mlp
        mlp.register_forward_hook(lambda module, inputs, output: output + 0.0 * module.down_proj.weight.sum())
        return model, tokenizer

    monkeypatch.setattr(paretoalign.config, "load_policy", load_policy_reusing_a_weight)

    with caplog.at_level("INFO", logger="paretoalign"):
        auto = final_weights("auto", max_steps=2)
    choices = engine_choices(caplog)
    assert len(choices) == 1 and choices[0].startswith("engine auto: exact (the fused engine does not apply")
    assert "model.layers.0.mlp.down_proj.weight enters the forward outside the call" in choices[0]
    assert torch.equal(auto, final_weights("exact", max_steps=2))
    with pytest.raises(ValueError, match="enters the forward outside"):
        final_weights("fused", max_steps=2)


def test_fused_agrees_with_exact_on_a_dora_adapter(tiny_tokenizer, make_tiny_llama):
    """PEFT's DoRA detaches the norm of ``W + BA``, so its adapter weights enter only through their layers."""

    def run(mode):
        model = make_tiny_llama(len(tiny_tokenizer), seed=0)
        torch.manual_seed(1)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                            use_dora=True)
        model = get_peft_model(model, config)
        engine = ObjectiveGradients(model, get_weighting("raco", [0.5, 0.5]), mode=mode)
        losses, delta = preference_step(model, padded_batch(len(tiny_tokenizer), seed=2), 2)
        return engine.backward(losses, pair_values=delta), trainable_grads(model)

    assert_same_update(run("exact"), run("fused"))


def test_auto_engine_is_exact_with_gradient_checkpointing(tmp_path, tiny_model_dir, make_preference_config, caplog):
    config = make_preference_config(tmp_path, tiny_model_dir, engine="auto", gradient_checkpointing=True,
                                    max_steps=1, eval_data=None)
    with caplog.at_level("INFO", logger="paretoalign"):
        train(config)
    assert any("engine auto: exact (gradient checkpointing" in record.getMessage() for record in caplog.records)


# --- row_rank_factors and per-token values ----------------------------------------------------------------------


def reconstructed(value_weights, row_coefficients):
    """``sum_r U_rnt A_rnk``: the [N, T, K] coefficients the factors stand for."""
    return torch.einsum("rnt,rnk->ntk", value_weights, row_coefficients)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 7, 3), (5, 2, 4), (1, 1, 1)], ids=["tall", "wide", "single"])
def test_row_rank_factors_reconstruct_random_coefficients(shape, dtype):
    rows, tokens, num_objectives = shape
    coefficients = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    value_weights, row_coefficients = row_rank_factors(coefficients)
    rank = min(tokens, num_objectives)  # random rows have full rank
    assert value_weights.shape == (rank, rows, tokens) and row_coefficients.shape == (rank, rows, num_objectives)
    assert value_weights.dtype == row_coefficients.dtype == dtype
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(reconstructed(value_weights, row_coefficients), coefficients, rtol=0, atol=tolerance)


def test_row_rank_factors_give_one_pass_for_outer_products():
    """GRPO on-policy: ``C_ntk = -Adv_nk m_nt / Z``, one rank per row; with a KL term shared by the rewards, two."""
    generator = torch.Generator().manual_seed(1)
    advantages = torch.randn(6, 3, generator=generator)
    token_weights = torch.rand(6, 9, generator=generator)
    token_weights[2, 5:] = 0.0  # a padded completion
    coefficients = -advantages[:, None, :] * token_weights[:, :, None] / 17.0
    value_weights, row_coefficients = row_rank_factors(coefficients)
    assert value_weights.shape == (1, 6, 9) and row_coefficients.shape == (1, 6, 3)
    torch.testing.assert_close(reconstructed(value_weights, row_coefficients), coefficients, rtol=0, atol=1e-7)
    # Row n's single pass weights the tokens by m_nt (up to a factor) and the rewards by Adv_nk (up to its inverse).
    torch.testing.assert_close(value_weights[0, 2, 5:], torch.zeros(4), rtol=0, atol=0)
    cosine = torch.nn.functional.cosine_similarity(row_coefficients[0], advantages, dim=1)
    torch.testing.assert_close(cosine.abs(), torch.ones(6), rtol=0, atol=1e-6)

    kl = 0.04 * torch.randn(6, 9, generator=generator) * token_weights
    with_kl = coefficients + kl[:, :, None]
    value_weights, row_coefficients = row_rank_factors(with_kl)
    assert len(value_weights) == 2
    torch.testing.assert_close(reconstructed(value_weights, row_coefficients), with_kl, rtol=0, atol=1e-7)


def test_row_rank_factors_of_zero_rows():
    generator = torch.Generator().manual_seed(2)
    assert [len(factor) for factor in row_rank_factors(torch.zeros(3, 4, 2))] == [0, 0]
    assert [factor.shape for factor in row_rank_factors(torch.zeros(0, 4, 2))] == [(0, 0, 4), (0, 0, 2)]
    # R is the largest rank of a row; a zero row gets zero weights in every pass.
    coefficients = torch.randn(3, 4, 2, generator=generator)
    coefficients[1] = 0.0
    coefficients[2] = torch.outer(torch.randn(4, generator=generator), torch.randn(2, generator=generator))
    value_weights, row_coefficients = row_rank_factors(coefficients)
    assert len(value_weights) == 2
    torch.testing.assert_close(reconstructed(value_weights, row_coefficients), coefficients, rtol=0, atol=1e-6)
    assert torch.equal(value_weights[:, 1], torch.zeros(2, 4))
    torch.testing.assert_close(value_weights[1, 2], torch.zeros(4), rtol=0, atol=1e-6)


class TinyTokenModel(torch.nn.Module):
    """Embedding, two Linear layers around a causal running sum (position s feeds every later token of its row) and
    a LayerNorm, with a temperature owned by the model itself (a module with children: the exact fallback). Counts
    the backward passes through the running sum."""

    def __init__(self, vocab: int = 11, hidden: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.first = torch.nn.Linear(hidden, hidden)
        self.norm = torch.nn.LayerNorm(hidden)
        self.second = torch.nn.Linear(hidden, vocab, bias=False)
        self.temperature = torch.nn.Parameter(torch.tensor(1.3))
        self.backward_passes = 0

    def _count(self, grad):
        self.backward_passes += 1

    def forward(self, ids):
        hidden = torch.tanh(self.first(self.embed(ids))).cumsum(dim=1)
        if hidden.requires_grad:
            hidden.register_hook(self._count)
        return self.second(self.norm(hidden)) * self.temperature


def token_values(model, ids, targets, paired: bool):
    """``[N, T]`` per-token values: the targets' log-probabilities, or with `paired` the difference of rows n and
    N + n of a forward over 2N rows."""
    logps = torch.log_softmax(model(ids), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    if not paired:
        return logps
    rows = len(logps) // 2
    return logps[:rows] - logps[rows:]


def token_losses(values, kind: str, num_objectives: int):
    """K losses of the [N, T] values: a generic smooth function (coefficients of full rank) or GRPO's on-policy
    policy-gradient loss ``-sum_nt Adv_nk m_nt exp(v - sg(v)) / Z`` (rank 1)."""
    generator = torch.Generator().manual_seed(3)
    rows, tokens = values.shape
    if kind == "generic":
        weights = torch.randn(num_objectives, rows, tokens, generator=generator)
        return torch.stack([torch.nn.functional.softplus(w * values).mean() for w in weights])
    advantages = torch.randn(rows, num_objectives, generator=generator)
    mask = torch.ones(rows, tokens)
    mask[1, 3:] = 0.0
    ratio = torch.exp(values - values.detach())
    return torch.stack([-(advantages[:, k, None] * ratio * mask).sum() / mask.sum() for k in range(num_objectives)])


@pytest.mark.parametrize("num_objectives", [1, 3])
@pytest.mark.parametrize("kind", ["generic", "grpo"])
@pytest.mark.parametrize("paired", [False, True], ids=["rows", "paired-rows"])
def test_accumulate_with_per_token_values_equals_autograd_per_objective(num_objectives, kind, paired):
    generator = torch.Generator().manual_seed(4)
    rows, tokens = 4, 5
    ids = torch.randint(0, 11, (2 * rows if paired else rows, tokens), generator=generator)
    targets = torch.randint(0, 11, ids.shape, generator=generator)
    model = TinyTokenModel()
    params = list(model.parameters())

    losses = token_losses(token_values(model, ids, targets, paired), kind, num_objectives)
    expected = [torch.autograd.grad(losses[k], params, retain_graph=True) for k in range(num_objectives)]

    fused = FusedObjectiveGradients(model, params)
    assert fused.uncovered == [model.temperature]
    buffers = [[torch.ones_like(param) for param in params] for _ in range(num_objectives)]
    model.backward_passes = 0
    values = token_values(model, ids, targets, paired)
    fused.accumulate(token_losses(values, kind, num_objectives), values, buffers, scale=0.5)

    for objective, gradients in zip(buffers, expected, strict=True):
        for buffer, gradient in zip(objective, gradients, strict=True):
            torch.testing.assert_close(buffer, 1.0 + 0.5 * gradient, rtol=1e-5, atol=1e-6)
    # One pass per rank of the rows' T x K coefficients (the fallback temperature's K passes stop above the sum).
    assert model.backward_passes == (min(tokens, num_objectives) if kind == "generic" else 1)


@pytest.mark.parametrize(
    "block_elements", [1, 60, 90, 1 << 24], ids=["one-feature", "60-elements", "90-elements", "whole-layer"]
)
@pytest.mark.parametrize(
    ("repeats", "tokens", "num_objectives"),
    [(2, 3, 4), (1, 3, 2), (3, 1, 3), (2, 3, 1)],
    ids=["pairs", "one-row-per-group", "one-token-rows", "one-objective"],
)
@pytest.mark.parametrize(("in_features", "out_features"), [(6, 7), (9, 4)], ids=["wide", "narrow"])
def test_linear_weight_gradients_equal_the_row_weighted_sum_of_products(
    block_elements, repeats, tokens, num_objectives, in_features, out_features
):
    """Both schemes (per-group products, rows weighted first) and every block of output features give
    ``targets[k] += sum_b C[b mod N, k] sum_t dy_bt x_bt^T``, with the workspace reused across calls."""
    generator = torch.Generator().manual_seed(5)
    groups = 5
    workspace = _Workspace()
    expected = [
        torch.randn(out_features, in_features, generator=generator, dtype=torch.float64) for _ in range(num_objectives)
    ]
    targets = [start.float() for start in expected]
    for _ in range(2):
        x = torch.randn(repeats * groups, tokens, in_features, generator=generator)
        dy = torch.randn(repeats * groups, tokens, out_features, generator=generator)
        coefficients = torch.randn(groups, num_objectives, generator=generator)
        _add_linear_weight_gradients(targets, x, dy, coefficients, workspace, block_elements)
        row_coefficients = coefficients.double().repeat(repeats, 1)
        for k, target in enumerate(expected):
            target += torch.einsum("b,bto,bti->oi", row_coefficients[:, k], dy.double(), x.double())
    for target, reference in zip(targets, expected, strict=True):
        torch.testing.assert_close(target.double(), reference, rtol=1e-5, atol=1e-5)


def test_linear_weight_gradients_accept_strided_inputs_and_targets():
    """Non-contiguous x, dy (a transposed view) and targets (columns of a wider buffer) give the same sums."""
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(3, 6, 4, generator=generator).transpose(1, 2)
    dy = torch.randn(3, 5, 4, generator=generator).transpose(1, 2)
    coefficients = torch.randn(3, 2, generator=generator)
    wide = torch.zeros(2, 5, 12)
    targets = [wide[0, :, ::2], wide[1, :, ::2]]
    _add_linear_weight_gradients(targets, x, dy, coefficients, _Workspace(), block_elements=3 * 6 * 2)
    for k, target in enumerate(targets):
        expected = torch.einsum("b,bto,bti->oi", coefficients[:, k], dy, x)
        torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(wide[:, :, 1::2], torch.zeros(2, 5, 6))


def test_workspace_hands_out_the_same_memory_until_it_needs_more():
    workspace, like = _Workspace(), torch.zeros(1)
    first = workspace.take("products", (2, 3), like)
    assert workspace.take("products", (3, 2), like).data_ptr() == first.data_ptr()
    assert workspace.take("combined", (2, 3), like).data_ptr() != first.data_ptr()
    larger = workspace.take("products", (4, 4), like)
    assert larger.shape == (4, 4) and larger.is_contiguous()
    assert workspace.take("products", (2, 3), like).data_ptr() == larger.data_ptr()
    assert workspace.take("products", (2, 3), torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
