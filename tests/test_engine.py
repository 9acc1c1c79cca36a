"""The objective-gradient engine: exact == autogram, scalarisation, accumulation, non-finite safety."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from paretoalign.engine import ObjectiveGradients
from paretoalign.weighting import get_weighting


def three_objective_losses(model, input_ids):
    logits = model(input_ids=input_ids).logits
    logps = torch.log_softmax(logits.float(), -1)[:, :-1].gather(-1, input_ids[:, 1:, None]).squeeze(-1).sum(1)
    return torch.stack([-logps[:2].mean(), logps[2:].mean(), logps[0] - logps[3]]) * 0.01


def build(make_tiny_llama, lora: bool, vocab: int):
    model = make_tiny_llama(vocab, seed=0)
    if lora:
        torch.manual_seed(1)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(model, config)
    return model


def trainable_vector(model):
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


def one_step(make_tiny_llama, mode: str, lora: bool, vocab: int, weighting_name: str = "raco"):
    model = build(make_tiny_llama, lora, vocab)
    engine = ObjectiveGradients(model, get_weighting(weighting_name, [0.2, 0.3, 0.5]), mode=mode)
    input_ids = torch.randint(0, vocab, (4, 12), generator=torch.Generator().manual_seed(2))
    step = engine.backward(three_objective_losses(model, input_ids))
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    return step, trainable_vector(model)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("weighting_name", ["raco", "upgrad"])
def test_exact_and_autogram_agree(tiny_tokenizer, make_tiny_llama, lora, weighting_name):
    exact, params_exact = one_step(make_tiny_llama, "exact", lora, len(tiny_tokenizer), weighting_name)
    autogram, params_autogram = one_step(make_tiny_llama, "autogram", lora, len(tiny_tokenizer), weighting_name)
    assert exact.finite and autogram.finite
    assert torch.allclose(exact.gram, autogram.gram, rtol=1e-4, atol=1e-10)
    assert torch.allclose(exact.alpha, autogram.alpha, atol=1e-5)
    assert torch.allclose(params_exact, params_autogram, atol=1e-5)
    # The step really moved the parameters.
    assert not torch.allclose(params_exact, trainable_vector(build(make_tiny_llama, lora, len(tiny_tokenizer))))


@pytest.mark.parametrize("mode", ["exact", "autogram"])
def test_weighted_sum_gives_the_gradient_of_the_scalarised_loss(tiny_tokenizer, make_tiny_llama, mode):
    vocab = len(tiny_tokenizer)
    input_ids = torch.randint(0, vocab, (4, 12), generator=torch.Generator().manual_seed(3))
    weights = torch.tensor([0.2, 0.3, 0.5])

    reference = build(make_tiny_llama, True, vocab)
    (three_objective_losses(reference, input_ids) @ weights).backward()

    model = build(make_tiny_llama, True, vocab)
    engine = ObjectiveGradients(model, get_weighting("weighted_sum", weights), mode=mode)
    step = engine.backward(three_objective_losses(model, input_ids))
    assert step.alpha.tolist() == pytest.approx(weights.tolist())
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        if ours.requires_grad:
            assert torch.allclose(ours.grad, theirs.grad, atol=1e-7)


def test_gram_diagonal_and_cosines_describe_the_gradients():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    engine = ObjectiveGradients([w], get_weighting("weighted_sum", [0.5, 0.5]))
    # L1 = 3 w0 -> g1 = (3, 0); L2 = -4 w0 + 4 w1 -> g2 = (-4, 4).
    step = engine.backward(torch.stack([3 * w[0], -4 * w[0] + 4 * w[1]]))
    assert step.gram.tolist() == [[9.0, -12.0], [-12.0, 32.0]]
    assert step.gradient_norms.tolist() == pytest.approx([3.0, 32**0.5])
    assert step.cosines[0, 1].item() == pytest.approx(-12 / (3 * 32**0.5))
    assert w.grad.tolist() == pytest.approx([-0.5, 2.0])


def test_accumulated_micro_batches_form_the_gram_of_the_whole_batch():
    # Per-pair losses of a linear model: the mean over 4 pairs equals the average of two 2-pair means.
    torch.manual_seed(0)
    features = torch.randn(4, 3)
    signs = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])

    def losses(theta, rows):
        margins = features[rows] @ theta
        return -torch.nn.functional.logsigmoid(signs[rows] * margins[:, None]).mean(dim=0)

    whole = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
    step_whole = ObjectiveGradients([whole], get_weighting("raco", [0.7, 0.3])).backward(losses(whole, slice(0, 4)))

    split = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
    engine = ObjectiveGradients([split], get_weighting("raco", [0.7, 0.3]))
    engine.accumulate(losses(split, slice(0, 2)), scale=0.5)
    engine.accumulate(losses(split, slice(2, 4)), scale=0.5)
    step_split = engine.step()
    assert torch.allclose(step_split.gram, step_whole.gram, atol=1e-12)
    assert torch.allclose(split.grad, whole.grad, atol=1e-7)


def test_reduce_hook_runs_before_the_gram():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    engine = ObjectiveGradients([w], get_weighting("weighted_sum", [0.5, 0.5]), reduce_gradients=lambda g: g.mul_(2))
    step = engine.backward(torch.stack([3 * w[0], 4 * w[1]]))
    assert step.gram.tolist() == [[36.0, 0.0], [0.0, 64.0]]
    assert w.grad.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("mode", ["exact", "autogram"])
def test_non_finite_loss_leaves_grad_untouched(mode):
    model = torch.nn.Linear(2, 1)
    engine = ObjectiveGradients(model, get_weighting("raco", [0.5, 0.5]), mode=mode)
    output = model(torch.tensor([[1.0, 2.0]])).squeeze()
    step = engine.backward(torch.stack([output * float("nan"), output]))
    assert step.finite is False and torch.isnan(step.alpha).all()
    assert all(p.grad is None for p in model.parameters())


def test_configuration_errors_are_named():
    with pytest.raises(ValueError, match="unknown engine mode"):
        ObjectiveGradients(torch.nn.Linear(2, 1), get_weighting("raco", [1.0]), mode="fast")
    with pytest.raises(ValueError, match="needs the model"):
        ObjectiveGradients(list(torch.nn.Linear(2, 1).parameters()), get_weighting("raco", [1.0]), mode="autogram")
    frozen = torch.nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ObjectiveGradients(frozen, get_weighting("raco", [1.0]))
    engine = ObjectiveGradients(torch.nn.Linear(2, 1), get_weighting("raco", [1.0]))
    with pytest.raises(RuntimeError, match="before any accumulate"):
        engine.step()
