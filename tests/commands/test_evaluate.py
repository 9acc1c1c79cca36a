"""``paretoalign eval`` (paretoalign.commands.evaluate): its reward-spec fields, and the command end to end on a tiny
random Llama against completions generated here token by token and against the run's own held-out metrics."""

from __future__ import annotations

import json
import math
import statistics
import re

import pytest
import torch
import yaml

from paretoalign.cli import main
from paretoalign.commands.evaluate import evaluate_trained
from paretoalign.models import apply_lora, load_policy, save_policy
from paretoalign.rewards.builtin import get_reward
from paretoalign.rewards.specs import parse_reward_spec
from paretoalign.trainers.preference import ParetoPreferenceConfig

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

MAX_NEW_TOKENS = 8

REWARD_MODULE = '''
def _text(completion):
    return completion if isinstance(completion, str) else completion[0]["content"]


def characters(prompts, completions, **kwargs):
    return [float(len(_text(c))) for c in completions]


def even_bonus(prompts, completions, bonus, **kwargs):
    """len + bonus (a column of the prompts file) where the completion has an even number of characters, else None."""
    return [float(len(_text(c)) + b) if len(_text(c)) % 2 == 0 else None for c, b in zip(completions, bonus)]
'''


def test_reward_specs_take_the_rl_syntax_and_name_the_field():
    assert parse_reward_spec("length:target=40,unit=words", "eval_rewards[0]") == {
        "name": "length", "target": 40, "unit": "words"
    }
    assert parse_reward_spec("format", "eval_rewards[0]") == {"name": "format"}
    assert parse_reward_spec("{name: length, target: 40}", "eval_judge") == {"name": "length", "target": 40}
    assert parse_reward_spec({"function": "module:fn", "scale": 2}, "eval_judge") == {
        "function": "module:fn", "scale": 2
    }
    with pytest.raises(ValueError, match=r"eval_rewards\[2\]: unknown reward 'no_such_reward'; valid rewards: answer"):
        parse_reward_spec({"name": "no_such_reward"}, "eval_rewards[2]")
    with pytest.raises(ValueError, match="eval_judge: a reward spec needs exactly one of 'name', 'function' or 'sum'"):
        parse_reward_spec({"name": "length", "function": "module:fn"}, "eval_judge")
    with pytest.raises(ValueError, match="eval_judge: a reward spec is a mapping"):
        parse_reward_spec(3, "eval_judge")


def config_of(tmp_path, **overrides) -> ParetoPreferenceConfig:
    values = dict(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True, max_length=64)
    return ParetoPreferenceConfig(**{**values, **overrides})


def test_config_checks_the_generation_fields(tmp_path):
    config = config_of(tmp_path, eval_rewards=["length:target=4", {"name": "length", "label": "long", "target": 40}],
                       eval_judge="{name: length, target: 4}")
    assert config.eval_rewards == [{"name": "length", "target": 4}, {"name": "length", "label": "long", "target": 40}]
    assert config.eval_judge == {"name": "length", "target": 4}
    assert (config.max_eval_prompts, config.eval_max_new_tokens, config.eval_prompts) == (16, 64, None)
    with pytest.raises(ValueError, match=r"eval_rewards\[1\]: unknown reward 'no_such_reward'"):
        config_of(tmp_path, eval_rewards=[{"name": "length", "target": 4}, {"name": "no_such_reward"}])
    with pytest.raises(ValueError, match=r"eval_rewards share the name\(s\) \['length'\]; give each a distinct"):
        config_of(tmp_path, eval_rewards=["length:target=4", "length:target=8"])
    with pytest.raises(ValueError, match="eval_judge: unknown reward 'judge_of_nothing'"):
        config_of(tmp_path, eval_judge="judge_of_nothing")
    with pytest.raises(ValueError, match="eval_max_new_tokens must be at least 1"):
        config_of(tmp_path, eval_max_new_tokens=0)


# --- end to end on a tiny random Llama -------------------------------------------------------------------------------


