"""Tests for paretoalign.trainers.grpo: parity with TRL's GRPOTrainer, per-reward gradients, faults, the config."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

from paretoalign.advantages import decoupled_advantages, distinct_per_group, gdpo_advantages, grpo_advantages
from paretoalign.engine import NonFiniteTrainingError
from paretoalign.rewards.specs import RewardFunctionError
from paretoalign.trainers.grpo import MultiRewardGRPOConfig, MultiRewardGRPOTrainer
from paretoalign.weighting import get_weighting

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

NAN = math.nan
GROUP = 4
COMMON = dict(
    num_generations=GROUP,
    per_device_train_batch_size=GROUP * 2,
    max_completion_length=3,
    use_cpu=True,
    bf16=False,
    report_to="none",
    save_strategy="no",
    logging_steps=1,
    seed=0,
)


@pytest.fixture()
def tokenizer(tiny_tokenizer):
    """The session's tiny tokenizer (TRL's trainers read it and leave it unchanged)."""
    return tiny_tokenizer


def config_of(tmp_path, config_class=MultiRewardGRPOConfig, **overrides):
    return config_class(output_dir=str(tmp_path / "run"), **{**COMMON, **overrides})


def test_bf16_is_off_on_cpu_unless_asked_for(tmp_path):
    # TRL's GRPOConfig turns bf16 autocast on everywhere; on CPU it only adds rounding, so it is off by default.
    assert GRPOConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is True
    assert MultiRewardGRPOConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is False
    assert MultiRewardGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True).bf16 is True


@pytest.fixture()
def trainer_of(make_tiny_llama):
    """``trainer_of(tokenizer, config, reward_funcs, trainer_class=MultiRewardGRPOTrainer, dataset=None, **kwargs)``:
    a trainer of a fresh tiny random Llama (seed 0) on eight prompts (``kwargs`` go to the trainer, e.g.
    ``peft_config``)."""

    def build(tokenizer, config, reward_funcs, trainer_class=MultiRewardGRPOTrainer, dataset=None, **kwargs):
        dataset = dataset if dataset is not None else Dataset.from_dict({"prompt": ["Hello", "The fox"] * 4})
        return trainer_class(
            model=make_tiny_llama(len(tokenizer)),
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            **kwargs,
        )

    return build


def table_rewards(table: torch.Tensor):
    """One reward function per column of `table`: row i of a batch gets table[row_i] (None where NaN)."""

    def reward_for(column):
        def reward(completions, row, **kwargs):
            return [None if math.isnan(table[r, column]) else float(table[r, column]) for r in row]

        reward.__name__ = f"reward_{column}"
        return reward

    return [reward_for(column) for column in range(table.shape[1])]


def score(trainer, num_rows):
    trainer.model.train()
    return trainer._generate_and_score_completions([{"prompt": "Hello", "row": r} for r in range(num_rows)])


# Two groups of four, two rewards; None at (1, 1) and (6, 0).
REWARDS = torch.tensor(
    [[1.0, 0.0], [0.0, NAN], [1.0, 1.0], [0.0, 0.5], [0.0, 0.0], [1.0, 0.0], [NAN, 2.0], [1.0, 1.0]]
)


# --- advantages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_weighted_sum_advantages_equal_paretoalign_and_trl(tmp_path, tokenizer, trainer_of, aggregation):
    weights = [0.25, 0.75]
    settings = dict(multi_objective_aggregation=aggregation, reward_weights=weights)
    ours = trainer_of(tokenizer, config_of(tmp_path, **settings), table_rewards(REWARDS))
    trl = trainer_of(tokenizer, config_of(tmp_path, GRPOConfig, **settings), table_rewards(REWARDS), GRPOTrainer)

    advantages = score(ours, 8)["advantages"]
    if aggregation == "sum_then_normalize":
        expected = grpo_advantages(REWARDS, GROUP, weights=weights)
    else:
        expected = gdpo_advantages(REWARDS, GROUP, weights=weights)
    torch.testing.assert_close(advantages, expected, rtol=0, atol=0)
    torch.testing.assert_close(advantages, score(trl, 8)["advantages"], rtol=0, atol=0)
    # None -> NaN left out of the statistics, as TRL logs it.
    for name in ("reward_0", "reward_1"):
        assert ours._metrics["train"][f"rewards/{name}/mean"] == trl._metrics["train"][f"rewards/{name}/mean"]
    assert ours._metrics["train"]["rewards/reward_1/mean"][-1] == pytest.approx((0 + 1 + 0.5 + 0 + 0 + 2 + 1) / 7)
    logged = ours._metrics["train"]
    assert logged["advantages/distinct_per_group"] == [distinct_per_group(expected, GROUP)]
    assert logged["advantages/abs_max"] == [pytest.approx(float(expected.abs().max()))]
    assert logged["rewards/distinct_per_group"] == [4.0]


def test_per_reward_weighting_gives_decoupled_advantages(tmp_path, tokenizer, trainer_of):
    config = config_of(tmp_path, weighting="raco", reward_weights=[0.5, 0.5])
    output = score(trainer_of(tokenizer, config, table_rewards(REWARDS)), 8)
    torch.testing.assert_close(output["reward_advantages"], decoupled_advantages(REWARDS, GROUP), rtol=0, atol=0)


# --- conditional rewards -----------------------------------------------------------------------------------------


def test_trainer_applies_conditional_rewards_before_the_advantages(tmp_path, tokenizer, trainer_of):
    config = config_of(tmp_path, conditional_rewards=["reward=reward_1,condition=reward_0,threshold=1"])
    advantages = score(trainer_of(tokenizer, config, table_rewards(REWARDS)), 8)["advantages"]
    conditioned = REWARDS.clone()
    conditioned[:, 1] = torch.tensor([0.0, NAN, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(advantages, grpo_advantages(conditioned, GROUP), rtol=0, atol=0)


# --- losses and gradients ----------------------------------------------------------------------------------------


def hand_inputs(vocab_size: int, columns: torch.Tensor, seed: int = 0, with_reference: bool = True) -> dict:
    """A micro-batch as TRL's _prepare_inputs returns it, with per-reward advantage columns."""
    generator = torch.Generator().manual_seed(seed)
    batch = columns.shape[0]
    completion_mask = torch.ones(batch, 5, dtype=torch.long)
    completion_mask[1, 3:] = 0
    completion_mask[4, 2:] = 0
    inputs = {
        "prompt_ids": torch.randint(3, vocab_size, (batch, 4), generator=generator),
        "prompt_mask": torch.ones(batch, 4, dtype=torch.long),
        "completion_ids": torch.randint(3, vocab_size, (batch, 5), generator=generator),
        "completion_mask": completion_mask,
        "advantages": columns[:, 0].clone(),
        "reward_advantages": columns,
        "num_items_in_batch": completion_mask.sum(),
    }
    if with_reference:
        inputs["ref_per_token_logps"] = -5.0 - torch.rand(batch, 5, generator=generator)
    return inputs


