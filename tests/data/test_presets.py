"""Tests of the dataset presets (paretoalign.data.columns.load_preset and resources/presets/*.yaml): each preset reads
a few rows in its dataset's exact schema from a local repository laid out as the Hub stores it, through the same
``datasets.load_dataset`` call as a Hub id, into a label matrix computed by hand; and a preset by its Hub id from the
datasets cache, offline."""

from __future__ import annotations

from importlib import resources

import datasets
import pytest

from paretoalign.data.columns import load_preset, preset_names
from paretoalign.data.files import PreferenceDataError
from paretoalign.data.preferences import load_preferences, load_preferences_with_report
from paretoalign.data.prompts import load_prompts


def test_every_preset_file_cites_its_card_and_lists_what_it_reads():
    assert preset_names() == ["helpsteer2", "hh_rlhf", "pku_saferlhf", "reddit_summary", "ultrafeedback"]
    for name in preset_names():
        text = resources.files("paretoalign").joinpath("resources", "presets", f"{name}.yaml").read_text()
        preset = load_preset(name)
        assert text.startswith("# ") and "# Columns read:" in text, name
        assert f"https://huggingface.co/datasets/{preset.dataset}" in text, name


# ---------------------------------------------------------------------------------------------------------
# PKU-SafeRLHF
# ---------------------------------------------------------------------------------------------------------


def pku_row(index, better, safer):
    return {"prompt": f"How do I do thing {index}?", "response_0": f"Safe answer {index}.",
            "response_1": f"Risky answer {index}.", "prompt_source": "Alpaca3-8B", "response_0_source": "Alpaca-7B",
            "response_1_source": "Alpaca2-7B", "is_response_0_safe": True, "is_response_1_safe": False,
            "response_0_severity_level": 0, "response_1_severity_level": 2, "better_response_id": better,
            "safer_response_id": safer}


PKU_TRAIN = [pku_row(0, 0, 1), pku_row(1, 1, 1), pku_row(2, 0, None), pku_row(3, 1, 0)]
PKU_LABELS = [[1, -1], [-1, -1], [1, 0], [-1, 1]]  # helpful, harmless: 0 -> +1, 1 -> -1, null -> 0


@pytest.fixture()
def pku_clone(tmp_path, datasets_cache, write_hub_dataset):
    return write_hub_dataset(tmp_path / "PKU-SafeRLHF", {"train": PKU_TRAIN, "test": [pku_row(9, 1, 0)]})


def test_pku_saferlhf_from_a_local_clone(pku_clone):
    dataset, names, report = load_preferences_with_report({"preset": "pku_saferlhf", "dataset": pku_clone,
                                                           "split": "train"})
    assert names == ["helpful", "harmless"]
    assert dataset["labels"] == PKU_LABELS
    assert dataset[0]["prompt"] == "How do I do thing 0?" and dataset[0]["response_a"] == "Safe answer 0."
    assert report.sources == (f"preset pku_saferlhf (dataset {pku_clone!r}, split 'train')",)
    test, _ = load_preferences({"preset": "pku_saferlhf", "dataset": pku_clone, "split": "test"})
    assert test["labels"] == [[-1, 1]]
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose labels are all null or missing \(rows 2\)"):
        harmless, names = load_preferences({"preset": "pku_saferlhf", "dataset": pku_clone},
                                           objectives=["harmless"])
    assert names == ["harmless"] and harmless["labels"] == [[-1], [-1], [1]]  # row 2 has no harmless label


def test_a_preset_error_names_the_preset_row_and_column(pku_clone, tmp_path, write_hub_dataset):
    clone = write_hub_dataset(tmp_path / "bad", {"train": [pku_row(0, 0, 1), pku_row(1, 2, 1)], "test": PKU_TRAIN})
    with pytest.raises(PreferenceDataError, match="got 2") as caught:
        load_preferences({"preset": "pku_saferlhf", "dataset": clone})
    assert caught.value.path == f"preset pku_saferlhf (dataset {clone!r}, split 'train')"
    assert (caught.value.line, caught.value.field) == (1, "better_response_id")


def test_a_preset_by_its_hub_id_from_the_datasets_cache_offline(pku_clone, cache_hub_dataset, monkeypatch):
    cache_hub_dataset("PKU-Alignment/PKU-SafeRLHF", pku_clone)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    dataset, names = load_preferences({"preset": "pku_saferlhf", "split": "train"})
    assert names == ["helpful", "harmless"] and dataset["labels"] == PKU_LABELS