@torch.no_grad()
def greedy_completion(model, tokenizer, prompt, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy decoding one token at a time from the full logits, one prompt at a time (no padding, no generate)."""
    model.eval()
    if isinstance(prompt, list):
        prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt)["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
        new.append(token)
        if token == tokenizer.eos_token_id:
            break
    return tokenizer.decode(new, skip_special_tokens=True)


def expected_win_rate(trained: list[float], reference: list[float]) -> float:
    return sum(1.0 if t > r else 0.5 if t == r else 0.0 for t, r in zip(trained, reference)) / len(trained)


def mean_of_scored(values: list[float | None]) -> float:
    scored = [value for value in values if value is not None]
    return sum(scored) / len(scored)


@pytest.fixture()
def perturbed_model_dir(tmp_path, tiny_model_dir):
    """Full weights: the tiny Llama with every parameter moved by seeded noise (so its greedy completions differ)."""
    model, tokenizer = load_policy(tiny_model_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * parameter.std() * torch.randn(parameter.shape, generator=generator))
    return save_policy(model, tokenizer, tmp_path / "full" / "model")


def test_eval_command_scores_completions_and_the_win_rate_against_the_base_model(
    tmp_path, tiny_model_dir, perturbed_model_dir, make_multi_label_pairs, capsys
):
    make_multi_label_pairs(tmp_path / "pairs.jsonl")
    (tmp_path / "eval_rewards.py").write_text(REWARD_MODULE)
    prompts = [[{"role": "user", "content": text}] for text in
               ("How do I bake bread?", "Tell me a joke.", "Is it safe to swim?", "Help me write a poem about a fox.",
                "No.", "Please be kind and safe.")]
    bonus = [1, 2, 3, 4, 5, 6]
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": prompt, "bonus": b}) + "\n" for prompt, b in zip(prompts, bonus))
    )
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "eval_data": "pairs.jsonl", "eval_prompts": "prompts.jsonl",
        "max_eval_prompts": 5, "eval_max_new_tokens": MAX_NEW_TOKENS, "per_device_eval_batch_size": 2,
        "eval_rewards": [{"function": "eval_rewards.py:characters"},
                         {"function": "eval_rewards.py:even_bonus", "label": "even"}, "length:target=3,unit=words"],
        "eval_judge": {"function": "eval_rewards.py:characters"},
        "max_length": 64, "use_lora": False, "use_cpu": True, "report_to": "none", "output_dir": str(tmp_path / "x"),
    }))
    assert main(["eval", "--model", str(perturbed_model_dir), "--config", str(config_file)]) == 0
    output = " ".join(capsys.readouterr().out.split())
    report = json.loads((tmp_path / "full" / "eval.json").read_text())
    assert set(report) == {"model", "metrics", "generation"} and set(report["metrics"]) == {"concise", "safe"}

    # the same completions, generated here one prompt and one token at a time
    trained_model, tokenizer = load_policy(perturbed_model_dir)
    base_model, _ = load_policy(tiny_model_dir)
    used, used_bonus = prompts[:5], bonus[:5]
    trained = [greedy_completion(trained_model, tokenizer, prompt) for prompt in used]
    reference = [greedy_completion(base_model, tokenizer, prompt) for prompt in used]
    assert trained != reference
    generation = report["generation"]
    assert generation["prompts"] == 5 and generation["max_new_tokens"] == MAX_NEW_TOKENS
    assert generation["decoding"] == "greedy"
    assert [row["trained"] for row in generation["completions"]] == trained
    assert [row["reference"] for row in generation["completions"]] == reference
    assert [row["prompt"] for row in generation["completions"]] == used

    length = get_reward("length", target=3, unit="words")
    for policy, texts in (("trained", trained), ("reference", reference)):
        characters = [float(len(text)) for text in texts]
        even = [float(len(t) + b) if len(t) % 2 == 0 else None for t, b in zip(texts, used_bonus)]
        scores = generation["rewards"]
        assert scores["characters"][policy] == {"mean": sum(characters) / 5, "scored": 1.0,
                                                "stderr": pytest.approx(statistics.stdev(characters) / math.sqrt(5))}
        assert generation["scores"]["characters"][policy] == characters
        if any(value is not None for value in even):
            assert scores["even"][policy]["mean"] == pytest.approx(mean_of_scored(even), abs=1e-12)
        assert scores["even"][policy]["scored"] == sum(value is not None for value in even) / 5
        words = length(used, [[{"role": "assistant", "content": text}] for text in texts])
        assert scores["length"][policy] == {"mean": pytest.approx(sum(words) / 5, abs=1e-12), "scored": 1.0,
                                            "stderr": pytest.approx(statistics.stdev(words) / math.sqrt(5), abs=1e-12)}

    judged = generation["win_rate_vs_reference"]
    trained_lengths = [float(len(text)) for text in trained]
    reference_lengths = [float(len(text)) for text in reference]
    assert judged["judge"] == "characters" and judged["prompts"] == 5
    assert judged["win_rate"] == expected_win_rate(trained_lengths, reference_lengths)
    assert judged["wins"] == sum(t > r for t, r in zip(trained_lengths, reference_lengths))
    assert judged["losses"] == sum(t < r for t, r in zip(trained_lengths, reference_lengths))
    assert judged["ties"] == 5 - judged["wins"] - judged["losses"]
    assert "generation scores on 5 completions of held-out prompts" in output
    assert f"win rate vs reference under judge 'characters': {judged['win_rate']:.3f} over 5 prompts" in output


def test_untrained_adapter_wins_exactly_half_against_the_reference(
    tmp_path, tiny_model_dir, make_multi_label_pairs, pair_prompts
):
    base, tokenizer = load_policy(tiny_model_dir)
    adapter = save_policy(apply_lora(base, r=4, lora_alpha=8), tokenizer, tmp_path / "lora" / "model")
    (tmp_path / "eval_rewards.py").write_text(REWARD_MODULE)
    judge = {"function": f"{tmp_path / 'eval_rewards.py'}:characters", "label": "chars"}
    config = config_of(tmp_path, model_name_or_path=str(tiny_model_dir),
                       eval_data=str(make_multi_label_pairs(tmp_path / "pairs.jsonl")), eval_judge=judge,
                       eval_rewards=["length:target=3,unit=words"], eval_max_new_tokens=MAX_NEW_TOKENS,
                       per_device_eval_batch_size=3)
    report = evaluate_trained(adapter, config)
    generation = report["generation"]
    # the default prompts: the four distinct prompts of the 16 pairs, in file order
    assert [row["prompt"] for row in generation["completions"]] == pair_prompts and generation["prompts"] == 4
    assert all(row["trained"] == row["reference"] for row in generation["completions"])
    assert generation["win_rate_vs_reference"] == {"judge": "chars", "win_rate": 0.5, "prompts": 4, "wins": 0,
                                                   "ties": 4, "losses": 0}
    scores = generation["rewards"]["length"]
    assert scores["trained"] == scores["reference"] and scores["trained"]["scored"] == 1.0
    expected = [greedy_completion(base, tokenizer, prompt) for prompt in pair_prompts]
    assert [row["reference"] for row in generation["completions"]] == expected
    for name in ("concise", "safe"):  # the adapter is the reference: preference accuracy 1/2, margin 0
        assert report["metrics"][name]["accuracy"] == 0.5 and report["metrics"][name]["margin"] == 0.0

    config.eval_rewards = config.eval_judge = None  # the default eval generates nothing
    assert set(evaluate_trained(adapter, config)) == {"metrics"}


def test_eval_command_names_a_bad_reward_spec(tmp_path, tiny_model_dir, make_multi_label_pairs, capsys):
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny_model_dir), "eval_data": str(make_multi_label_pairs(tmp_path / "p.jsonl")),
        "use_cpu": True, "report_to": "none", "output_dir": str(tmp_path / "x"),
    }))
    model = str(tmp_path / "no_model_needed")
    assert main(["eval", "--model", model, "--config", str(config_file), "--eval_rewards", "answer",
                 "no_such_reward"]) == 2
    output = " ".join(capsys.readouterr().out.split())
    assert re.search(r"error: eval_rewards\[1\]: unknown reward 'no_such_reward'", output)
    # a function that cannot be imported fails before any model is loaded, naming the field
    assert main(["eval", "--model", model, "--config", str(config_file), "--eval_judge",
                 "{function: 'eval_missing_module:score'}"]) == 2
    output = " ".join(capsys.readouterr().out.split())
    assert "eval_judge: cannot import module 'eval_missing_module'" in output


def test_eval_command_reproduces_the_runs_held_out_metrics(tmp_path, lora_run_config):
    assert main(["train", "--config", str(lora_run_config), "--output_dir", str(tmp_path / "one")]) == 0
    assert main(["eval", "--model", str(tmp_path / "one" / "model"), "--config", str(lora_run_config)]) == 0
    evaluated = json.loads((tmp_path / "one" / "eval.json").read_text())["metrics"]
    trained = json.loads((tmp_path / "one" / "metrics.json").read_text())["after"]
    for name in ("concise", "safe"):
        assert evaluated[name]["accuracy"] == trained[name]["accuracy"]
        assert evaluated[name]["loss"] == pytest.approx(trained[name]["loss"], abs=1e-6)


def test_sampled_evaluation_scores_every_sample_and_is_reproducible(
    tmp_path, tiny_model_dir, make_multi_label_pairs, pair_prompts
):
    base, tokenizer = load_policy(tiny_model_dir)
    adapter = save_policy(apply_lora(base, r=4, lora_alpha=8), tokenizer, tmp_path / "lora" / "model")

    def sampled(seed):
        config = config_of(tmp_path, model_name_or_path=str(tiny_model_dir),
                           eval_data=str(make_multi_label_pairs(tmp_path / "pairs.jsonl")),
                           eval_rewards=["length:target=3,unit=words"], eval_max_new_tokens=MAX_NEW_TOKENS,
                           eval_do_sample=True, eval_temperature=0.6, eval_top_p=0.95, eval_samples_per_prompt=3,
                           per_device_eval_batch_size=4, seed=seed)
        return evaluate_trained(adapter, config)["generation"]

    first = sampled(0)
    assert first["decoding"] == "sampled (temperature 0.6, top_p 0.95, 3 per prompt, seed 0)"
    assert first["samples_per_prompt"] == 3 and first["prompts"] == 3 * len(pair_prompts)
    assert [row["prompt"] for row in first["completions"]] == [p for p in pair_prompts for _ in range(3)]
    texts = [row["trained"] for row in first["completions"]]
    assert len(set(texts)) > len(pair_prompts)  # samples of one prompt differ
    assert sampled(0)["completions"] == first["completions"]
    assert sampled(1)["completions"] != first["completions"]
    # the untrained adapter is the reference: the same seed draws the same samples for both
    assert all(row["trained"] == row["reference"] for row in first["completions"])


def test_sampling_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="eval_samples_per_prompt > 1 draws several completions per prompt"):
        config_of(tmp_path, eval_samples_per_prompt=2)
    with pytest.raises(ValueError, match="sampling needs eval_temperature > 0 and 0 < eval_top_p <= 1"):
        config_of(tmp_path, eval_do_sample=True, eval_top_p=0.0)


def test_the_vllm_backend_serves_an_adapter_and_its_base_from_one_engine(
    tmp_path, tiny_model_dir, make_multi_label_pairs, monkeypatch
):
    from paretoalign.commands import evaluate
    from paretoalign.generation import Completion

    base, tokenizer = load_policy(tiny_model_dir)
    adapter = save_policy(apply_lora(base, r=4, lora_alpha=8), tokenizer, tmp_path / "lora" / "model")
    calls = []

    def fake_vllm(model, tokenizer, prompt_ids, *, adapters=(None,), **settings):
        calls.append({"model": model, "adapters": adapters, "prompts": len(prompt_ids), **settings})
        return [[[Completion(f"text {index}", [1, 2])] for index in range(len(prompt_ids))] for _ in adapters]

    monkeypatch.setattr(evaluate, "generation_backend", lambda choice: "vllm")
    monkeypatch.setattr(evaluate, "generate_with_vllm", fake_vllm)
    config = config_of(tmp_path, model_name_or_path=str(tiny_model_dir),
                       eval_data=str(make_multi_label_pairs(tmp_path / "pairs.jsonl")),
                       eval_rewards=["length:target=3,unit=words"], eval_max_new_tokens=7, generation_backend="vllm")
    generation = evaluate_trained(adapter, config)["generation"]
    (call,) = calls
    assert call["model"] == str(tiny_model_dir) and call["adapters"] == (adapter, None)
    assert call["max_new_tokens"] == 7 and call["dtype"] == "float32" and "batch_size" not in call
    assert generation["backend"] == "vllm" and generation["completions"][0]["trained"] == "text 0"
    gguf = config_of(tmp_path, model_name_or_path="builtin:smollm2", eval_rewards=["length:target=3"])
    with pytest.raises(ValueError, match="generation_backend: vllm serves Hugging Face model folders and Hub ids"):
        evaluate.vllm_completions(adapter, True, [[1]], tokenizer, gguf)