def trl_gradient(trainer, inputs, advantages):
    """The gradient TRL's own loss gives for these inputs with `advantages` substituted."""
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, {**inputs, "advantages": advantages})
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    return loss.detach(), [g.detach() for g in torch.autograd.grad(loss, params)]


def our_step(trainer, inputs):
    """One training_step of our trainer on a fixed micro-batch (no sampling); returns the .grad it leaves."""
    trainer._prepare_inputs = lambda batch: batch
    trainer.model.zero_grad()
    trainer.training_step(trainer.model, inputs)
    return [p.grad.detach().clone() for p in trainer.model.parameters() if p.requires_grad]


def prepared(trainer, beta: float = 0.04):
    """Ready for compute_loss outside train(); the KL term uses the inputs' reference log-probabilities (a random
    model has no path TRL could load a reference model from, so beta is set after construction)."""
    trainer.current_gradient_accumulation_steps = 1
    trainer.beta = beta
    return trainer


COLUMNS = torch.tensor(
    [[1.2, -0.9], [-0.4, 1.1], [0.8, 0.3], [-1.6, -0.5], [0.0, 1.4], [1.0, -1.2], [-0.3, 0.2], [-0.7, -0.4]]
)


def test_weighted_sum_loss_and_gradients_equal_trl(tmp_path, tokenizer, trainer_of):
    settings = dict(loss_type="grpo", reward_weights=[1.0])
    ours = prepared(trainer_of(tokenizer, config_of(tmp_path, **settings), table_rewards(REWARDS[:, :1])))
    trl = prepared(
        trainer_of(tokenizer, config_of(tmp_path, GRPOConfig, **settings), table_rewards(REWARDS[:, :1]), GRPOTrainer)
    )
    inputs = hand_inputs(len(tokenizer), COLUMNS)
    our_loss, our_gradient = trl_gradient(ours, inputs, inputs["advantages"])
    trl_loss, expected = trl_gradient(trl, inputs, inputs["advantages"])
    assert our_loss == trl_loss
    assert our_loss.abs() > 1e-3
    for ours_g, trl_g in zip(our_gradient, expected):
        torch.testing.assert_close(ours_g, trl_g, rtol=0, atol=0)


