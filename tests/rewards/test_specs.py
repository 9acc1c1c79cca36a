"""Reward specs: every accepted spelling, every error message, building, checking, labels, paths and scores."""

from __future__ import annotations

import functools
import math
import re
import sys

import pytest
import torch

from paretoalign.rewards.builtin import LengthReward, REWARDS
from paretoalign.rewards.specs import (
    build_reward,
    build_rewards,
    checked_reward_function,
    parse_key_values,
    parse_reward_spec,
    parse_reward_specs,
    resolve_spec_paths,
    reward_label,
    RewardFunctionError,
    scores_of,
    WeightedSumReward,
)

VALID_REWARDS = ", ".join(REWARDS)
EXACTLY_ONE = "a reward spec needs exactly one of 'name', 'function' or 'sum', got keys"

USER_REWARDS = """
def count(prompts, completions, letter="a", **kwargs):
    return [completion.count(letter) for completion in completions]


def sometimes_none(prompts, completions, **kwargs):
    return [None if completion == "skip" else float("nan") if completion == "nan" else 1.0
            for completion in completions]


def broken(prompts, completions, **kwargs):
    return [1 / 0 for _ in completions]


def words(prompts, completions, **kwargs):
    return ["good" for _ in completions]


NOT_CALLABLE = 3
"""


def raises_exactly(error_type, message):
    """``pytest.raises`` for exactly ``message`` (the whole text)."""
    return pytest.raises(error_type, match=f"^{re.escape(message)}$")


@pytest.fixture()
def reward_file(tmp_path):
    path = tmp_path / "user_rewards.py"
    path.write_text(USER_REWARDS)
    return path


@pytest.fixture()
def reward_module(tmp_path, monkeypatch):
    """The same functions as an importable module, ``specs_test_user_rewards``."""
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "specs_test_user_rewards.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.delitem(sys.modules, "specs_test_user_rewards", raising=False)
    return "specs_test_user_rewards"


# --- parse_key_values ---------------------------------------------------------------------------------------------


def test_key_values_are_read_as_yaml_scalars():
    assert parse_key_values("c=0.4, clip=true,mode=cap,count=3,empty=,text=a b", "w") == {
        "c": 0.4, "clip": True, "mode": "cap", "count": 3, "empty": None, "text": "a b"
    }
    assert parse_key_values("", "w") == {}
    assert parse_key_values(" , ,", "w") == {}
    assert parse_key_values("pattern=[a", "w") == {"pattern": "[a"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("c=0.4,clip", "weighting_params: expected key=value pairs separated by commas, could not read 'clip'."),
        ("=3", "weighting_params: expected key=value pairs separated by commas, could not read '=3'."),
        ("c=1,c=2", "weighting_params: 'c' is given twice in 'c=1,c=2'."),
    ],
)
def test_key_value_errors_name_where(text, message):
    with raises_exactly(ValueError, message):
        parse_key_values(text, "weighting_params")


# --- parse_reward_spec: accepted forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {"name": "length", "target": 40, "unit": "words"},
        "length:target=40,unit=words",
        "  length : target=40 , unit=words ",
        "{name: length, target: 40, unit: words}",
        "  {name: length, unit: words, target: 40}",
    ],
)
def test_every_spelling_of_a_builtin_gives_the_same_mapping(item):
    assert parse_reward_spec(item, "rewards[0]") == {"name": "length", "target": 40, "unit": "words"}


def test_names_functions_sums_and_labels():
    assert parse_reward_spec("format", "w") == {"name": "format"}
    assert parse_reward_spec("length:target=4,label=short", "w") == {"name": "length", "target": 4, "label": "short"}
    function = {"function": "module.sub:score", "scale": 2, "label": "mine"}
    assert parse_reward_spec(function, "w") == function
    assert parse_reward_spec("{function: 'module.sub:score', scale: 2, label: mine}", "w") == function
    assert parse_reward_spec({"function": "path/to/file.py:score"}, "w") == {"function": "path/to/file.py:score"}
    text_sum = "{sum: [{weight: 2, name: length, target: 4}, {weight: -0.5, sum: [{weight: 1, function: 'm:f'}]}]}"
    expected_sum = {"sum": [
        {"weight": 2, "name": "length", "target": 4},
        {"weight": -0.5, "sum": [{"weight": 1, "function": "m:f"}]},
    ]}
    assert parse_reward_spec(text_sum, "w") == expected_sum
    assert parse_reward_spec({**expected_sum, "label": "total"}, "w") == {**expected_sum, "label": "total"}