def test_a_preset_offline_and_not_cached_says_how_to_get_it(datasets_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(PreferenceDataError, match=r"is not in the datasets cache .* HF_HUB_OFFLINE / "
                                                  r"HF_DATASETS_OFFLINE forbid downloading it; .*hf download "
                                                  r"--repo-type dataset openbmb/UltraFeedback") as caught:
        load_preferences({"preset": "ultrafeedback"})
    assert caught.value.path == "preset ultrafeedback (dataset 'openbmb/UltraFeedback', split 'train')"


# ---------------------------------------------------------------------------------------------------------
# RACO's RedditSummary-Alignment
# ---------------------------------------------------------------------------------------------------------


def reddit_row(index, quality, verbosity):
    request = {"role": "user", "content": f"Summarise the post: my dog {index} ate my homework."}
    return {"Summary_A": [request, {"role": "assistant", "content": f"Dog {index} ate homework."}],
            "Summary_B": [request, {"role": "assistant", "content": f"A dog, number {index}, ate it all."}],
            "Quality": quality, "Verbosity": verbosity}


REDDIT_TRAIN = [reddit_row(0, "A", "B"), reddit_row(1, "summary_b", "Tie"), reddit_row(2, "equal", "a"),
                reddit_row(3, "None", " same ")]


@pytest.fixture()
def reddit_clone(tmp_path, datasets_cache, write_hub_dataset):
    return write_hub_dataset(tmp_path / "RedditSummary-Alignment", {
        "train": REDDIT_TRAIN, "train_full": REDDIT_TRAIN[:2], "train_conflicted": [reddit_row(5, "B", "A")],
        "val": [reddit_row(6, "Summary_A", "summary_a"), reddit_row(7, "b", "tie")],
    }, config_name="pairs")


def test_reddit_summary_from_a_local_clone_of_config_pairs(reddit_clone, tiny_tokenizer):
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose labels are all null or missing \(rows 3\)"):
        dataset, names, report = load_preferences_with_report(
            {"preset": "reddit_summary", "dataset": reddit_clone, "split": "train"}, tokenizer=tiny_tokenizer
        )
    assert names == ["quality", "verbosity"]
    assert dataset["labels"] == [[1, -1], [-1, 0], [0, 1]]
    assert report.dropped_unlabelled == 1
    assert dataset[0] == {
        "prompt": "<|im_start|>user\nSummarise the post: my dog 0 ate my homework.<|im_end|>\n<|im_start|>assistant\n",
        "response_a": "Dog 0 ate homework.<|im_end|>\n",
        "response_b": "A dog, number 0, ate it all.<|im_end|>\n",
        "labels": [1, -1],
    }
    conflicted, _ = load_preferences({"preset": "reddit_summary", "dataset": reddit_clone,
                                      "split": "train_conflicted"}, tokenizer=tiny_tokenizer)
    assert conflicted["labels"] == [[-1, 1]]
    with pytest.raises(ValueError, match="unknown split 'test'; its splits: train, train_full, train_conflicted, val"):
        load_preferences({"preset": "reddit_summary", "dataset": reddit_clone, "split": "test"})


def test_reddit_summary_prompts_of_the_val_split(reddit_clone):
    prompts = load_prompts({"preset": "reddit_summary", "dataset": reddit_clone, "split": "val"})
    assert prompts["prompt"] == [[{"role": "user", "content": "Summarise the post: my dog 6 ate my homework."}],
                                 [{"role": "user", "content": "Summarise the post: my dog 7 ate my homework."}]]


# ---------------------------------------------------------------------------------------------------------
# UltraFeedback
# ---------------------------------------------------------------------------------------------------------

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def ultrafeedback_row(index, ratings):
    """``ratings``: per aspect, the ratings of the completions (strings "1".."5" or "N/A")."""
    completions = []
    for position, scores in enumerate(zip(*(ratings[aspect] for aspect in ASPECTS))):
        annotations = {aspect: {"Rating": score, "Rationale": "because"} for aspect, score in zip(ASPECTS, scores)}
        completions.append({"annotations": annotations, "critique": "fine", "custom_system_prompt": "",
                            "fine-grained_score": 3.5, "model": f"model-{position}", "overall_score": 7.0,
                            "principle": "helpfulness", "response": f"Answer {position} to question {index}."})
    return {"source": "evol_instruct", "instruction": f"Question {index}?", "models": [c["model"] for c in completions],
            "completions": completions, "correct_answers": ["None"], "incorrect_answers": ["None"]}


ULTRAFEEDBACK_TRAIN = [
    ultrafeedback_row(0, {"helpfulness": ["5", "3", "4", "2"], "honesty": ["5", "5", "N/A", "1"],
                          "instruction_following": ["4", "2", "4", "5"], "truthfulness": ["3", "5", "5", "4"]}),
    ultrafeedback_row(1, {"helpfulness": ["N/A", "N/A"], "honesty": ["2", "2"], "instruction_following": ["3", "3"],
                          "truthfulness": ["1", "1"]}),
    ultrafeedback_row(2, {"helpfulness": ["1", "2", "2"], "honesty": ["N/A", "3", "1"],
                          "instruction_following": ["2", "2", "2"], "truthfulness": ["4", "4", "4"]}),
]


def test_ultrafeedback_from_a_local_clone(tmp_path, datasets_cache, write_hub_dataset):
    clone = write_hub_dataset(tmp_path / "UltraFeedback", {"train": ULTRAFEEDBACK_TRAIN})
    with pytest.warns(UserWarning, match=r"dropped 1 source row\(s\) that give no pair.*\(rows 1\)"):
        dataset, names = load_preferences({"preset": "ultrafeedback", "dataset": clone})
    assert names == list(ASPECTS)
    # question 0: helpfulness and honesty pick (0, 3), instruction_following (1, 3), truthfulness (0, 1);
    # question 2: helpfulness (0, 1), honesty (1, 2); the other aspects have equal ratings
    assert [(row["prompt"], row["response_a"][:8], row["response_b"][:8]) for row in dataset] == [
        ("Question 0?", "Answer 0", "Answer 3"), ("Question 0?", "Answer 1", "Answer 3"),
        ("Question 0?", "Answer 0", "Answer 1"), ("Question 2?", "Answer 0", "Answer 1"),
        ("Question 2?", "Answer 1", "Answer 2"),
    ]
    assert dataset["labels"] == [[1, 1, -1, -1], [1, 1, -1, 1], [1, 0, 1, -1], [-1, 0, 0, 0], [0, 1, 0, 0]]


# ---------------------------------------------------------------------------------------------------------
# HelpSteer2
# ---------------------------------------------------------------------------------------------------------

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def helpsteer_row(prompt, response, *scores):
    return {"prompt": prompt, "response": response, **dict(zip(ATTRIBUTES, scores))}


def test_helpsteer2_from_a_local_clone(tmp_path, datasets_cache, write_hub_dataset):
    clone = write_hub_dataset(tmp_path / "HelpSteer2", {
        "train": [helpsteer_row("P1", "a", 3, 3, 4, 1, 1), helpsteer_row("P1", "b", 2, 3, 3, 2, 3),
                  helpsteer_row("P2", "c", 4, 4, 4, 2, 2), helpsteer_row("P2", "d", 4, 4, 4, 2, 2),
                  helpsteer_row("P3", "e", 1, 0, 3, 1, 2),
                  helpsteer_row("P4", "f", 2, 1, 2, 2, 2), helpsteer_row("P4", "g", 2, 3, 2, 2, 2),
                  helpsteer_row("P4", "h", 2, 2, 2, 2, 4)],
        "validation": [helpsteer_row("V", "x", 0, 1, 2, 3, 4), helpsteer_row("V", "y", 4, 3, 2, 1, 0)],
    })
    with pytest.warns(UserWarning, match=r"dropped 2 source row\(s\) that give no pair.*\(rows 2, 4\)"):
        dataset, names = load_preferences({"preset": "helpsteer2", "dataset": clone})
    assert names == list(ATTRIBUTES)
    # P1: one pair; P2 has equal scores, P3 one row; P4: correctness picks (f, g), verbosity (f, h)
    assert [(row["prompt"], row["response_a"], row["response_b"]) for row in dataset] == [
        ("P1", "a", "b"), ("P4", "f", "g"), ("P4", "f", "h"),
    ]
    assert dataset["labels"] == [[1, 0, 1, -1, -1], [0, -1, 0, 0, 0], [0, -1, 0, 0, -1]]
    validation, _ = load_preferences({"preset": "helpsteer2", "dataset": clone, "split": "validation"},
                                     objectives=["helpfulness", "verbosity"])
    assert validation["labels"] == [[-1, 1]]


# ---------------------------------------------------------------------------------------------------------
# Anthropic HH-RLHF
# ---------------------------------------------------------------------------------------------------------


def hh_row(question, good, bad):
    prompt = f"\n\nHuman: {question}\n\nAssistant:"
    return {"chosen": f"{prompt} {good}", "rejected": f"{prompt} {bad}"}


def test_hh_rlhf_subsets_by_data_dir_as_two_objectives(tmp_path, datasets_cache, write_hub_data_dirs, tiny_tokenizer):
    clone = write_hub_data_dirs(tmp_path / "hh-rlhf", {
        "harmless-base": {"train": [hh_row("How do I pick a lock?", "I can't help.", "Use a pin."),
                                    hh_row("Insult me.", "No.", "You fool.")],
                          "test": [hh_row("Is it safe?", "Yes.", "Who cares.")]},
        "helpful-base": {"train": [hh_row("Bake bread?", "Mix flour, water, salt and yeast.", "No.")],
                         "test": [hh_row("Joke?", "Knock knock.", "No.")]},
    })
    source = {"harmless": {"preset": "hh_rlhf", "dataset": clone, "data_dir": "harmless-base"},
              "helpful": {"preset": "hh_rlhf", "dataset": clone, "data_dir": "helpful-base"}}
    dataset, names = load_preferences(source, tokenizer=tiny_tokenizer)
    assert names == ["harmless", "helpful"]
    assert dataset["labels"] == [[1, 0], [1, 0], [0, 1]]
    assert dataset[2] == {
        "prompt": "<|im_start|>user\nBake bread?<|im_end|>\n<|im_start|>assistant\n",
        "response_a": "Mix flour, water, salt and yeast.<|im_end|>\n", "response_b": "No.<|im_end|>\n",
        "labels": [0, 1],
    }
    test, names = load_preferences({"preset": "hh_rlhf", "dataset": clone, "data_dir": "helpful-base",
                                    "split": "test"}, tokenizer=tiny_tokenizer)
    assert names == ["preferred"] and test["labels"] == [[1]]