def test_per_reward_losses_are_trl_losses_with_one_advantage_column(tmp_path, tokenizer, trainer_of):
    config = config_of(tmp_path, weighting="raco", reward_weights=[0.3, 0.7])
    ours = prepared(trainer_of(tokenizer, config, table_rewards(REWARDS)))
    reference = prepared(trainer_of(tokenizer, config_of(tmp_path, GRPOConfig), table_rewards(REWARDS), GRPOTrainer))
    inputs = hand_inputs(len(tokenizer), COLUMNS)
    ours.model.train()
    losses, per_token_logps = ours.per_reward_losses(ours.model, inputs)
    assert per_token_logps.shape == inputs["completion_ids"].shape and per_token_logps.requires_grad
    expected = torch.stack([trl_gradient(reference, inputs, COLUMNS[:, k])[0] for k in range(2)])
    torch.testing.assert_close(losses.detach(), expected, rtol=0, atol=1e-7)
    assert (losses[0] - losses[1]).abs() > 1e-3
    # KL and entropy are recorded once per step, not once per reward.
    assert len(ours._metrics["train"]["kl"]) == 1


def test_two_rewards_combined_gradient_is_alpha_weighted_sum(tmp_path, tokenizer, trainer_of):
    weights = [0.3, 0.7]
    config = config_of(tmp_path, weighting="raco", reward_weights=weights, weighting_params={"c": 0.4})
    ours = prepared(trainer_of(tokenizer, config, table_rewards(REWARDS)))
    reference = prepared(trainer_of(tokenizer, config_of(tmp_path, GRPOConfig), table_rewards(REWARDS), GRPOTrainer))
    inputs = hand_inputs(len(tokenizer), COLUMNS)

    gradients = [trl_gradient(reference, inputs, COLUMNS[:, k])[1] for k in range(2)]
    flat = torch.stack([torch.cat([g.flatten() for g in gradient]) for gradient in gradients]).double()
    gram = flat @ flat.T
    alpha = get_weighting("raco", weights, c=0.4)(gram)
    assert gram[0, 1] < 0  # the rewards conflict, so the correction is active
    assert (alpha - torch.tensor(weights, dtype=torch.float64)).abs().max() > 0.05

    combined = our_step(ours, inputs)
    for index, grad in enumerate(combined):
        expected = float(alpha[0]) * gradients[0][index] + float(alpha[1]) * gradients[1][index]
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    logged = ours._metrics["train"]
    assert logged["alpha/reward_0"] == [pytest.approx(float(alpha[0]), rel=1e-6)]
    assert logged["alpha/reward_1"] == [pytest.approx(float(alpha[1]), rel=1e-6)]
    cosine = gram[0, 1] / (gram[0, 0] * gram[1, 1]).sqrt()
    assert logged["cosine/reward_0__reward_1"] == [pytest.approx(float(cosine), rel=1e-5)]
    assert logged["grad_norm/reward_1"] == [pytest.approx(float(gram[1, 1].sqrt()), rel=1e-5)]