def test_parsing_returns_a_new_mapping_and_leaves_the_input_alone():
    item = {"sum": [{"weight": 1, "name": "format"}], "label": "total"}
    parsed = parse_reward_spec(item, "w")
    assert parsed == item and parsed is not item
    parsed["label"] = "changed"
    parsed["sum"][0]["weight"] = 5
    assert item == {"sum": [{"weight": 1, "name": "format"}], "label": "total"}


# --- parse_reward_spec: errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (3, "eval_judge: a reward spec is a mapping such as {name: length} or a name, got 3."),
        (["length"], "eval_judge: a reward spec is a mapping such as {name: length} or a name, got ['length']."),
        (None, "eval_judge: a reward spec is a mapping such as {name: length} or a name, got None."),
        ({1: 2, "name": "length"}, "eval_judge: the keys of a reward spec are strings, got 1."),
        ({"target": 3}, f"eval_judge: {EXACTLY_ONE} ['target']."),
        ({}, f"eval_judge: {EXACTLY_ONE} []."),
        (
            {"name": "length", "function": "m:f"},
            f"eval_judge: {EXACTLY_ONE} ['function', 'name'].",
        ),
        (
            "{name: length, sum: []}",
            f"eval_judge: {EXACTLY_ONE} ['name', 'sum'].",
        ),
        ({"name": "brevity"}, f"eval_judge: unknown reward 'brevity'; valid rewards: {VALID_REWARDS}."),
        ("brevity:target=3", f"eval_judge: unknown reward 'brevity'; valid rewards: {VALID_REWARDS}."),
        ({"name": 3}, f"eval_judge: unknown reward 3; valid rewards: {VALID_REWARDS}."),
        ({"name": "format", "label": ""}, "eval_judge: 'label' must be a non-empty string, got ''."),
        ({"name": "format", "label": 7}, "eval_judge: 'label' must be a non-empty string, got 7."),
        (
            {"function": "score"},
            "eval_judge: 'function' must be 'module:callable' or 'path/to/file.py:callable', got 'score'.",
        ),
        (
            {"function": ":score"},
            "eval_judge: 'function' must be 'module:callable' or 'path/to/file.py:callable', got ':score'.",
        ),
        (
            {"function": "rewards.py:"},
            "eval_judge: 'function' must be 'module:callable' or 'path/to/file.py:callable', got 'rewards.py:'.",
        ),
        (
            {"function": 3},
            "eval_judge: 'function' must be 'module:callable' or 'path/to/file.py:callable', got 3.",
        ),
        ("", "eval_judge: empty reward name in ''."),
        (":target=3", "eval_judge: empty reward name in ':target=3'."),
        (
            "rewards.py:score",
            "eval_judge: 'rewards.py:score' reads as 'NAME:key=value,...' and has no key=value; "
            "write a function as {function: 'rewards.py:score'}.",
        ),
        (
            "length:target=3,unit",
            "eval_judge: expected key=value pairs separated by commas, could not read 'unit'.",
        ),
        ("length:target=3,target=4", "eval_judge: 'target' is given twice in 'target=3,target=4'."),
        ("length:name=format", "eval_judge: 'length:name=format' gives the name twice, before ':' and as name=."),
    ],
)
def test_spec_errors_name_where_and_show_what_was_given(item, message):
    with raises_exactly(ValueError, message):
        parse_reward_spec(item, "eval_judge")


