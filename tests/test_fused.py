"""The fused engine: one backward pass gives the same Gram matrix, alpha and combined gradient as the exact engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

import paretoalign.config
from paretoalign.commands.train import train
from paretoalign.engine import ObjectiveGradients
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
