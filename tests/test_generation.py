"""Tests for paretoalign.generation: prompt encoding, end of sequence, batched greedy and sampled generation."""

from __future__ import annotations

import copy

import pytest
import torch
from tokenizers.processors import TemplateProcessing

from paretoalign.generation import (
    Completion,
    encode_prompts,
    end_of_sequence_ids,
    generate_completions,
    generate_with_vllm,
    generation_backend,
    trim_at_end_of_sequence,
)

PROMPTS = ["How do I bake bread?", "No.", "The quick brown fox jumps over the lazy dog. I cannot help with that."]
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def bos_tokenizer(tiny_tokenizer):
    """The tiny tokenizer, made to put its BOS (``<|im_start|>``) before every text it encodes with special tokens."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)]
    )
    return tokenizer


@pytest.fixture()
def prompt_ids(tiny_tokenizer):
    return encode_prompts(tiny_tokenizer, PROMPTS, add_special_tokens=False)


def plain_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- encode_prompts ---------------------------------------------------------------------------------------------


def test_a_message_list_goes_through_the_chat_template_with_the_generation_prompt(bos_tokenizer):
    messages = [{"role": "user", "content": "How do I bake bread?"}]
    rendered = bos_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")
    for add_special_tokens in (True, False):
        (ids,) = encode_prompts(bos_tokenizer, [messages], add_special_tokens=add_special_tokens)
        assert ids == plain_ids(bos_tokenizer, rendered)  # the template carries its own special tokens
        assert ids[0] == bos_tokenizer.bos_token_id and ids[1] != bos_tokenizer.bos_token_id


def test_transcripts_are_rendered_as_messages_only_when_asked(tiny_tokenizer):
    transcript = "Human: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"}]
    (rendered,) = encode_prompts(tiny_tokenizer, [transcript], add_special_tokens=False, render_transcripts=True)
    assert rendered == encode_prompts(tiny_tokenizer, [messages], add_special_tokens=False)[0]
    (plain,) = encode_prompts(tiny_tokenizer, [transcript], add_special_tokens=False)
    assert plain == plain_ids(tiny_tokenizer, transcript)
    without_template = copy.deepcopy(tiny_tokenizer)
    without_template.chat_template = None
    (unrendered,) = encode_prompts(without_template, [transcript], add_special_tokens=False, render_transcripts=True)
    assert unrendered == plain


def test_add_special_tokens_puts_the_bos_first_once(bos_tokenizer):
    text = "How do I bake bread?"
    bos = bos_tokenizer.bos_token_id
    texts = [text, bos_tokenizer.bos_token + text]
    with_bos, already_bos = encode_prompts(bos_tokenizer, texts, add_special_tokens=True)
    assert with_bos == [bos, *plain_ids(bos_tokenizer, text)]
    assert already_bos == with_bos  # a text that starts with the BOS does not get a second one
    (without,) = encode_prompts(bos_tokenizer, [text], add_special_tokens=False)
    assert without == plain_ids(bos_tokenizer, text)


def test_max_prompt_tokens_keeps_the_last_tokens(bos_tokenizer):
    text = PROMPTS[2]
    (full,) = encode_prompts(bos_tokenizer, [text], add_special_tokens=True)
    assert len(full) > 5
    (kept,) = encode_prompts(bos_tokenizer, [text], add_special_tokens=True, max_prompt_tokens=5)
    assert kept == full[-5:]
    assert encode_prompts(bos_tokenizer, [text], add_special_tokens=True, max_prompt_tokens=len(full) + 10) == [full]


# --- end of sequence --------------------------------------------------------------------------------------------


def test_trim_at_end_of_sequence_keeps_the_first_end_and_nothing_after():
    assert trim_at_end_of_sequence([5, 2, 7, 2], {2}) == [5, 2]
    assert trim_at_end_of_sequence([5, 9, 2, 7], {2, 9}) == [5, 9]
    assert trim_at_end_of_sequence([2, 5], {2}) == [2]
    assert trim_at_end_of_sequence((5, 6, 7), {2}) == [5, 6, 7]
    assert trim_at_end_of_sequence([], {2}) == []


def test_end_of_sequence_ids_are_the_tokenizers_and_the_generation_configs(tiny_llama, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    tiny_llama.generation_config.eos_token_id = [eos, 7, 9]
    assert end_of_sequence_ids(tiny_llama, tiny_tokenizer) == {eos, 7, 9}
    tiny_llama.generation_config.eos_token_id = 5
    assert end_of_sequence_ids(tiny_llama, tiny_tokenizer) == {5, eos}
    tiny_llama.generation_config.eos_token_id = None
    assert end_of_sequence_ids(tiny_llama, tiny_tokenizer) == {eos}
    assert end_of_sequence_ids(torch.nn.Linear(2, 2), tiny_tokenizer) == {eos}


# --- generate_completions ---------------------------------------------------------------------------------------


def test_greedy_is_deterministic_and_equals_one_prompt_at_a_time(tiny_llama, tiny_tokenizer, prompt_ids):
    batched = generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS)
    assert generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS) == batched
    one_at_a_time = [
        generate_completions(tiny_llama, tiny_tokenizer, [ids], max_new_tokens=MAX_NEW_TOKENS)[0] for ids in prompt_ids
    ]
    assert batched == one_at_a_time
    assert [len(completions) for completions in batched] == [1, 1, 1]
    for (completion,) in batched:
        assert isinstance(completion, Completion) and len(completion.token_ids) == MAX_NEW_TOKENS
        assert completion.text == tiny_tokenizer.decode(completion.token_ids, skip_special_tokens=True)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_batch_smaller_than_the_sequences_gives_the_same_greedy_result(
    tiny_llama, tiny_tokenizer, prompt_ids, batch_size
):
    expected = generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS)
    small = generate_completions(
        tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size
    )
    assert small == expected


def test_a_completion_ends_at_the_first_end_of_sequence_id(tiny_llama, tiny_tokenizer, prompt_ids):
    ((free,),) = generate_completions(tiny_llama, tiny_tokenizer, prompt_ids[:1], max_new_tokens=MAX_NEW_TOKENS)
    ids = free.token_ids
    position = next(index for index in range(2, len(ids)) if ids[index] not in ids[:index])
    stop = ids[position]
    tiny_llama.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, stop]
    ((trimmed,),) = generate_completions(tiny_llama, tiny_tokenizer, prompt_ids[:1], max_new_tokens=MAX_NEW_TOKENS)
    assert trimmed.token_ids == ids[: position + 1]
    assert trimmed.text == tiny_tokenizer.decode(trimmed.token_ids, skip_special_tokens=True)


def test_num_return_sequences_are_grouped_per_prompt(tiny_llama, tiny_tokenizer, prompt_ids):
    torch.manual_seed(0)
    grouped = generate_completions(
        tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS, num_return_sequences=3, do_sample=True
    )
    assert [len(completions) for completions in grouped] == [3, 3, 3]
    for completions in grouped:
        assert len({tuple(completion.token_ids) for completion in completions}) == 3  # sampled, not copies


def test_a_seeded_sampled_run_is_reproducible(tiny_llama, tiny_tokenizer, prompt_ids):
    def sample(seed):
        torch.manual_seed(seed)
        return generate_completions(
            tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS, num_return_sequences=2,
            do_sample=True, temperature=0.7,
        )

    first = sample(0)
    assert sample(0) == first
    assert sample(1) != first


def test_every_generate_call_holds_at_most_batch_size_sequences(tiny_llama, tiny_tokenizer, prompt_ids, monkeypatch):
    calls = []
    generate = tiny_llama.generate

    def recording_generate(**kwargs):
        calls.append(kwargs["input_ids"].shape[0] * kwargs["num_return_sequences"])
        return generate(**kwargs)

    monkeypatch.setattr(tiny_llama, "generate", recording_generate)
    torch.manual_seed(0)
    grouped = generate_completions(
        tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=2, num_return_sequences=5, do_sample=True, batch_size=2
    )
    assert [len(completions) for completions in grouped] == [5, 5, 5]
    assert calls == [2, 2, 1] * 3
    calls.clear()
    generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=2, num_return_sequences=2,
                         do_sample=True, batch_size=4)
    assert calls == [4, 2]


@pytest.mark.parametrize("training", [True, False])
def test_the_models_mode_is_restored(tiny_llama, tiny_tokenizer, prompt_ids, monkeypatch, training):
    tiny_llama.train(training)
    modes = []
    generate = tiny_llama.generate

    def recording_generate(**kwargs):
        modes.append(tiny_llama.training)
        return generate(**kwargs)

    monkeypatch.setattr(tiny_llama, "generate", recording_generate)
    generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=2)
    assert modes == [False]  # generation runs in eval mode
    assert tiny_llama.training is training
    assert all(module.training is training for module in tiny_llama.modules())


def test_bad_sizes_are_errors(tiny_llama, tiny_tokenizer, prompt_ids):
    for sizes in ({"max_new_tokens": 0}, {"max_new_tokens": 2, "num_return_sequences": 0},
                  {"max_new_tokens": 2, "batch_size": 0}):
        with pytest.raises(ValueError, match="must be at least 1"):
            generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, **sizes)


def test_seed_makes_sampling_reproducible_and_leaves_the_global_random_state_alone(
    tiny_llama, tiny_tokenizer, prompt_ids
):
    def sample(seed, top_p=0.9):
        return generate_completions(
            tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS, num_return_sequences=2,
            do_sample=True, temperature=0.6, top_p=top_p, seed=seed,
        )

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = sample(0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert sample(0) == first and sample(1) != first
    torch.manual_seed(0)
    unseeded = generate_completions(
        tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS, num_return_sequences=2,
        do_sample=True, temperature=0.6, top_p=0.9,
    )
    assert unseeded == first  # seed=s draws exactly what torch.manual_seed(s) before the call draws
    # top_p this small keeps only the most likely token: sampling becomes greedy decoding.
    greedy = generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS)
    assert [rows[0] for rows in sample(5, top_p=1e-6)] == [rows[0] for rows in greedy]


def test_bad_sampling_settings_are_errors(tiny_llama, tiny_tokenizer, prompt_ids):
    for settings in ({"temperature": 0.0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="sampling needs temperature > 0 and 0 < top_p <= 1"):
            generate_completions(tiny_llama, tiny_tokenizer, prompt_ids, max_new_tokens=2, do_sample=True, **settings)


class FakeVLLM:
    """Stands in for the vllm package: records what the engine is built with and asked for, and returns one fixed
    token sequence per sample (the prompt's last token, then 5, then the EOS id, then 7)."""

    def __init__(self, eos_id):
        self.eos_id = eos_id
        self.engines, self.calls = [], []

    def install(self, monkeypatch):
        import sys
        import types

        fake = self
        vllm = types.ModuleType("vllm")
        inputs, lora, request = (types.ModuleType(name) for name in ("vllm.inputs", "vllm.lora", "vllm.lora.request"))

        class LLM:
            def __init__(self, **settings):
                fake.engines.append(settings)

            def generate(self, requests, sampling, lora_request=None, use_tqdm=True):
                fake.calls.append({"requests": requests, "sampling": sampling, "lora": lora_request})
                return [types.SimpleNamespace(outputs=[
                    types.SimpleNamespace(token_ids=[request["prompt_token_ids"][-1], 5, fake.eos_id, 7])
                    for _ in range(sampling.n)]) for request in requests]

        vllm.LLM = LLM
        vllm.SamplingParams = lambda **settings: types.SimpleNamespace(**settings)
        inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
        request.LoRARequest = lambda name, number, path: (name, number, path)
        for name, module in (("vllm", vllm), ("vllm.inputs", inputs), ("vllm.lora", lora),
                             ("vllm.lora.request", request)):
            monkeypatch.setitem(sys.modules, name, module)


def test_vllm_gets_the_prompts_sampling_and_adapters_and_completions_end_at_eos(tmp_path, tiny_tokenizer, monkeypatch):
    fake = FakeVLLM(tiny_tokenizer.eos_token_id)
    fake.install(monkeypatch)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    trained, reference = generate_with_vllm(
        "org/base", tiny_tokenizer, [[1, 2, 3], [4]], max_new_tokens=9, num_return_sequences=2, do_sample=True,
        temperature=0.6, top_p=0.9, seed=3, adapters=(adapter, None), revision="v1", dtype="bfloat16",
    )
    (engine,) = fake.engines
    assert engine["model"] == "org/base" and engine["revision"] == "v1" and engine["dtype"] == "bfloat16"
    assert engine["enable_lora"] and engine["max_lora_rank"] == 8 and engine["seed"] == 3
    sampling = fake.calls[0]["sampling"]
    assert (sampling.n, sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.seed) == (2, 9, 0.6, 0.9, 3)
    assert [call["lora"] for call in fake.calls] == [("adapter-1", 1, str(adapter)), None]
    assert fake.calls[0]["requests"] == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4]}]
    eos = tiny_tokenizer.eos_token_id
    assert [[row.token_ids for row in rows] for rows in trained] == [[[3, 5, eos]] * 2, [[4, 5, eos]] * 2]
    assert trained == reference and trained[0][0].text == tiny_tokenizer.decode([3, 5, eos], skip_special_tokens=True)
    greedy, = generate_with_vllm("org/base", tiny_tokenizer, [[1]], max_new_tokens=2)
    assert fake.calls[-1]["sampling"].temperature == 0.0 and not fake.engines[-1]["enable_lora"]
    assert len(greedy) == 1


def test_the_generation_backend_auto_is_hf_without_vllm_and_vllm_is_refused_without_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert generation_backend("auto") == "hf" and generation_backend("hf") == "hf"
    with pytest.raises(ValueError, match=r"generation_backend: vllm needs the vllm package \(pip install vllm\)"):
        generation_backend("vllm")
    with pytest.raises(ValueError, match="generation_backend must be one of"):
        generation_backend("tgi")