def test_invalid_yaml_text_names_where():
    with pytest.raises(ValueError, match=r"^eval_rewards\[1\]: not valid YAML \(") as error:
        parse_reward_spec("{name: [length", "eval_rewards[1]")
    assert str(error.value).endswith(").")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"sum": []},
            "sources[0]: 'sum' must be a non-empty list of {weight: w, <reward spec>} terms, got [].",
        ),
        (
            {"sum": {"weight": 1, "name": "format"}},
            "sources[0]: 'sum' must be a non-empty list of {weight: w, <reward spec>} terms, "
            "got {'weight': 1, 'name': 'format'}.",
        ),
        (
            {"sum": [{"weight": 1, "name": "format"}], "target": 3},
            "sources[0]: a 'sum' spec takes only 'sum' and 'label', got also ['target'].",
        ),
        ({"sum": ["format"]}, "sources[0].sum[0]: a term is a mapping {weight: w, <reward spec>}, got 'format'."),
        ({"sum": [{"name": "format"}]}, "sources[0].sum[0]: a term needs a 'weight', got keys ['name']."),
        (
            {"sum": [{"weight": 1, "name": "format"}, {"weight": "1", "name": "format"}]},
            "sources[0].sum[1]: 'weight' must be a finite number, got '1'.",
        ),
        (
            {"sum": [{"weight": True, "name": "format"}]},
            "sources[0].sum[0]: 'weight' must be a finite number, got True.",
        ),
        (
            {"sum": [{"weight": math.inf, "name": "format"}]},
            "sources[0].sum[0]: 'weight' must be a finite number, got inf.",
        ),
        (
            {"sum": [{"weight": 1.0}]},
            f"sources[0].sum[0]: {EXACTLY_ONE} [].",
        ),
        (
            {"sum": [{"weight": 1, "name": "format"}, {"weight": 1, "name": "brevity"}]},
            f"sources[0].sum[1]: unknown reward 'brevity'; valid rewards: {VALID_REWARDS}.",
        ),
        (
            {"sum": [{"weight": 1, "sum": [{"weight": 1, "name": "format"}, {"weight": 2, "function": "f"}]}]},
            "sources[0].sum[0].sum[1]: 'function' must be 'module:callable' or 'path/to/file.py:callable', got 'f'.",
        ),
    ],
)
def test_sum_errors_name_the_term(item, message):
    with raises_exactly(ValueError, message):
        parse_reward_spec(item, "sources[0]")


# --- reward_label -------------------------------------------------------------------------------------------------


def test_reward_label_prefers_label_then_name_then_callable_then_sum():
    assert reward_label({"name": "length", "target": 4, "label": "short"}) == "short"
    assert reward_label({"name": "length", "target": 4}) == "length"
    assert reward_label({"function": "package.module:politeness"}) == "politeness"
    assert reward_label({"function": "C:/rewards/file.py:politeness"}) == "politeness"
    assert reward_label({"sum": [{"weight": 1, "name": "format"}]}) == "sum"
    assert reward_label({"sum": [{"weight": 1, "name": "format"}], "label": "total"}) == "total"


# --- build_reward -------------------------------------------------------------------------------------------------


def test_builtin_rewards_are_built_with_their_parameters_and_named_by_label():
    reward = build_reward("length:target=2,unit=words", "rewards[0]")
    assert reward.__name__ == "length"
    assert isinstance(reward.__wrapped__, LengthReward)
    assert (reward.__wrapped__.target, reward.__wrapped__.unit) == (2.0, "words")
    assert reward(["q", "q", "q"], ["one two", "one", "one two three four"]) == [1.0, 0.5, 0.0]
    labelled = build_reward({"name": "length", "target": 2, "unit": "words", "label": "short"}, "rewards[0]")
    assert labelled.__name__ == "short"
    assert labelled(prompts=["q"], completions=["one two"]) == [1.0]


def test_builtin_build_errors_name_where(tmp_path):
    message = "rewards[1]: cannot build reward 'length': length reward: target must be a positive number, got -3"
    with raises_exactly(ValueError, message):
        build_reward("length:target=-3", "rewards[1]")
    prefix = r"^rewards\[1\]: cannot build reward 'length': reward 'length': "
    with pytest.raises(ValueError, match=prefix + r".*'shape_name'.*; its parameters are target, unit, shape"):
        build_reward({"name": "length", "target": 4, "shape_name": "cap"}, "rewards[1]")
    message = (
        "rewards[1]: cannot build reward 'conciseness': reward 'conciseness': missing a required argument: "
        "'target'; its parameters are target, unit, tokenizer"
    )
    with raises_exactly(ValueError, message):
        build_reward("conciseness", "rewards[1]")
    with pytest.raises(FileNotFoundError, match=r"^eval_judge: cannot build reward 'reward_model': .*no-such-model"):
        build_reward({"name": "reward_model", "path": str(tmp_path / "no-such-model")}, "eval_judge")


@pytest.mark.parametrize("source", ["module", "file"])
def test_functions_are_imported_with_their_keyword_arguments_bound(source, reward_module, reward_file):
    location = reward_module if source == "module" else str(reward_file)
    reward = build_reward({"function": f"{location}:count"}, "sources[0]")
    assert reward.__name__ == "count"
    assert reward(["q", "q"], ["aab", "bbb"]) == [2, 0]
    bound = build_reward({"function": f"{location}:count", "letter": "b", "label": "bees"}, "sources[1]")
    assert bound.__name__ == "bees"
    assert bound(["q", "q"], ["aab", "bbb"]) == [1, 3]
    assert bound(["q"], ["aab"], letter="a") == [2]  # a keyword of the call wins over the bound one
    text = build_reward(f"{{function: '{location}:count', letter: b}}", "sources[2]")
    assert text(["q"], ["abb"]) == [2]