@pytest.mark.parametrize(("c", "expected_alpha"), [(0.0, 1.0), (0.4, 1.4)])
def test_one_reward_raco_gradient_is_grpo_gradient_times_alpha(tmp_path, tokenizer, trainer_of, c, expected_alpha):
    config = config_of(tmp_path, weighting="raco", reward_weights=[1.0], weighting_params={"c": c})
    ours = prepared(trainer_of(tokenizer, config, table_rewards(REWARDS[:, :1])))
    grpo = prepared(
        trainer_of(tokenizer, config_of(tmp_path, GRPOConfig), table_rewards(REWARDS[:, :1]), GRPOTrainer)
    )
    inputs = hand_inputs(len(tokenizer), COLUMNS[:, :1])
    _, expected = trl_gradient(grpo, inputs, inputs["advantages"])
    combined = our_step(ours, inputs)
    assert ours._metrics["train"]["alpha/reward_0"] == [pytest.approx(expected_alpha)]
    for grad, grpo_grad in zip(combined, expected):
        if c == 0.0:
            torch.testing.assert_close(grad, grpo_grad, rtol=0, atol=0)
        else:
            torch.testing.assert_close(grad, expected_alpha * grpo_grad, rtol=1e-6, atol=1e-8)


def length_reward(completions, **kwargs):
    return [float(len(completion)) for completion in completions]


def test_one_reward_raco_training_equals_grpo_training(tmp_path, tokenizer, trainer_of, make_tiny_llama):
    """Sampling, advantages, loss and optimizer end to end: two steps give identical parameters."""
    settings = dict(max_steps=2, learning_rate=0.05, loss_type="grpo")
    ours = trainer_of(
        tokenizer,
        config_of(tmp_path, weighting="raco", reward_weights=[1.0], weighting_params={"c": 0.0}, **settings),
        [length_reward],
    )
    ours.train()
    grpo = trainer_of(tokenizer, config_of(tmp_path, GRPOConfig, **settings), [length_reward], GRPOTrainer)
    grpo.train()
    initial = make_tiny_llama(len(tokenizer))
    moved = 0.0
    for (name, trained), grpo_param, start in zip(
        ours.model.named_parameters(), grpo.model.parameters(), initial.parameters()
    ):
        torch.testing.assert_close(trained, grpo_param, rtol=0, atol=1e-6, msg=name)
        moved = max(moved, float((trained - start).abs().max()))
    assert moved > 1e-3
    assert ours.state.log_history[0]["alpha/length_reward"] == 1.0


# --- faults ------------------------------------------------------------------------------------------------------


def test_reward_function_that_raises_is_named(tmp_path, tokenizer, trainer_of):
    def broken_reward(completions, **kwargs):
        return [1.0 / 0 for _ in completions]

    trainer = trainer_of(tokenizer, config_of(tmp_path), [table_rewards(REWARDS)[0], broken_reward])
    with pytest.raises(RewardFunctionError, match="reward function 'broken_reward' raised ZeroDivisionError"):
        score(trainer, 8)


def test_reward_function_with_wrong_length_is_named(tmp_path, tokenizer, trainer_of):
    def short_reward(completions, **kwargs):
        return [1.0] * (len(completions) - 1)

    trainer = trainer_of(tokenizer, config_of(tmp_path), [short_reward])
    message = r"'short_reward' returned 7 rewards for 8 completions \(expected 8, got 7\)"
    with pytest.raises(RewardFunctionError, match=message):
        score(trainer, 8)


def test_reward_function_with_non_numeric_value_is_named(tmp_path, tokenizer, trainer_of):
    def text_reward(completions, **kwargs):
        return ["good"] * len(completions)

    trainer = trainer_of(tokenizer, config_of(tmp_path), [text_reward])
    with pytest.raises(RewardFunctionError, match="'text_reward' returned 'good' \\(str\\) for completion 0"):
        score(trainer, 8)


@pytest.mark.parametrize("weighting", ["weighted_sum", "raco"])
def test_reward_that_never_scores_skips_steps_then_stops_when_asked_to(tmp_path, tokenizer, trainer_of, caplog, weighting):
    def never_scores(completions, **kwargs):
        return [None] * len(completions)

    config = config_of(
        tmp_path, weighting=weighting, reward_weights=[0.5, 0.5], max_steps=6, max_consecutive_skipped_steps=3,
        learning_rate=0.05, skip_unscored_reward_batches=True,
    )
    trainer = trainer_of(tokenizer, config, [length_reward, never_scores])
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    with caplog.at_level(logging.WARNING, logger="paretoalign.engine"):
        message = r"3 consecutive steps were skipped \(last at step 3: reward 'never_scores' scored none"
        with pytest.raises(NonFiniteTrainingError, match=message):
            trainer.train()
    assert trainer.skip_guard.total == 3
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert skipped[0].startswith("step 1 skipped: reward 'never_scores' scored none of the 8 completions")
    for param, start in zip(trainer.model.parameters(), initial):
        torch.testing.assert_close(param.detach(), start, rtol=0, atol=0)


