"""Shared fixtures: tiny random models and an offline tokenizer built in the test process, helpers that write and
check preference data files, and padded batches for log-probability tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow
import pyarrow.parquet
import pytest
import torch
import yaml

#: Prompts, short replies and long replies of the tiny preference data (:func:`write_multi_label_pairs`).
PAIR_PROMPTS = ["Human: How do I bake bread?\n\nAssistant:", "Human: Tell me a joke.\n\nAssistant:",
                "Human: Is it safe to swim after eating?\n\nAssistant:", "Human: Help me write a poem.\n\nAssistant:"]
SHORT_REPLIES = ["No.", "Sure.", "Yes.", "Fine."]
LONG_REPLIES = ["I cannot help with that request, but here is a safe and kind answer.",
                "The quick brown fox jumps over the lazy dog, and that is the joke.",
                "Please be kind and safe: wait a little while before you swim.",
                "Here is a short answer about bread, flour, water, salt and yeast."]


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained in-process on a few sentences (no downloads), with a chat template."""
    from paretoalign.models import CHATML_TEMPLATE, train_byte_level_tokenizer

    corpus = [
        "Human: How do I bake bread? Assistant: Mix flour, water, salt and yeast, then bake it.",
        "The quick brown fox jumps over the lazy dog. I cannot help with that request.",
        "Sure, here is a short answer. No. Yes. Please be kind and safe.",
    ] * 20
    return train_byte_level_tokenizer(corpus, vocab_size=300, chat_template=CHATML_TEMPLATE)


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


def write_jsonl(path: Path, rows) -> Path:
    """Write ``rows`` one per line as JSON Lines (UTF-8): a row that is a ``str`` is written as it stands (a blank or
    malformed line), any other row as JSON."""
    lines = (row if isinstance(row, str) else json.dumps(row) for row in rows)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list:
    """The rows of a JSON Lines file, one per line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def multi_label_row(prompt="Human: hi\n\nAssistant:", response_0="Hello!", response_1="Go away.", **labels) -> dict:
    """A row of a multi-label preference file; ``labels`` maps objective names to 0, 1 or None."""
    return {"prompt": prompt, "response_0": response_0, "response_1": response_1, "labels": labels}


def assert_located(error, path: Path, line: int, field: str | None) -> None:
    """The :class:`PreferenceDataError` ``error`` carries and names the file, the line (or row) and the field."""
    assert error.path == str(path)
    assert error.line == line
    assert error.field == field
    message = str(error)
    assert path.name in message
    assert f"{error.unit} {line}" in message
    if field is not None:
        assert repr(field) in message


def make_batch(vocab_size: int, seed: int = 0):
    """Three right-padded prompt+response rows of length 10: (input_ids, attention_mask, response_mask).

    Row 0 attends to all 10 tokens, row 1 to 8, row 2 to 6; the responses are tokens 4-9, 3-7 and 5 (6, 5 and 1
    tokens); padding tokens are 0 and the other ids are drawn from [3, vocab_size)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (3, 10), generator=generator)
    attention_mask = torch.ones(3, 10, dtype=torch.long)
    attention_mask[1, 8:] = 0
    attention_mask[2, 6:] = 0
    response_mask = torch.zeros(3, 10, dtype=torch.long)
    response_mask[0, 4:10] = 1
    response_mask[1, 3:8] = 1
    response_mask[2, 5:6] = 1
    input_ids[attention_mask == 0] = 0
    return input_ids, attention_mask, response_mask


