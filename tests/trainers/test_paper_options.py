"""The options that reproduce the RACO and AMoPO authors' code, each against a hand computation on a tiny Llama:
``gram_scope``, ``tie_handling``, ``length_normalized`` and ``weighting: amopo`` (paretoalign.trainers.preference)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from paretoalign.losses import preference_losses
from paretoalign.models import sequence_logps
from paretoalign.trainers.preference import ParetoPreferenceTrainer, prepare_preference_data
from paretoalign.weighting import amopo_alpha, get_weighting

BETA = 0.2
LEARNING_RATE = 0.1


def build_trainer(config, ref_model=None) -> ParetoPreferenceTrainer:
    model, tokenizer = config.load_model()
    train_set, names = prepare_preference_data(config, config.train_data, tokenizer, None, None, "train")
    return ParetoPreferenceTrainer(model=model, args=config, objective_names=names, train_dataset=train_set,
                                   processing_class=tokenizer, ref_model=ref_model)


def one_step_config(tmp_path, tiny_model_dir, make_preference_config, **overrides):
    """One SGD step of learning rate 0.1, no clipping, no weight decay: the update is -0.1 times ``.grad``."""
    values = dict(eval_data=None, max_steps=1, optim="sgd", learning_rate=LEARNING_RATE, max_grad_norm=0.0,
                  beta=BETA)
    values.update(overrides)
    return make_preference_config(tmp_path, tiny_model_dir, **values)


def first_batches(trainer: ParetoPreferenceTrainer, count: int) -> list[dict]:
    """The micro-batches the first optimizer step trains on (the seeded sampler gives the same order in train())."""
    return [trainer._prepare_inputs(batch) for batch in itertools.islice(trainer.get_train_dataloader(), count)]


def flat_parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


def sequences(batch: dict) -> tuple:
    return batch["input_ids"], batch["attention_mask"], batch["response_mask"]


def objective_gradients(model, losses: torch.Tensor) -> list[torch.Tensor]:
    """``g_k``, flattened, from one ``torch.autograd.grad`` per objective (the authors' code)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        torch.cat([g.flatten() for g in torch.autograd.grad(losses[k], params, retain_graph=True)])
        for k in range(losses.numel())
    ]


def dpo_losses(trainer: ParetoPreferenceTrainer, batch: dict) -> torch.Tensor:
    """``-mean log sigmoid(beta S delta)`` over the labelled pairs, summed log-probabilities, frozen reference."""
    policy = sequence_logps(trainer.model, *sequences(batch))
    with torch.no_grad():
        reference = sequence_logps(trainer.ref_model, *sequences(batch))
    num_pairs = batch["labels"].shape[0]
    logratios = policy - reference
    delta = logratios[:num_pairs] - logratios[num_pairs:]
    return preference_losses(delta, batch["labels"], BETA, "sigmoid")