def test_skips_reset_after_a_good_step(tmp_path, tokenizer, trainer_of):
    calls = {"count": 0}

    def sometimes_infinite(completions, **kwargs):
        calls["count"] += 1
        return [math.inf if calls["count"] % 2 else 1.0 for _ in completions]

    config = config_of(tmp_path, max_steps=4, max_consecutive_skipped_steps=2)
    trainer = trainer_of(tokenizer, config, [length_reward, sometimes_infinite])
    trainer.train()
    assert trainer.skip_guard.total == 2
    assert [entry["skipped_steps"] for entry in trainer.state.log_history if "skipped_steps" in entry] == [1, 0, 1, 0]


# --- rewards that score nothing -------------------------------------------------------------------------------------


def never_scores(completions, **kwargs):
    return [None] * len(completions)


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_a_reward_that_scores_nothing_trains_as_in_trl(tmp_path, tokenizer, trainer_of, aggregation):
    """By default a batch in which one reward scored nothing trains, that reward contributing nothing: the run
    equals TRL's GRPOTrainer step for step."""
    settings = dict(max_steps=2, learning_rate=0.05, reward_weights=[0.5, 0.5],
                    multi_objective_aggregation=aggregation)
    ours = trainer_of(tokenizer, config_of(tmp_path, **settings), [length_reward, never_scores])
    ours.train()
    trl = trainer_of(tokenizer, config_of(tmp_path, GRPOConfig, **settings), [length_reward, never_scores],
                     GRPOTrainer)
    trl.train()
    assert ours.skip_guard.total == 0
    assert [entry["skipped_steps"] for entry in ours.state.log_history if "skipped_steps" in entry] == [0, 0]
    for (name, trained), trl_param in zip(ours.model.named_parameters(), trl.model.parameters()):
        torch.testing.assert_close(trained, trl_param, rtol=0, atol=1e-6, msg=name)
    start = trainer_of(tokenizer, config_of(tmp_path), [length_reward]).model
    assert max(float((p - q).abs().max()) for p, q in zip(ours.model.parameters(), start.parameters())) > 1e-3


def test_a_reward_that_scores_nothing_gets_a_zero_gradient_under_raco(tmp_path, tokenizer, trainer_of):
    config = config_of(tmp_path, weighting="raco", reward_weights=[0.5, 0.5], max_steps=2, learning_rate=0.05)
    trainer = trainer_of(tokenizer, config, [length_reward, never_scores])
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "skipped_steps" in entry]
    assert [entry["skipped_steps"] for entry in logged] == [0, 0]
    for entry in logged:
        assert entry["grad_norm/never_scores"] == 0.0 and entry["grad_norm/length_reward"] > 0
        # raco's correction has nothing to correct: alpha = w, the update is w_1 g_1.
        assert entry["alpha/length_reward"] == pytest.approx(0.5) and entry["alpha/never_scores"] == pytest.approx(0.5)


def task_reward(task: str):
    """Completion length for prompts of ``task``, None for the other task's prompts."""

    def reward(prompts, completions, **kwargs):
        return [float(len(completion)) if prompt == task else None for prompt, completion in zip(prompts, completions)]

    reward.__name__ = f"{task.replace(' ', '_').lower()}_length"
    return reward


@pytest.mark.parametrize("weighting", ["weighted_sum", "raco"])
def test_sparse_multi_task_rewards_train(tmp_path, tokenizer, trainer_of, weighting):
    """Each reward scores only its task's prompts; batches holding one task only leave the other reward unscored."""
    dataset = Dataset.from_dict({"prompt": ["Hello"] * 6 + ["The fox"] * 2})
    config = config_of(tmp_path, weighting=weighting, reward_weights=[0.5, 0.5], max_steps=4, learning_rate=0.05)
    trainer = trainer_of(tokenizer, config, [task_reward("Hello"), task_reward("The fox")], dataset=dataset)
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "skipped_steps" in entry]
    assert [entry["skipped_steps"] for entry in logged] == [0, 0, 0, 0]
    # A batch without fox prompts: TRL logs the mean of an all-None reward as None.
    assert any(entry["rewards/the_fox_length/mean"] is None for entry in logged)
    moved = max(float((p.detach() - q).abs().max()) for p, q in zip(trainer.model.parameters(), initial))
    assert moved > 1e-3


