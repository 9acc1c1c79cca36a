"""Models named by Hugging Face Hub id (paretoalign.models, paretoalign.config, the commands, the reward_model
reward), read offline from a Hugging Face cache laid out in the test (the ``hub_cache`` fixture)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from transformers import AutoModelForCausalLM, LlamaForSequenceClassification

from paretoalign.cli import main
from paretoalign.config import ModelArguments
from paretoalign.models import load_policy, load_trained
from paretoalign.rewards.builtin import RewardModel, get_reward

HUB_ID = "tiny-org/tiny-llama"


@pytest.fixture()
def cached_llama(hub_cache, make_tiny_llama, tiny_tokenizer):
    """The tiny Llama (seed 0) cached as ``tiny-org/tiny-llama`` at ``main``, and another one (seed 1) at ``v2``;
    returns both models by revision."""
    models = {"main": make_tiny_llama(len(tiny_tokenizer), seed=0), "v2": make_tiny_llama(len(tiny_tokenizer), seed=1)}
    for revision, model in models.items():
        hub_cache(HUB_ID, model, tiny_tokenizer, revision=revision)
    return models


def same_weights(first, second) -> bool:
    first_state, second_state = first.state_dict(), second.state_dict()
    return first_state.keys() == second_state.keys() and all(
        torch.equal(first_state[name].float(), second_state[name].float()) for name in first_state
    )


def run_config(tmp_path, make_multi_label_pairs, **values) -> str:
    """A YAML config of a 2-step LoRA run writing into ``tmp_path / "run"``, with ``values`` added."""
    make_multi_label_pairs(tmp_path / "pairs.jsonl")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": HUB_ID, "train_data": "pairs.jsonl", "eval_data": "pairs.jsonl", "use_lora": True,
        "lora_r": 4, "lora_alpha": 8, "max_length": 64, "per_device_train_batch_size": 4, "max_steps": 2,
        "learning_rate": 1e-2, "output_dir": str(tmp_path / "run"), "report_to": "none", "save_strategy": "no",
        "use_cpu": True, "disable_tqdm": True, **values,
    }))
    return str(config_file)


def test_load_policy_reads_a_hub_id_from_the_cache_offline(cached_llama):
    model, tokenizer = load_policy(HUB_ID)
    assert model.name_or_path == HUB_ID and tokenizer.padding_side == "right"
    assert model.dtype == torch.float32
    assert same_weights(model, cached_llama["main"])


def test_train_by_hub_id_records_the_id_and_eval_reloads_it(
    tmp_path, cached_llama, make_multi_label_pairs, make_batch, logits_of
):
    config_file = run_config(tmp_path, make_multi_label_pairs)
    assert main(["train", "--config", config_file]) == 0
    adapter = tmp_path / "run" / "model"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model_name_or_path"] == HUB_ID

    policy, _ = load_trained(adapter)
    input_ids, attention_mask, _ = make_batch(policy.config.vocab_size)
    with policy.disable_adapter():
        base_logits = logits_of(policy, input_ids, attention_mask)
    assert torch.allclose(base_logits, logits_of(cached_llama["main"], input_ids, attention_mask), atol=1e-6)
    assert main(["eval", "--model", str(adapter), "--config", config_file]) == 0
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(report["metrics"]) == {"concise", "safe"}


def test_model_revision_selects_another_snapshot(cached_llama):
    at_v2, _ = ModelArguments(model_name_or_path=HUB_ID, model_revision="v2").load_model()
    at_main, _ = ModelArguments(model_name_or_path=HUB_ID).load_model()
    assert same_weights(at_v2, cached_llama["v2"]) and same_weights(at_main, cached_llama["main"])
    assert not same_weights(at_v2, at_main)


def test_torch_dtype_bfloat16_gives_bfloat16_parameters(cached_llama):
    model, _ = ModelArguments(model_name_or_path=HUB_ID, torch_dtype="bfloat16").load_model()
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    auto, _ = ModelArguments(model_name_or_path=HUB_ID, torch_dtype="auto").load_model()
    assert auto.dtype == torch.float32
    with pytest.raises(ValueError, match=r"torch_dtype must be one of \['auto', 'bfloat16', 'float16', 'float32'\]"):
        ModelArguments(model_name_or_path=HUB_ID, torch_dtype="float8").load_model()


def test_attn_implementation_is_passed_to_from_pretrained(cached_llama):
    model, _ = ModelArguments(model_name_or_path=HUB_ID, attn_implementation="eager").load_model()
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize("revision, command", [(None, "`hf download tiny-org/missing`"),
                                               ("v9", "`hf download tiny-org/missing --revision v9`")])
def test_an_uncached_id_offline_fails_naming_the_download_and_writes_nothing(
    tmp_path, hub_cache, make_multi_label_pairs, capsys, revision, command
):
    values = {"model_name_or_path": "tiny-org/missing"}
    if revision is not None:
        values["model_revision"] = revision
    config_file = run_config(tmp_path, make_multi_label_pairs, **values)
    assert main(["train", "--config", config_file]) == 2
    printed = capsys.readouterr().out.replace("\n", "")
    assert "'tiny-org/missing'" in printed and command in printed and "HF_HUB_OFFLINE" in printed
    assert not (tmp_path / "run").exists()


def test_an_uncached_revision_of_a_cached_id_offline_is_the_same_error(cached_llama):
    with pytest.raises(FileNotFoundError, match=r"`hf download tiny-org/tiny-llama --revision v3`"):
        load_policy(HUB_ID, revision="v3")


def hub_error(error_class):
    """An instance of a huggingface_hub HTTP error, built without the HTTP response its constructor asks for."""
    error = error_class.__new__(error_class)
    error.args = ("404 Client Error",)
    return error


@pytest.mark.parametrize("error_class, words", [(RepositoryNotFoundError, "nor a model on the Hugging Face Hub"),
                                                (GatedRepoError, "gated model")])
def test_an_unknown_or_gated_id_online_fails_naming_the_id(monkeypatch, error_class, words):
    def from_pretrained(name, **options):
        try:
            raise hub_error(error_class)
        except error_class as cause:
            raise OSError(f"{name} is not a local folder and is not a valid model identifier") from cause

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    with pytest.raises(FileNotFoundError, match=words) as raised:
        load_policy(HUB_ID)
    assert f"'{HUB_ID}'" in str(raised.value) and f"`hf download {HUB_ID}`" in str(raised.value)


def test_the_reward_model_reward_by_hub_id(hub_cache, tiny_tokenizer, make_tiny_llama_config):
    config = make_tiny_llama_config(len(tiny_tokenizer), num_labels=1)
    snapshots = {}
    for seed, revision in [(0, "main"), (1, "v2")]:
        torch.manual_seed(seed)
        snapshots[revision] = hub_cache("tiny-org/tiny-rm", LlamaForSequenceClassification(config), tiny_tokenizer,
                                        revision=revision)
    prompts, completions = ["Human: hi\n\nAssistant:"] * 2, [" Sure.", " I cannot help with that request."]
    for revision, snapshot in snapshots.items():
        by_id = get_reward("reward_model", path="tiny-org/tiny-rm", device="cpu",
                           revision=None if revision == "main" else revision)
        expected = RewardModel(snapshot, device="cpu")(prompts, completions)
        assert by_id(prompts, completions) == pytest.approx(expected, abs=1e-6)
    main_scores = RewardModel(snapshots["main"], device="cpu")(prompts, completions)
    assert main_scores != pytest.approx(RewardModel(snapshots["v2"], device="cpu")(prompts, completions))
    with pytest.raises(FileNotFoundError, match=r"'tiny-org/absent-rm'.*`hf download tiny-org/absent-rm`"):
        get_reward("reward_model", path="tiny-org/absent-rm", device="cpu")
