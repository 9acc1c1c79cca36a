"""Non-finite safety of the preference trainer: poisoned batches are skipped, logged, and stop the run when repeated."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from paretoalign.data.preferences import load_preferences
from paretoalign.data.tokenize import tokenize_preferences
from paretoalign.engine import NonFiniteTrainingError
from paretoalign.trainers.preference import ParetoPreferenceConfig, ParetoPreferenceTrainer


@pytest.fixture()
def build_trainer(tmp_path, tiny_model_dir, make_multi_label_pairs):
    """A trainer on the tiny pairs whose reference log-probabilities are NaN on ``poisoned_rows``, and its model."""

    def build(poisoned_rows, **overrides):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        dataset, names = load_preferences(make_multi_label_pairs(tmp_path / "pairs.jsonl"))
        tokenised, _ = tokenize_preferences(dataset, tokenizer, max_length=64)
        reference = [float("nan") if row in poisoned_rows else -50.0 for row in range(len(tokenised))]
        tokenised = tokenised.add_column("reference_logps_a", reference).add_column(
            "reference_logps_b", [-50.0] * len(tokenised)
        )
        values = dict(output_dir=str(tmp_path / "run"), use_lora=False, per_device_train_batch_size=4, max_steps=4,
                      learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                      max_consecutive_skipped_steps=3, seed=0)
        values.update(overrides)
        config = ParetoPreferenceConfig(**values)
        trainer = ParetoPreferenceTrainer(model=model, args=config, objective_names=names, train_dataset=tokenised,
                                          processing_class=tokenizer)
        return trainer, model

    return build


def trainable(model):
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("engine", ["exact", "autogram"])
def test_every_step_poisoned_stops_the_run_without_changing_the_model(build_trainer, engine, caplog):
    trainer, model = build_trainer(poisoned_rows=set(range(16)), engine=engine)
    before = trainable(model)
    expected = (r"3 consecutive steps were skipped \(last at step 3: non-finite loss for objective\(s\) "
                r"\['concise', 'safe'\]\); stopping")
    with pytest.raises(NonFiniteTrainingError, match=expected):
        trainer.train()
    assert torch.equal(trainable(model), before)
    messages = [record.getMessage() for record in caplog.records]
    assert any("step 1 skipped: non-finite loss for objective(s) ['concise', 'safe']" in m for m in messages)
    assert any("step 3 skipped:" in m for m in messages)


def test_one_poisoned_batch_is_skipped_and_training_goes_on(build_trainer):
    trainer, model = build_trainer(poisoned_rows={5})
    before = trainable(model)
    trainer.train()
    skipped = [entry["skipped_steps"] for entry in trainer.state.log_history if "skipped_steps" in entry]
    assert skipped.count(1.0) == 1 and skipped.count(0.0) == 3
    assert not torch.equal(trainable(model), before)
    assert all(math.isfinite(v) for v in trainable(model).tolist())