def test_micro_batch_scope_is_the_authors_per_micro_batch_update(
    tmp_path, tiny_model_dir, make_preference_config, write_jsonl, multi_label_row
):
    # Two micro-batches of 2 pairs: per micro-batch m, g_k^(m) -> Gram -> alpha^(m) (RACO), and
    # .grad = sum_m sum_k alpha_k^(m) g_k^(m) / 2; the optimizer steps once on that sum. The objectives disagree on
    # pairs 0 and 1 and agree on pairs 2 and 3, so the micro-batches' gradients conflict to different degrees.
    rows = [multi_label_row("Human: Tell me a joke.\n\nAssistant:", "No.", "The quick brown fox.", concise=0, safe=1),
            multi_label_row("Human: Bake bread?\n\nAssistant:", "Mix flour.", "Here is bread, flour and water.",
                            concise=0, safe=1),
            multi_label_row("Human: Swim now?\n\nAssistant:", "Wait.", "Please wait before you swim.", concise=0,
                            safe=0),
            multi_label_row("Human: A poem?\n\nAssistant:", "Here is a kind poem about a fox.", "Sure.", concise=1,
                            safe=1)]
    data = write_jsonl(tmp_path / "conflict.jsonl", rows)
    settings = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, train_data=str(data))
    trainer = build_trainer(one_step_config(tmp_path, tiny_model_dir, make_preference_config,
                                            gram_scope="micro_batch", **settings))
    raco = get_weighting("raco", [0.5, 0.5], c=0.4)
    before = flat_parameters(trainer.model)
    alphas, gradients = [], []
    for batch in first_batches(trainer, 2):
        g = objective_gradients(trainer.model, dpo_losses(trainer, batch))
        gram = torch.stack(g).double() @ torch.stack(g).double().T
        alphas.append(raco(gram))
        gradients.append(g)
    per_micro_batch = sum(float(alpha[k]) * g[k] / 2 for alpha, g in zip(alphas, gradients) for k in range(2))
    summed = [(gradients[0][k] + gradients[1][k]) / 2 for k in range(2)]
    step_alpha = raco(torch.stack(summed).double() @ torch.stack(summed).double().T)
    per_step = sum(float(step_alpha[k]) * summed[k] for k in range(2))

    trainer.train()
    after = flat_parameters(trainer.model)
    assert torch.allclose(after, before - LEARNING_RATE * per_micro_batch, atol=1e-6)
    logged = next(entry for entry in trainer.state.log_history if "alpha/concise" in entry)
    mean_alpha = (alphas[0] + alphas[1]) / 2
    assert [logged["alpha/concise"], logged["alpha/safe"]] == pytest.approx(mean_alpha.tolist(), abs=1e-6)

    # The micro-batches' alphas differ, so the authors' update is not the one-Gram-per-step update ...
    assert (alphas[0] - alphas[1]).abs().max() > 0.1
    assert (per_micro_batch - per_step).abs().max() > 1e-2
    # ... which gram_scope=step takes on the same two micro-batches.
    (tmp_path / "step").mkdir()
    stepwise = build_trainer(one_step_config(tmp_path / "step", tiny_model_dir, make_preference_config,
                                             gram_scope="step", **settings))
    stepwise.train()
    assert torch.allclose(flat_parameters(stepwise.model), before - LEARNING_RATE * per_step, atol=1e-6)


def test_included_ties_average_over_every_pair_of_the_micro_batch(
    tmp_path, tiny_model_dir, make_preference_config, make_tiny_llama, tiny_tokenizer, write_jsonl, multi_label_row
):
    rows = [multi_label_row(concise=0, safe=None), multi_label_row(response_0="No.", concise=None, safe=1),
            multi_label_row(response_0="Sure.", concise=1, safe=0), multi_label_row(response_0="Yes.", concise=None,
                                                                                   safe=0)]
    data = write_jsonl(tmp_path / "ties.jsonl", rows)
    config = one_step_config(tmp_path, tiny_model_dir, make_preference_config, train_data=str(data),
                             tie_handling="include")
    trainer = build_trainer(config, ref_model=make_tiny_llama(len(tiny_tokenizer), seed=1))
    (batch,) = first_batches(trainer, 1)
    losses, delta = trainer.objective_losses(trainer.model, batch)
    labels = batch["labels"].double()
    # Each objective: (sum over its labelled pairs of -log sigmoid(beta S delta) + log 2 per unlabelled pair) / 4.
    per_pair = -F.logsigmoid(BETA * labels * delta.detach()[:, None])
    expected = per_pair.sum(dim=0) / 4
    ties = int((labels == 0).sum())
    assert (labels == 0).any(dim=0).all() and labels.shape[0] == 4
    assert losses.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert per_pair[labels == 0].tolist() == pytest.approx([0.6931472] * ties, abs=1e-6)


def test_length_normalized_margins_average_the_token_log_probabilities(
    tmp_path, tiny_model_dir, make_preference_config, make_tiny_llama, tiny_tokenizer
):
    config = one_step_config(tmp_path, tiny_model_dir, make_preference_config, length_normalized=True,
                             weighting="weighted_sum")
    assert config.average_logps
    trainer = build_trainer(config, ref_model=make_tiny_llama(len(tiny_tokenizer), seed=1))
    (batch,) = first_batches(trainer, 1)
    losses, delta = trainer.objective_losses(trainer.model, batch)
    tokens = batch["response_mask"][:, 1:].sum(dim=1).double()
    with torch.no_grad():
        policy = sequence_logps(trainer.model, *sequences(batch)).double() / tokens
        reference = sequence_logps(trainer.ref_model, *sequences(batch)).double() / tokens
    num_pairs = batch["labels"].shape[0]
    expected_delta = (policy - reference)[:num_pairs] - (policy - reference)[num_pairs:]
    assert delta.tolist() == pytest.approx(expected_delta.tolist(), abs=1e-6)
    labels = batch["labels"].double()
    expected = (-F.logsigmoid(BETA * labels * expected_delta[:, None])).mean(dim=0)
    assert losses.tolist() == pytest.approx(expected.tolist(), abs=1e-6)