def test_function_import_errors_name_where(tmp_path, reward_file):
    with raises_exactly(
        ValueError,
        "eval_judge: cannot import module 'specs_missing_module' "
        "(ModuleNotFoundError: No module named 'specs_missing_module').",
    ):
        build_reward({"function": "specs_missing_module:score"}, "eval_judge")
    missing = tmp_path / "missing.py"
    with raises_exactly(FileNotFoundError, f"sources[0]: reward function file not found: {missing}"):
        build_reward({"function": f"{missing}:score"}, "sources[0]")
    failing = tmp_path / "failing.py"
    failing.write_text("VALUE = 1 / 0\n")
    message = f"sources[0]: cannot import module '{failing}' (ZeroDivisionError: division by zero)."
    with raises_exactly(ValueError, message):
        build_reward({"function": f"{failing}:score"}, "sources[0]")
    with raises_exactly(ValueError, f"sources[0]: '{reward_file}' has no callable 'missing'."):
        build_reward({"function": f"{reward_file}:missing"}, "sources[0]")
    with raises_exactly(ValueError, f"sources[0]: '{reward_file}' has no callable 'NOT_CALLABLE'."):
        build_reward({"function": f"{reward_file}:NOT_CALLABLE"}, "sources[0]")
    with raises_exactly(ValueError, f"oracle: {EXACTLY_ONE} ['weight']."):
        build_reward({"weight": 1.0}, "oracle")


def test_weighted_sums_add_weighted_terms_and_keep_unscored_completions_unscored(reward_file):
    spec = {"sum": [{"weight": 2.0, "function": f"{reward_file}:count"},
                    {"weight": -1, "function": f"{reward_file}:count", "letter": "b"}]}
    reward = build_reward(spec, "sources[0]")
    assert isinstance(reward.__wrapped__, WeightedSumReward)
    assert reward.__name__ == "sum"
    assert reward(["q", "q"], ["aab", "bbb"]) == [3.0, -3.0]
    with_none = build_reward(
        {"label": "total", "sum": [{"weight": 1, "name": "length", "target": 2, "unit": "words"},
                                   {"weight": 0.5, "function": f"{reward_file}:sometimes_none"}]},
        "sources[0]",
    )
    assert with_none.__name__ == "total"
    assert with_none(["q", "q", "q"], ["one two", "skip", "nan"]) == [1.5, None, None]
    nested = build_reward({"sum": [{"weight": 3, "sum": [{"weight": 2, "function": f"{reward_file}:count"}]}]}, "w")
    assert nested(["q"], ["aaa"]) == [18.0]


def test_sum_term_errors_name_the_term(reward_file):
    message = (
        "sources[0].sum[1]: cannot build reward 'conciseness': reward 'conciseness': missing a required argument: "
        "'target'; its parameters are target, unit, tokenizer"
    )
    with raises_exactly(ValueError, message):
        build_reward({"sum": [{"weight": 1, "name": "format"}, {"weight": 1, "name": "conciseness"}]}, "sources[0]")
    reward = build_reward({"sum": [{"weight": 1, "function": f"{reward_file}:words", "label": "wordy"}]}, "sources[0]")
    with raises_exactly(
        RewardFunctionError,
        "reward function 'wordy' returned 'good' (str) for completion 0; rewards must be numbers or None.",
    ):
        reward(["q"], ["a"])


def test_weighted_sum_reward_directly():
    with raises_exactly(ValueError, "a 'sum' reward needs at least one term."):
        WeightedSumReward([])

    def column(prompts, completions, bonus, **kwargs):
        return bonus

    reward = WeightedSumReward([(0.5, column), (2, column)])
    assert reward(["q", "q"], ["a", "b"], bonus=[2, math.inf]) == [5.0, None]
    with raises_exactly(RewardFunctionError, "the 'sum' term 'column' returned 1 scores for 2 completions."):
        reward(["q", "q"], ["a", "b"], bonus=[1])


# --- checked_reward_function ----------------------------------------------------------------------------------------