def logits_of(model, input_ids, attention_mask) -> torch.Tensor:
    """The model's logits [B, T, V], computed without autograd."""
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def perturb_lora_b(peft_model, seed: int = 1) -> None:
    """Give the LoRA B matrices (zero at initialisation) random values N(0, 0.1^2), so the adapter changes the model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def write_multi_label_pairs(path: Path, copies: int = 4) -> Path:
    """Pairs where `concise` prefers the short reply everywhere and `safe` the long one on the first prompt."""
    rows = []
    for _ in range(copies):
        for i, prompt in enumerate(PAIR_PROMPTS):
            rows.append({"prompt": prompt, "response_0": SHORT_REPLIES[i], "response_1": LONG_REPLIES[i],
                         "labels": {"concise": 0, "safe": 1 if i == 0 else 0}})
    return write_jsonl(path, rows)


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
def hh_rlhf() -> str:
    """The name of the shipped HH-RLHF slices: ``shipped_data / hh_rlhf`` is their folder."""
    return "hh-rlhf"


@pytest.fixture(scope="session")
def pair_prompts() -> list[str]:
    """The prompts of :func:`write_multi_label_pairs`."""
    return list(PAIR_PROMPTS)


@pytest.fixture()
def lora_run_config(tmp_path, tiny_model_dir):
    """A YAML config of a 2-step LoRA run of the tiny Llama on :func:`write_multi_label_pairs` data, held out on the
    same pairs, writing into ``tmp_path / "run"``."""
    write_multi_label_pairs(tmp_path / "pairs.jsonl")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "eval_data": "pairs.jsonl",
        "use_lora": True, "lora_r": 4, "lora_alpha": 8, "max_length": 64, "per_device_train_batch_size": 4,
        "max_steps": 2, "learning_rate": 1e-2, "output_dir": str(tmp_path / "run"), "report_to": "none",
        "save_strategy": "no", "use_cpu": True, "disable_tqdm": True,
    }))
    return config_file


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache in ``tmp_path / "hf-home"``: ``HF_HOME`` points at it, ``HF_HUB_OFFLINE`` is set
    (in the environment and in ``huggingface_hub.constants``, which reads both at import time), and the value is a
    function ``add(hub_id, model, tokenizer, revision="main") -> snapshot folder`` that lays out a model as
    ``hf download`` does: ``hub/models--ORG--NAME/snapshots/<commit>/<files>`` and ``refs/<revision>`` holding the
    commit (40 hex digits derived from the id and the revision)."""
    import hashlib

    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def add(hub_id: str, model, tokenizer, revision: str = "main") -> Path:
        repository = home / "hub" / ("models--" + hub_id.replace("/", "--"))
        commit = hashlib.sha1(f"{hub_id}@{revision}".encode()).hexdigest()
        snapshot = repository / "snapshots" / commit
        model.save_pretrained(snapshot)
        tokenizer.save_pretrained(snapshot)
        (repository / "refs").mkdir(parents=True, exist_ok=True)
        (repository / "refs" / revision).write_text(commit)
        return snapshot

    return add


def free_port() -> int:
    """A free TCP port on the loopback interface, for the rendezvous of a multi-process launch."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_processes(target: list[str], processes: int, port: int, home: Path, timeout: int) -> None:
    """Run ``python *target`` (a script and its arguments, or ``["-m", module, ...]``) as one process, or as
    ``processes`` processes through ``torch.distributed.run`` (torchrun + gloo on CPU: the launcher ``accelerate
    launch --multi_gpu`` uses, and accelerate reads the same RANK / WORLD_SIZE), with one thread each and ``HOME`` set
    to ``home``; fails, showing the end of its output, unless every process exits 0 within ``timeout`` seconds (a
    hang fails here)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home)}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                                          "--master_port", str(port)]
    result = subprocess.run([sys.executable, *launcher, *target], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.fixture()
def data_parallel_config(tmp_path, tiny_model_dir):
    """The factory ``(engine, name="run", **overrides) -> YAML path`` of a 3-step full fine-tuning RACO run (K = 2,
    weights 0.6 / 0.4) on :func:`write_multi_label_pairs` data, the run the multi-process tests launch with 1 and 2
    processes; ``overrides`` replace or add config fields, and the file is ``tmp_path / f"{name}.yaml"``."""

    def write(engine: str, name: str = "run", **overrides) -> Path:
        write_multi_label_pairs(tmp_path / "pairs.jsonl")
        config_file = tmp_path / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump({
            "model_name_or_path": str(tiny_model_dir), "train_data": "pairs.jsonl", "weights": [0.6, 0.4],
            "weighting": "raco", "engine": engine, "use_lora": False, "max_length": 64, "max_steps": 3,
            "learning_rate": 1e-2, "save_strategy": "no", "report_to": "none", "use_cpu": True, "seed": 0,
            "disable_tqdm": True, "dataloader_drop_last": True, **overrides,
        }))
        return config_file

    return write