def test_amopo_loss_and_adaptive_alpha_equal_their_formulas(tmp_path, tiny_model_dir, make_preference_config):
    config = one_step_config(tmp_path, tiny_model_dir, make_preference_config, weighting="amopo", seed=5)
    trainer = build_trainer(config)
    assert trainer.ref_model is None and config.reference_free and config.average_logps
    (batch,) = first_batches(trainer, 1)
    num_pairs = batch["labels"].shape[0]
    labels = batch["labels"].double()
    response = batch["response_mask"][:, 1:].bool()

    # L_k = mean over k's pairs of -log sigmoid(beta / |y_w| log pi(y_w) - beta / |y_l| log pi(y_l)), no reference.
    logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_logps = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    average = (token_logps * response).sum(dim=1) / response.sum(dim=1)
    margin = BETA * (average[:num_pairs] - average[num_pairs:])
    losses = (-F.logsigmoid(labels * margin[:, None])).mean(dim=0)
    trained_losses, _ = trainer.objective_losses(trainer.model, batch)
    assert trained_losses.tolist() == pytest.approx(losses.tolist(), abs=1e-5)

    # alpha = softmax over objectives of a_k = mean over k's pairs of z_a + z_b, z ~ N(mean p_t, std p_t) of the
    # response tokens' probabilities, drawn from the generator seeded with the run's seed.
    probabilities = token_logps.detach().double().exp()
    eps = torch.randn(2 * num_pairs, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    draws = torch.stack([probabilities[b][response[b]].mean() + probabilities[b][response[b]].std() * eps[b]
                         for b in range(2 * num_pairs)])
    scores = ((draws[:num_pairs] + draws[num_pairs:])[:, None] * (labels != 0)).sum(0) / (labels != 0).sum(0)
    alpha = torch.softmax(scores, dim=0)
    assert torch.allclose(amopo_alpha(torch.tensor([0.5, 0.5]), scores), alpha, atol=1e-15)

    before = flat_parameters(trainer.model)
    gradients = objective_gradients(trainer.model, losses)
    trainer.train()
    assert torch.allclose(trainer.weighting.scores, scores, atol=1e-6)
    logged = next(entry for entry in trainer.state.log_history if "alpha/concise" in entry)
    assert [logged["alpha/concise"], logged["alpha/safe"]] == pytest.approx(alpha.tolist(), abs=1e-6)
    expected = before - LEARNING_RATE * (float(alpha[0]) * gradients[0] + float(alpha[1]) * gradients[1])
    assert torch.allclose(flat_parameters(trainer.model), expected, atol=1e-6)


def test_amopo_static_alpha_is_the_user_weights(tmp_path, tiny_model_dir, make_preference_config):
    config = one_step_config(tmp_path, tiny_model_dir, make_preference_config, weighting="amopo",
                             amopo_adaptive=False, weights=[0.8, 0.2])
    trainer = build_trainer(config)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "alpha/concise" in entry)
    assert [logged["alpha/concise"], logged["alpha/safe"]] == pytest.approx([0.8, 0.2], abs=1e-12)


def test_length_normalisation_default_rule_and_option_validation(tmp_path, tiny_model_dir, make_preference_config):
    def config(**overrides):
        return make_preference_config(tmp_path, tiny_model_dir, **overrides)

    assert not config().average_logps and config(loss_type="ipo").average_logps
    assert config(weighting="amopo").average_logps and not config(loss_type="ipo", length_normalized=False).average_logps
    assert config(loss_type="hinge", length_normalized=True).average_logps
    assert config().gram_scope == "step" and config().tie_handling == "exclude" and config().beta == 0.2
    for overrides, message in [
        (dict(gram_scope="window"), "gram_scope must be one of \\['step', 'micro_batch'\\], got 'window'"),
        (dict(tie_handling="drop"), "tie_handling must be one of \\['exclude', 'include'\\], got 'drop'"),
        (dict(weighting="amopo", loss_type="ipo"), "weighting=amopo uses the sigmoid loss"),
        (dict(weighting="amopo", length_normalized=False), "weighting=amopo uses length-normalised margins"),
        (dict(weighting="amopo", precompute_ref_logps=True), "weighting=amopo is reference-free"),
    ]:
        with pytest.raises(ValueError, match=message):
            config(**overrides)