# --- the fused engine --------------------------------------------------------------------------------------------


COLUMNS_3 = torch.cat([COLUMNS, torch.tensor([[0.5], [-1.0], [0.9], [0.1], [-0.6], [1.3], [-0.2], [-1.1]])], dim=1)


def counting_backward_passes(model) -> dict:
    """``{"passes": n}``: how many backward passes go through the final norm of `model` (a tiny Llama, maybe in
    PEFT), below the output head."""
    counts = {"passes": 0}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model

    def hook(module, args, output):
        output.register_hook(lambda grad: counts.__setitem__("passes", counts["passes"] + 1))

    base.model.norm.register_forward_hook(hook)
    return counts


def engine_run(tmp_path, tokenizer, trainer_of, engine, lora, beta, micro_batches):
    """The .grad, logs and model backward passes of one accumulation window of `micro_batches` hand micro-batches
    (full fine-tuning: every parameter but the output head, which TRL's fused LM head reads in its own kernel)."""
    config = config_of(tmp_path, weighting="raco", reward_weights=[0.2, 0.3, 0.5], engine=engine,
                       gradient_checkpointing=False)
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False) if lora else None
    torch.manual_seed(1)
    trainer = prepared(trainer_of(tokenizer, config, table_rewards(torch.zeros(8, 3)), peft_config=peft), beta)
    if not lora:
        # TRL's fused LM head reads the head's weight in its own kernel, outside the module call the hooks see.
        trainer.model.lm_head.weight.requires_grad_(False)
    trainer.current_gradient_accumulation_steps = micro_batches
    counts = counting_backward_passes(trainer.model)
    trainer._prepare_inputs = lambda batch: batch
    trainer.model.zero_grad()
    for index in range(micro_batches):
        trainer.accelerator.gradient_state._set_sync_gradients(index == micro_batches - 1)
        trainer.training_step(trainer.model, hand_inputs(len(tokenizer), COLUMNS_3.roll(index, 0), seed=index))
    assert trainer.engine.mode == engine
    grads = [p.grad.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    return grads, trainer._metrics["train"], counts["passes"]


@pytest.mark.parametrize("micro_batches", [1, 2], ids=["one", "accumulated"])
@pytest.mark.parametrize("beta", [0.0, 0.04], ids=["no-kl", "kl"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fused_engine_equals_exact(tmp_path, tokenizer, trainer_of, lora, beta, micro_batches):
    exact_grads, exact_logs, exact_passes = engine_run(tmp_path, tokenizer, trainer_of, "exact", lora, beta,
                                                       micro_batches)
    fused_grads, fused_logs, fused_passes = engine_run(tmp_path, tokenizer, trainer_of, "fused", lora, beta,
                                                       micro_batches)
    # One backward pass of the log-probabilities per micro-batch, two with the KL term; exact runs one per reward.
    assert exact_passes == 3 * micro_batches
    assert fused_passes == (1 if beta == 0.0 else 2) * micro_batches
    for key in ("alpha/reward_0", "alpha/reward_1", "alpha/reward_2", "grad_norm/reward_2",
                "cosine/reward_0__reward_1", "cosine/reward_1__reward_2"):
        assert fused_logs[key] == pytest.approx(exact_logs[key], rel=1e-4, abs=1e-7), key
    assert max(exact_logs["grad_norm/reward_0"]) > 0
    for fused, exact in zip(fused_grads, exact_grads, strict=True):
        torch.testing.assert_close(fused, exact, rtol=1e-4, atol=1e-7)


def engine_choices(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("engine auto")]


def trained_parameters(tmp_path, tokenizer, trainer_of, engine, lora, **overrides):
    """All parameters after two SGD steps of raco on two rewards (with LoRA also TRL's KL term: its reference is the
    model with the adapter disabled)."""
    settings = dict(weighting="raco", reward_weights=[0.5, 0.5], max_steps=2, learning_rate=0.05, optim="sgd",
                    engine=engine, gradient_checkpointing=False, beta=0.04 if lora else 0.0)
    config = config_of(tmp_path, **{**settings, **overrides})
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False) if lora else None
    torch.manual_seed(1)
    trainer = trainer_of(tokenizer, config, [length_reward, task_reward("Hello")], peft_config=peft)
    trainer.train()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_auto_engine_chooses_fused_logs_it_once_and_trains_as_exact(tmp_path, tokenizer, trainer_of, caplog):
    with caplog.at_level(logging.INFO, logger="paretoalign"):
        auto = trained_parameters(tmp_path, tokenizer, trainer_of, "auto", lora=True)
    assert engine_choices(caplog) == [
        "engine auto: fused (one backward pass of the log-probabilities gives the per-reward gradients)"
    ]
    exact = trained_parameters(tmp_path, tokenizer, trainer_of, "exact", lora=True)
    torch.testing.assert_close(auto, exact, rtol=0, atol=1e-6)


def test_auto_engine_falls_back_to_exact_with_the_reason(tmp_path, tokenizer, trainer_of, caplog):
    """Full fine-tuning trains the output head, whose weight TRL's fused LM head reads in its own kernel: the first
    micro-batch shows it, exact takes over for the whole run, and the run equals an exact run."""
    with caplog.at_level(logging.INFO, logger="paretoalign"):
        auto = trained_parameters(tmp_path, tokenizer, trainer_of, "auto", lora=False)
    choices = engine_choices(caplog)
    assert len(choices) == 1 and choices[0].startswith("engine auto: exact (the fused engine does not apply")
    assert "lm_head.weight enters the forward outside the call" in choices[0]
    assert torch.equal(auto, trained_parameters(tmp_path, tokenizer, trainer_of, "exact", lora=False))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="paretoalign"):
        trained_parameters(tmp_path, tokenizer, trainer_of, "auto", lora=True, gradient_checkpointing=True,
                           max_steps=1)
    assert engine_choices(caplog) == [
        "engine auto: exact (gradient checkpointing (TRL's default) repeats the layer calls that the fused hooks "
        "rely on)"
    ]


# --- configuration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(weighting="raco", reward_weights=[0.7, 0.7]), "reward_weights must be on the simplex"),
        (dict(weighting="mgda", reward_weights=[-0.5, 1.5]), "reward_weights must be on the simplex"),
        (dict(weighting="sharpness"), "weighting must be one of"),
        (dict(multi_objective_aggregation="mean"), "multi_objective_aggregation must be one of"),
        (
            dict(weighting="raco", rewards=["answer", "format"], weighting_params={"c": -1}),
            "weighting_params .* 'raco'",
        ),
        (dict(rewards=[{"name": "a", "function": "m:f"}]), r"rewards\[0\]: a reward spec needs exactly one of"),
        (dict(rewards=["answer"], reward_weights=[0.5, 0.5]), "reward_weights: 2 weights were given for 1 objectives"),
        (dict(conditional_rewards=[{"reward": 1, "condition": 0}]), r"conditional_rewards\[0\]: expected exactly"),
        (dict(max_consecutive_skipped_steps=0), "max_consecutive_skipped_steps"),
        (dict(weighting="raco", engine="autogram"), "engine must be one of"),
        (dict(weighting="raco", engine="fused", gradient_checkpointing=True), "engine=fused: gradient checkpointing"),
        (
            dict(weighting="raco", engine="fused", gradient_checkpointing=False, entropy_coef=0.01),
            "engine=fused: the entropy bonus",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_of(tmp_path, **overrides)


def test_weighted_sum_keeps_trl_reward_weight_semantics(tmp_path):
    assert config_of(tmp_path, reward_weights=[2.0, -1.0]).reward_weights == [2.0, -1.0]
    assert config_of(tmp_path, weighting="upgrad").validated_reward_weights(list("abcd")) == [0.25] * 4
    assert config_of(tmp_path).validated_reward_weights(list("ab")) == [1.0, 1.0]


def test_amopo_is_refused_for_rl(tmp_path):
    with pytest.raises(ValueError, match="weighting=amopo is a preference-training baseline"):
        MultiRewardGRPOConfig(output_dir=str(tmp_path), use_cpu=True, weighting="amopo")