def test_checked_rewards_pass_numbers_and_none_through():
    def mixed(prompts, completions, **kwargs):
        return [1, 0.5, None, math.nan]

    checked = checked_reward_function(mixed)
    assert checked.__name__ == checked.__qualname__ == "mixed" and checked.__wrapped__ is mixed
    result = checked(["q"] * 4, ["a"] * 4)
    assert result[:3] == [1, 0.5, None] and math.isnan(result[3])
    tensor = checked_reward_function(lambda prompts, completions, **kwargs: torch.tensor([0.5, 2.0]), name="t")
    assert tensor(prompts=["q", "q"], completions=["a", "b"]) == [0.5, 2.0]


def test_checked_reward_default_names_follow_trl():
    def score(prompts, completions, scale=1):
        return [scale] * len(completions)

    class Politeness:
        def __call__(self, prompts, completions, **kwargs):
            return [1.0] * len(completions)

    assert checked_reward_function(score).__name__ == "score"
    assert checked_reward_function(functools.partial(score, scale=2)).__name__ == "score"
    assert checked_reward_function(Politeness()).__name__ == "Politeness"
    assert checked_reward_function(score, name="mine").__name__ == "mine"


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            lambda completions: [1.0] * (len(completions) - 1),
            "reward function 'mine' returned 1 rewards for 2 completions (expected 2, got 1).",
        ),
        (
            lambda completions: ["good"] * len(completions),
            "reward function 'mine' returned 'good' (str) for completion 0; rewards must be numbers or None.",
        ),
        (
            lambda completions: [1.0, True],
            "reward function 'mine' returned True (bool) for completion 1; rewards must be numbers or None.",
        ),
        (
            lambda completions: 1.0,
            "reward function 'mine' must return a list with one reward per completion, got float.",
        ),
        (
            lambda completions: "11",
            "reward function 'mine' must return a list with one reward per completion, got str.",
        ),
        (lambda completions: [1 / 0], "reward function 'mine' raised ZeroDivisionError: division by zero"),
    ],
)
def test_checked_reward_errors_name_the_reward(returned, message):
    checked = checked_reward_function(lambda prompts, completions, **kwargs: returned(completions), name="mine")
    with raises_exactly(RewardFunctionError, message):
        checked(["q", "q"], ["a", "b"])
    with raises_exactly(RewardFunctionError, message):
        checked(prompts=["q", "q"], completions=["a", "b"])


def test_built_rewards_are_checked_under_their_label(reward_file):
    reward = build_reward({"function": f"{reward_file}:broken", "label": "fragile"}, "rewards[0]")
    with raises_exactly(RewardFunctionError, "reward function 'fragile' raised ZeroDivisionError: division by zero"):
        reward(["q"], ["a"])
    rechecked = checked_reward_function(reward)
    assert rechecked.__name__ == "fragile"
    with raises_exactly(RewardFunctionError, "reward function 'fragile' raised ZeroDivisionError: division by zero"):
        rechecked(["q"], ["a"])


# --- build_rewards ------------------------------------------------------------------------------------------------


def test_build_rewards_by_label_in_order(reward_file):
    rewards = build_rewards(
        ["length:target=2,unit=words", {"name": "length", "target": 4, "label": "long"},
         {"function": f"{reward_file}:count"}],
        "eval_rewards",
    )
    assert list(rewards) == ["length", "long", "count"]
    assert [reward.__name__ for reward in rewards.values()] == ["length", "long", "count"]
    assert rewards["long"](["q"], ["one two"]) == [0.5]
    assert build_rewards([], "sources") == {}


def test_parse_reward_specs_checks_every_spec_and_distinct_labels():
    specs = ["length:target=4", {"name": "length", "target": 8, "label": "long"}, "{function: 'm:f'}"]
    assert parse_reward_specs(specs, "eval_rewards") == [
        {"name": "length", "target": 4}, {"name": "length", "target": 8, "label": "long"}, {"function": "m:f"}
    ]
    assert parse_reward_specs((), "sources") == []
    with raises_exactly(ValueError, "sources share the name(s) ['f', 'length']; give each a distinct 'label'."):
        parse_reward_specs(["length:target=4", "{function: 'a:f'}", "length:target=8", "{function: 'b.py:f'}"],
                           "sources")
    with raises_exactly(ValueError, f"sources[2]: {EXACTLY_ONE} ['target']."):
        parse_reward_specs(["format", "answer", {"target": 3}], "sources")
    with raises_exactly(ValueError, "sources: expected a list of reward specs, got 3."):
        parse_reward_specs(3, "sources")