def write_hub_dataset(folder: Path, splits: dict, config_name: str = "default") -> str:
    """A local dataset repository laid out as the Hub stores one, ``data/SPLIT-00000-of-00001.parquet`` per split
    (``splits``: split -> rows) and a README.md whose YAML front matter declares the splits of the config
    ``config_name``; returns the folder."""
    (folder / "data").mkdir(parents=True)
    declared = []
    for split, rows in splits.items():
        path = folder / "data" / f"{split}-00000-of-00001.parquet"
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
        declared.append({"split": split, "path": f"data/{split}-*"})
    front_matter = yaml.safe_dump({"configs": [{"config_name": config_name, "data_files": declared}]})
    (folder / "README.md").write_text(f"---\n{front_matter}---\n# A test dataset\n")
    return str(folder)


def write_hub_data_dirs(folder: Path, data_dirs: dict) -> str:
    """A local dataset repository with one folder per subset and no declared configs, as Anthropic/hh-rlhf is stored:
    ``DATA_DIR/SPLIT-00000-of-00001.parquet`` (``data_dirs``: data_dir -> split -> rows), read with
    ``load_dataset(folder, data_dir=DATA_DIR)``; returns the folder."""
    for data_dir, splits in data_dirs.items():
        (folder / data_dir).mkdir(parents=True)
        for split, rows in splits.items():
            pyarrow.parquet.write_table(
                pyarrow.Table.from_pylist(rows), folder / data_dir / f"{split}-00000-of-00001.parquet"
            )
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A test dataset with one folder per subset\n")
    return str(folder)


def cache_hub_dataset(hub_id: str, folder: str, config_name: str | None = None) -> Path:
    """Prepare the local repository ``folder`` in ``datasets``' cache under the Hub id ``hub_id``, as a download of
    ``hub_id`` leaves it (``HF_DATASETS_CACHE/ORG___NAME/CONFIG/VERSION/HASH``), so that ``load_dataset(hub_id)``
    finds it offline; returns that folder. Use with the ``datasets_cache`` fixture."""
    import shutil

    from datasets.naming import camelcase_to_snakecase

    builder = datasets.load_dataset_builder(folder, config_name)
    builder.download_and_prepare()
    prepared = Path(builder.cache_dir)
    organisation, name = hub_id.split("/")
    target = Path(datasets.config.HF_DATASETS_CACHE) / f"{organisation}___{camelcase_to_snakecase(name)}"
    target = target.joinpath(*prepared.parts[-3:])
    shutil.copytree(prepared, target)
    return target


@pytest.fixture()
def datasets_cache(tmp_path, monkeypatch):
    """``datasets``' cache of prepared datasets in ``tmp_path``, so that no test writes to the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def session_fixture(function, name: str | None = None):
    """A session-scoped fixture whose value is the plain helper ``function``, called ``name`` (by default the
    function's own name) and documented by the function's docstring: tests take the helper as an argument."""

    def helper():
        return function

    helper.__doc__ = function.__doc__
    return pytest.fixture(scope="session", name=name or function.__name__)(helper)


make_multi_label_pairs = session_fixture(write_multi_label_pairs, "make_multi_label_pairs")
free_port_fixture = session_fixture(free_port)
run_processes_fixture = session_fixture(run_processes)
write_hub_dataset_fixture = session_fixture(write_hub_dataset)
write_hub_data_dirs_fixture = session_fixture(write_hub_data_dirs)
cache_hub_dataset_fixture = session_fixture(cache_hub_dataset)
make_preference_config = session_fixture(tiny_preference_config, "make_preference_config")
make_tiny_llama = session_fixture(build_tiny_llama, "make_tiny_llama")
make_tiny_llama_config = session_fixture(tiny_llama_config, "make_tiny_llama_config")
write_jsonl_fixture = session_fixture(write_jsonl)
read_jsonl_fixture = session_fixture(read_jsonl)
multi_label_row_fixture = session_fixture(multi_label_row)
assert_located_fixture = session_fixture(assert_located)
make_batch_fixture = session_fixture(make_batch)
logits_of_fixture = session_fixture(logits_of)
perturb_lora_b_fixture = session_fixture(perturb_lora_b)
