"""Shared fixtures: tiny random models and an offline tokenizer built in the test process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

#: Prompts, short replies and long replies of the tiny preference data (:func:`write_multi_label_pairs`).
PAIR_PROMPTS = ["Human: How do I bake bread?\n\nAssistant:", "Human: Tell me a joke.\n\nAssistant:",
                "Human: Is it safe to swim after eating?\n\nAssistant:", "Human: Help me write a poem.\n\nAssistant:"]
SHORT_REPLIES = ["No.", "Sure.", "Yes.", "Fine."]
LONG_REPLIES = ["I cannot help with that request, but here is a safe and kind answer.",
                "The quick brown fox jumps over the lazy dog, and that is the joke.",
                "Please be kind and safe: wait a little while before you swim.",
                "Here is a short answer about bread, flour, water, salt and yeast."]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained in-process on a few sentences (no downloads), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Human: How do I bake bread? Assistant: Mix flour, water, salt and yeast, then bake it.",
        "The quick brown fox jumps over the lazy dog. I cannot help with that request.",
        "Sure, here is a short answer. No. Yes. Please be kind and safe.",
    ] * 20
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_config(vocab_size: int, **settings):
    """The config of a 2-layer Llama with hidden size 32 (fast on CPU); ``settings`` are added to it."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **settings,
    )


def build_tiny_llama(vocab_size: int, seed: int = 0):
    """A 2-layer Llama with hidden size 32: random weights, fast on CPU."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(vocab_size, tie_word_embeddings=False))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Every test sees a 1000-column console, whatever the terminal it runs in: rich tables keep their cells whole.
    A test that checks behaviour at another width sets ``COLUMNS`` itself."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_llama(tiny_tokenizer):
    return build_tiny_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama and its tokenizer saved as a local Hugging Face directory."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def write_multi_label_pairs(path: Path, copies: int = 4) -> Path:
    """Pairs where `concise` prefers the short reply everywhere and `safe` the long one on the first prompt."""
    rows = []
    for _ in range(copies):
        for i, prompt in enumerate(PAIR_PROMPTS):
            rows.append({"prompt": prompt, "response_0": SHORT_REPLIES[i], "response_1": LONG_REPLIES[i],
                         "labels": {"concise": 0, "safe": 1 if i == 0 else 0}})
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def tiny_preference_config(tmp_path: Path, model_dir: Path, **overrides):
    """A :class:`ParetoPreferenceConfig` of 12 quick steps on :func:`write_multi_label_pairs` data (K = 2)."""
    from paretoalign.trainers.preference import ParetoPreferenceConfig

    data = write_multi_label_pairs(tmp_path / "pairs.jsonl")
    values = dict(
        model_name_or_path=str(model_dir), train_data=str(data), eval_data=str(data), weights=[0.5, 0.5],
        weighting="raco", use_lora=False, max_length=64, per_device_train_batch_size=4,
        per_device_eval_batch_size=8, max_steps=12, learning_rate=3e-3, lr_scheduler_type="constant",
        output_dir=str(tmp_path / "run"), save_strategy="no", report_to="none", seed=0, use_cpu=True,
        disable_tqdm=True,
    )
    values.update(overrides)
    return ParetoPreferenceConfig(**values)


@pytest.fixture(scope="session")
def shipped_data() -> Path:
    """The data slices shipped inside the package (``builtin:NAME`` resolves inside this folder)."""
    from paretoalign.data.files import builtin_data_path

    return builtin_data_path("hh-rlhf").parent


@pytest.fixture(scope="session")
def pair_prompts() -> list[str]:
    """The prompts of :func:`write_multi_label_pairs`."""
    return list(PAIR_PROMPTS)


@pytest.fixture(scope="session")
def make_multi_label_pairs():
    """The factory :func:`write_multi_label_pairs` ``(path, copies=4) -> path``."""
    return write_multi_label_pairs


@pytest.fixture(scope="session")
def make_preference_config():
    """The factory :func:`tiny_preference_config` ``(tmp_path, model_dir, **overrides)``."""
    return tiny_preference_config


@pytest.fixture(scope="session")
def make_tiny_llama():
    """The factory :func:`build_tiny_llama` ``(vocab_size, seed=0)``."""
    return build_tiny_llama


@pytest.fixture(scope="session")
def make_tiny_llama_config():
    """The factory :func:`tiny_llama_config` ``(vocab_size, **settings)``."""
    return tiny_llama_config