def test_build_rewards_errors():
    with raises_exactly(ValueError, "eval_rewards share the name(s) ['length']; give each a distinct 'label'."):
        build_rewards(["length:target=4", "length:target=-8"], "eval_rewards")  # checked before anything is built
    with raises_exactly(ValueError, f"rewards[1]: unknown reward 'brevity'; valid rewards: {VALID_REWARDS}."):
        build_rewards(["format", "brevity"], "rewards")
    with raises_exactly(ValueError, "rewards[1]: cannot build reward 'length': length reward: target must be a "
                                    "positive number, got -8"):
        build_rewards(["format", "length:target=-8"], "rewards")
    with raises_exactly(ValueError, "rewards: expected a list of reward specs, got 'format'."):
        build_rewards("format", "rewards")
    with raises_exactly(ValueError, "rewards: expected a list of reward specs, got {'name': 'format'}."):
        build_rewards({"name": "format"}, "rewards")


# --- resolve_spec_paths ---------------------------------------------------------------------------------------------


def test_relative_paths_in_specs_become_absolute(tmp_path):
    base = tmp_path / "configs"
    (base / "models" / "rm").mkdir(parents=True)  # a reward model's folder (a missing one would be a Hub id)
    spec = {
        "label": "total",
        "sum": [
            {"weight": 1, "function": "rewards/politeness.py:score", "scale": 2},
            {"weight": 2, "sum": [{"weight": 1, "name": "reward_model", "path": "models/rm"},
                                  {"weight": 1, "function": "package.module:score"}]},
            {"weight": 1, "function": "/abs/rewards.py:score"},
        ],
    }
    resolved = resolve_spec_paths(spec, base)
    assert resolved == {
        "label": "total",
        "sum": [
            {"weight": 1, "function": f"{(base / 'rewards/politeness.py').resolve()}:score", "scale": 2},
            {"weight": 2, "sum": [{"weight": 1, "name": "reward_model", "path": str((base / "models/rm").resolve())},
                                  {"weight": 1, "function": "package.module:score"}]},
            {"weight": 1, "function": "/abs/rewards.py:score"},
        ],
    }
    assert spec["sum"][0]["function"] == "rewards/politeness.py:score"


def test_oracle_files_and_lists_of_specs_are_resolved(tmp_path):
    assert resolve_spec_paths({"type": "labels", "path": "labels.jsonl"}, tmp_path) == {
        "type": "labels", "path": str((tmp_path / "labels.jsonl").resolve())
    }
    assert resolve_spec_paths({"type": "human", "answers": "answers.jsonl"}, tmp_path) == {
        "type": "human", "answers": str((tmp_path / "answers.jsonl").resolve())
    }
    assert resolve_spec_paths({"type": "reward", "function": "gold.py:score"}, tmp_path) == {
        "type": "reward", "function": f"{(tmp_path / 'gold.py').resolve()}:score"
    }
    specs = [{"name": "length", "target": 4}, "format", {"function": "r.py:f", "label": "mine"}]
    assert resolve_spec_paths(specs, tmp_path) == [
        {"name": "length", "target": 4}, "format", {"function": f"{(tmp_path / 'r.py').resolve()}:f", "label": "mine"}
    ]
    assert resolve_spec_paths("reward_model:path=rm", tmp_path) == "reward_model:path=rm"
    assert resolve_spec_paths(None, tmp_path) is None


# --- scores_of ----------------------------------------------------------------------------------------------------


def test_scores_are_floats_with_unscored_values_as_none():
    scores = scores_of([1, None, math.nan, math.inf, -math.inf, 2.5, torch.tensor(0.25).item()], 7, "eval_reward")
    assert scores == [1.0, None, None, None, None, 2.5, 0.25]
    assert isinstance(scores[0], float)
    assert scores_of(torch.tensor([0.5, math.nan]), 2, "eval_reward") == [0.5, None]
    assert scores_of((value for value in [3]), 1, "eval_reward") == [3.0]


def test_scores_errors_name_where():
    with raises_exactly(RewardFunctionError, "eval_reward returned 2 scores for 3 completions."):
        scores_of([1.0, 2.0], 3, "eval_reward")
    with raises_exactly(
        RewardFunctionError, "source 'good' returned 'a' (str) for completion 1; scores must be numbers or None."
    ):
        scores_of([1.0, "a"], 2, "source 'good'")
    with raises_exactly(
        RewardFunctionError, "eval_reward returned False (bool) for completion 0; scores must be numbers or None."
    ):
        scores_of([False], 1, "eval_reward")
