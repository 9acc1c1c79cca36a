"""Judges: sequence-classification models that score completions as the RACO paper's evaluation does, built from tiny
random classifiers (a Llama with one and with two labels): the reward model's input template and the pair classifier's
probability, applied exactly, batched equal to one by one."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaForSequenceClassification

from paretoalign.rewards.builtin import PairClassifier, RewardModel
from paretoalign.rewards.specs import build_reward, resolve_spec_paths

POST = "Summarize this post.\n\nSubreddit: r/cooking\n\nPOST: I burnt the rice again.\n\nPlease directly output your summarization."
PASSAGE = "Subreddit: r/cooking\n\nPOST: I burnt the rice again."
PATTERN = r"(Subreddit:[\s\S]*?)\s*(?:Please directly output your summarization\.)?\s*$"


@pytest.fixture(scope="module")
def classifier_dirs(tmp_path_factory, tiny_tokenizer, make_tiny_llama_config):
    """Saved Llama sequence classifiers with one and with two labels (random weights, seed 0) and the tiny tokenizer."""
    directories = {}
    for num_labels in (1, 2):
        path = tmp_path_factory.mktemp(f"judge-{num_labels}")
        torch.manual_seed(0)
        LlamaForSequenceClassification(make_tiny_llama_config(len(tiny_tokenizer), num_labels=num_labels)).save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        directories[num_labels] = path
    return directories


def loaded(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True).eval()
    return tokenizer, model


def test_reward_model_template_is_filled_in_exactly(classifier_dirs):
    directory = classifier_dirs[1]
    tokenizer, model = loaded(directory)
    reward = RewardModel(directory, template="{completion} {bos} {prompt}", prompt_pattern=PATTERN,
                         truncation_side="right", device="cpu")
    summary = "Rice burnt again."
    text, add_special_tokens = reward.text(POST, summary)
    assert text == f"{summary} {tokenizer.bos_token} {PASSAGE}" and add_special_tokens
    with torch.no_grad():
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        expected = model(input_ids=ids).logits[0, 0].item()
    assert reward([POST], [summary]) == pytest.approx([expected], abs=1e-5)


def test_a_prompt_the_pattern_does_not_match_is_read_whole(classifier_dirs):
    reward = RewardModel(classifier_dirs[1], template="{prompt} => {completion}{eos}", prompt_pattern=PATTERN,
                         device="cpu")
    eos = reward.tokenizer.eos_token
    assert reward.text("Tell me a joke.", "No.") == (f"Tell me a joke. => No.{eos}", True)
    assert reward.text([{"role": "user", "content": POST}], "Short.")[0] == f"{PASSAGE} => Short.{eos}"


@pytest.mark.parametrize("judge", ["reward_model", "pair_classifier"])
def test_batched_scores_equal_one_by_one(classifier_dirs, judge):
    prompts = [POST, "Subreddit: r/a\n\nPOST: short", "no pattern here at all, a longer prompt than the others"]
    completions = ["A summary.", "Another, longer summary of the post.", "x"]
    if judge == "reward_model":
        build = lambda size: RewardModel(classifier_dirs[1], batch_size=size, template="{completion} {bos} {prompt}",
                                         prompt_pattern=PATTERN, device="cpu")
    else:
        build = lambda size: PairClassifier(classifier_dirs[2], batch_size=size, prompt_pattern=PATTERN, device="cpu")
    batched = build(3)(prompts, completions)
    one_by_one = [build(1)([prompt], [completion])[0] for prompt, completion in zip(prompts, completions)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(batched)) == 3


def test_pair_classifier_is_the_softmax_probability_of_its_label_on_completion_and_passage(classifier_dirs):
    directory = classifier_dirs[2]
    tokenizer, model = loaded(directory)
    judge = PairClassifier(directory, label_index=1, prompt_pattern=PATTERN, device="cpu")
    assert judge.__name__ == "pair_classifier"
    with torch.no_grad():
        encoded = tokenizer(["Rice burnt."], [PASSAGE], return_tensors="pt")
        expected = torch.softmax(model(**encoded).logits, dim=-1)[0, 1].item()
    assert judge([POST], ["Rice burnt."]) == pytest.approx([expected], abs=1e-5)
    swapped = PairClassifier(directory, label_index=0, completion_first=False, device="cpu")
    with torch.no_grad():
        encoded = tokenizer(["Q?"], ["A."], return_tensors="pt")
        expected = torch.softmax(model(**encoded).logits, dim=-1)[0, 0].item()
    assert swapped(["Q?"], ["A."]) == pytest.approx([expected], abs=1e-5)


def test_judges_reject_bad_parameters(classifier_dirs):
    with pytest.raises(ValueError, match=r"template must be a string with \{completion\} and only the placeholders"):
        RewardModel(classifier_dirs[1], template="{answer} {completion}")
    with pytest.raises(ValueError, match=r"template must be a string with \{completion\}"):
        RewardModel(classifier_dirs[1], template="{prompt}")
    with pytest.raises(ValueError, match="prompt_pattern needs a group"):
        RewardModel(classifier_dirs[1], prompt_pattern="Subreddit")
    with pytest.raises(ValueError, match="prompt_pattern is not a regular expression"):
        RewardModel(classifier_dirs[1], prompt_pattern="(")
    with pytest.raises(ValueError, match=r"truncation_side must be one of \['left', 'right'\]"):
        RewardModel(classifier_dirs[1], truncation_side="middle")
    with pytest.raises(ValueError, match="has one label; a probability needs a classifier with two or more"):
        PairClassifier(classifier_dirs[1])
    with pytest.raises(ValueError, match="label_index must be an integer from 0 to 1"):
        PairClassifier(classifier_dirs[2], label_index=2)


def test_judge_specs_build_and_resolve_their_model_like_a_reward_model(classifier_dirs, tmp_path):
    spec = {"name": "pair_classifier", "path": str(classifier_dirs[2]), "device": "cpu", "label": "faithful"}
    judge = build_reward(spec, "eval_judge")
    assert judge(["p"], ["c"])[0] == pytest.approx(PairClassifier(classifier_dirs[2], device="cpu")(["p"], ["c"])[0])
    resolved = resolve_spec_paths({"name": "pair_classifier", "path": "CogComp/bart-faithful-summary-detector"}, tmp_path)
    assert resolved["path"] == "CogComp/bart-faithful-summary-detector"
