"""Large models: bf16 weights end to end, gradient checkpointing with the exact engine, and 4-bit / 8-bit base weights
(QLoRA), which need bitsandbytes and a CUDA GPU and are refused clearly without them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from paretoalign.cli import main
from paretoalign.commands.train import train
from paretoalign.config import LoraArguments, ModelArguments
from paretoalign.models import is_quantized, load_trained, place_on, quantization_config
from paretoalign.trainers.preference import ParetoPreferenceTrainer, prepare_preference_data


def flat_parameters(model) -> torch.Tensor:
    return torch.cat([parameter.detach().float().flatten() for parameter in model.parameters()])


@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full"])
def test_gradient_checkpointing_takes_the_same_steps_with_the_exact_engine(
    tmp_path, tiny_model_dir, make_preference_config, use_lora
):
    # Non-reentrant checkpointing (transformers' default) recomputes each layer inside each of the K backward passes;
    # the per-objective gradients, hence alpha and the step, are those of the run without it.
    weights = {}
    for checkpointing in (False, True):
        folder = tmp_path / str(checkpointing)
        folder.mkdir()
        config = make_preference_config(
            folder, tiny_model_dir, engine="exact", activation_checkpointing=checkpointing, use_lora=use_lora,
            lora_r=4, lora_alpha=8, max_steps=3, optim="sgd", learning_rate=0.1, eval_data=None,
        )
        train(config)
        weights[checkpointing] = flat_parameters(load_trained(Path(config.output_dir) / "model")[0])
    assert torch.allclose(weights[True], weights[False], atol=1e-6)
    assert not torch.equal(weights[False], flat_parameters(load_trained(tiny_model_dir)[0]))


def test_bfloat16_weights_stay_bfloat16_in_the_policy_and_its_frozen_reference(
    tmp_path, tiny_model_dir, make_preference_config
):
    config = make_preference_config(tmp_path, tiny_model_dir, torch_dtype="bfloat16", use_lora=False, max_steps=1)
    model, tokenizer = config.load_model()
    train_set, names = prepare_preference_data(config, config.train_data, tokenizer, None, None, "train")
    trainer = ParetoPreferenceTrainer(
        model=model, args=config, objective_names=names, train_dataset=train_set, processing_class=tokenizer
    )
    assert {parameter.dtype for parameter in trainer.ref_model.parameters()} == {torch.bfloat16}
    assert {parameter.dtype for parameter in trainer.model.parameters()} == {torch.bfloat16}
    trainer.train()
    assert all(torch.isfinite(parameter).all() for parameter in trainer.model.parameters())


def test_lora_on_bfloat16_weights_has_no_reference_copy(tmp_path, tiny_model_dir, make_preference_config):
    config = make_preference_config(tmp_path, tiny_model_dir, torch_dtype="bfloat16", use_lora=True, lora_r=4,
                                    lora_alpha=8, max_steps=1)
    model, tokenizer = config.load_model()
    model = config.with_lora(model)
    train_set, names = prepare_preference_data(config, config.train_data, tokenizer, None, None, "train")
    trainer = ParetoPreferenceTrainer(
        model=model, args=config, objective_names=names, train_dataset=train_set, processing_class=tokenizer
    )
    assert trainer.ref_model is None  # the reference is the base weights with the adapter disabled
    frozen = {parameter.dtype for name, parameter in trainer.model.named_parameters() if "lora_" not in name}
    assert frozen == {torch.bfloat16}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
@pytest.mark.parametrize("bits", [4, 8])
def test_quantised_weights_are_refused_without_a_cuda_gpu(bits):
    message = "CUDA GPU" if importlib.util.find_spec("bitsandbytes") else "need the bitsandbytes package"
    with pytest.raises(ValueError, match=message):
        quantization_config(bits)
    with pytest.raises(ValueError, match=message):
        ModelArguments(**{f"load_in_{bits}bit": True}).model_options()


def test_quantisation_config_follows_the_qlora_recipe(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    four = ModelArguments(load_in_4bit=True, torch_dtype="float16", use_bnb_nested_quant=True).model_options()
    config = four["quantization"]
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16
    assert ModelArguments(load_in_4bit=True).quantization(torch.float32).bnb_4bit_compute_dtype == torch.bfloat16
    assert ModelArguments(load_in_8bit=True).model_options()["quantization"].load_in_8bit
    assert ModelArguments().model_options()["quantization"] is None
    with pytest.raises(ValueError, match="load_in_4bit and load_in_8bit are both on; choose one"):
        ModelArguments(load_in_4bit=True, load_in_8bit=True).model_options()
    with pytest.raises(ValueError, match="bnb_4bit_quant_type must be 'nf4' or 'fp4', got 'int4'"):
        ModelArguments(load_in_4bit=True, bnb_4bit_quant_type="int4").model_options()
    with pytest.raises(ValueError, match="quantised base weights have 4 or 8 bits, got 2"):
        quantization_config(2)


def test_quantised_weights_train_only_through_an_adapter_and_stay_in_place(tiny_llama):
    assert not is_quantized(tiny_llama)
    tiny_llama.is_loaded_in_4bit = True
    try:
        assert is_quantized(tiny_llama)
        assert place_on(tiny_llama, "meta") is tiny_llama
        assert next(tiny_llama.parameters()).device.type == "cpu"
        with pytest.raises(ValueError, match="set use_lora: true to train an adapter on them"):
            LoraArguments(use_lora=False).with_lora(tiny_llama)
    finally:
        del tiny_llama.is_loaded_in_4bit


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_train_with_load_in_4bit_exits_2_before_writing_anything(tmp_path, lora_run_config, capsys):
    values = yaml.safe_load(lora_run_config.read_text())
    lora_run_config.write_text(yaml.safe_dump({**values, "load_in_4bit": True}))
    assert main(["train", "--config", str(lora_run_config)]) == 2
    error = " ".join(capsys.readouterr().out.split())
    assert "QLoRA" in error and ("CUDA GPU" in error or "bitsandbytes" in error)
    assert not (tmp_path / "run").exists()
