"""Built-in reward functions: exact scores on tricky completions, configuration errors, the registry."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from paretoalign.rewards.builtin import (
    AnswerReward,
    completion_text,
    conciseness_reward,
    extract_answer,
    FormatReward,
    get_reward,
    KeywordReward,
    last_number,
    LengthReward,
    RewardModel,
    REWARDS,
    SentimentReward,
)

TRL_EXTRAS = {"completion_ids": [[1, 2]], "trainer_state": object(), "log_metric": print, "log_extra": print}
"""Keyword arguments GRPOTrainer passes besides dataset columns (for one completion)."""

ODD_COMPLETIONS = [
    "",
    "   ",
    None,
    [{"role": "assistant", "content": None}],
    [{"role": "user", "content": "no assistant message"}],
    [],
    "١٢ ٣",
    "no number at all",
    "\\boxed{",
    "}}}{{{\\boxed{\\boxed{}",
    "<answer></answer></answer><answer>",
    "7" * 5000,
    "x" * 100_000,
    "😀 \u0000 \ufeff",
    42,
]


def chat(text):
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------------------------------------------------
# Reading completions and answers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain text", "plain text"),
        (chat("reply"), "reply"),
        ([{"role": "assistant", "content": "first"}, {"role": "tool", "content": "x"}, *chat("last")], "last"),
        ([*chat("reply"), {"role": "tool", "content": "tool output"}], "reply"),
        ({"role": "assistant", "content": "one message"}, "one message"),
        (chat([{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]), "ab"),
        (chat(None), ""),
        ([{"role": "user", "content": "question"}], ""),
        (None, ""),
        (17, ""),
    ],
)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


@pytest.mark.parametrize(
    ("text", "answer_part"),
    [
        ("I think \\boxed{12}.", "12"),
        ("\\boxed{\\frac{3}{4}} then <answer>5</answer>", "\\frac{3}{4}"),
        ("\\boxed{1} and later \\boxed{2}", "2"),
        ("\\boxed{2} and an unclosed \\boxed{3", "2"),
        ("<answer> 12 </answer>", " 12 "),
        ("<answer>1</answer> <answer>2</answer>", "2"),
        ("<answer>unclosed 4", "<answer>unclosed 4"),
        ("<ANSWER>5</ANSWER>", "<ANSWER>5</ANSWER>"),
        ("no tags 7", "no tags 7"),
    ],
)
def test_extract_answer(text, answer_part):
    assert extract_answer(text) == answer_part


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("several numbers 3 then 5", Fraction(5)),
        ("1,234", Fraction(1234)),
        ("total: 1,234,567.5 coins", Fraction(2469135, 2)),
        ("-7", Fraction(-7)),
        ("x = \u22127", Fraction(-7)),
        ("10-3", Fraction(3)),
        ("(4)-2", Fraction(2)),
        ("3.25", Fraction(13, 4)),
        ("-3/4", Fraction(-3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("-\\dfrac{1}{2}", Fraction(-1, 2)),
        ("\u0664\u0662", Fraction(42)),
        ("\uff11\uff12", Fraction(12)),
        ("5 m\u00b2", Fraction(5)),
        ("1,2345", Fraction(2345)),
        ("it is 12.", Fraction(12)),
        ("$30", Fraction(30)),
        ("no number", None),
        ("", None),
        ("3/0", None),
        ("1 then " + "9" * 5000, None),
    ],
)
def test_last_number(text, value):
    assert last_number(text) == value


# ---------------------------------------------------------------------------------------------------------
# AnswerReward
# ---------------------------------------------------------------------------------------------------------


def test_answer_reward_numeric_on_tricky_completions():
    reward = AnswerReward()
    completions = [
        "several numbers 3 then 5",
        "3 then 5 then 4",
        "<think>7 + 5</think> <answer> 12 </answer>",
        "The result is \\boxed{12}, not 13",
        "<answer>1,234</answer>",
        "I get -7",
        "no number",
        "",
        None,
        chat("so 17"),
        chat(None),
        "\u0661\u0667",
        "\\boxed{0.75}",
    ]
    answers = ["5", "5", 12, "12", "1234", -7, "1", "1", "1", "17", "17", 17, "\\frac{3}{4}"]
    scores = reward([None] * len(completions), completions, answer=answers, **TRL_EXTRAS)
    assert scores == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("#### 72", 1.0),
        ("\\boxed{72}", 1.0),
        (72, 1.0),
        (72.0, 1.0),
        (torch.tensor(72).item(), 1.0),
        (71, 0.0),
        (None, None),
        ("no reference number", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ([72], None),
    ],
)
def test_answer_reward_reference_values(reference, expected):
    assert AnswerReward()(["q"], ["It is 72."], answer=[reference]) == [expected]


def test_answer_reward_decimal_references_are_exact_and_tolerances_apply():
    assert AnswerReward(rel_tol=0, abs_tol=0)(["q"], ["0.1"], answer=[0.1]) == [1.0]
    assert AnswerReward()(["q"] * 2, ["1/3", "0.333"], answer=["0.3333333333333", "1/3"]) == [1.0, 0.0]
    assert AnswerReward(abs_tol=0.001)(["q"], ["0.333"], answer=["1/3"]) == [1.0]
    assert AnswerReward(rel_tol=0.01, abs_tol=0)(["q"] * 2, ["99.5", "98"], answer=[100, 100]) == [1.0, 0.0]


def test_answer_reward_exact_mode_normalises_case_and_whitespace():
    reward = AnswerReward(mode="exact")
    completions = [
        "<answer>  New   York\n</answer>",
        "\\boxed{PARIS}",
        "new york",
        "<answer>York</answer>",
        "",
        "<answer>17</answer>",
    ]
    answers = ["new york", "Paris", " New York ", "new york", "x", 17.0]
    assert reward([None] * 6, completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert reward(["q"], ["x"], answer=[None]) == [None]


def test_answer_reward_reads_a_configured_column():
    assert AnswerReward(column="solution")(["q"], ["9"], solution=["9"]) == [1.0]


def test_answer_reward_missing_or_misshapen_column_is_a_configuration_error():
    with pytest.raises(ValueError, match=r"answer reward: needs the dataset column 'answer'.*\['question'\]"):
        AnswerReward()(["q"], ["1"], question=["q"], **TRL_EXTRAS)
    with pytest.raises(ValueError, match=r"one value per completion \(2\), got 1"):
        AnswerReward()(["q", "q"], ["1", "2"], answer=["1"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "fuzzy"}, "mode must be one of"),
        ({"rel_tol": -1}, "rel_tol must be a non-negative number"),
        ({"abs_tol": float("nan")}, "abs_tol must be a non-negative number"),
        ({"column": ""}, "column must be a non-empty column name"),
    ],
)
def test_answer_reward_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        AnswerReward(**params)


# ---------------------------------------------------------------------------------------------------------
# FormatReward
# ---------------------------------------------------------------------------------------------------------

FORMAT_CASES = [
    "<think>a\nb</think>\n<answer>3</answer>\n",
    "<think>a</think><answer>3</answer>",
    "<answer>3</answer> <think>a</think>",
    "<answer>3</answer>",
    "plain 3",
    "",
    "<think>a</think> <answer>3</answer> trailing",
    "<think>a</think><think>b</think> <answer>3</answer>",
]


def test_format_reward_full_match():
    reward = FormatReward()
    assert reward([None] * len(FORMAT_CASES), FORMAT_CASES, **TRL_EXTRAS) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert reward(["q"], [chat("<think>x</think><answer>1</answer>")]) == [1.0]


def test_format_reward_partial_credit_per_tag():
    scores = FormatReward(partial=True)([None] * len(FORMAT_CASES), FORMAT_CASES)
    assert scores == pytest.approx([1.0, 1.0, 0.8, 0.4, 0.0, 0.0, 0.8, 0.6])


def test_format_reward_custom_pattern_and_flags():
    assert FormatReward(pattern=r"Answer: \d+")(["q"] * 2, ["Answer: 42 ", "Answer: x"]) == [1.0, 0.0]
    assert FormatReward(pattern=r"a.b", dotall=False)(["q"] * 2, ["a\nb", "a-b"]) == [0.0, 1.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pattern": "(unclosed"}, "invalid regular expression"),
        ({"pattern": None}, "pattern must be a string"),
        ({"tags": []}, "tags must be a non-empty list"),
        ({"tags": "<think>"}, "tags must be a non-empty list"),
        ({"partial": "yes"}, "partial must be true or false"),
    ],
)
def test_format_reward_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        FormatReward(**params)


# ---------------------------------------------------------------------------------------------------------
# LengthReward
# ---------------------------------------------------------------------------------------------------------

WORDS = ["one two three four", "one two three four five six", "", "one two three four five six seven eight nine"]
"""4, 6, 0 and 9 words."""


def test_length_reward_shapes_in_words():
    linear = LengthReward(target=4)
    gaussian = LengthReward(target=4, shape="gaussian", width=2)
    cap = LengthReward(target=4, unit="words", shape="cap")
    prompts = [None] * len(WORDS)
    assert linear(prompts, WORDS, **TRL_EXTRAS) == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert gaussian(prompts, WORDS) == pytest.approx([1.0, math.exp(-0.5), math.exp(-2.0), math.exp(-25 / 8)])
    assert cap(prompts, WORDS) == pytest.approx([1.0, 0.5, 1.0, 0.0])
    assert LengthReward(target=4, shape="gaussian")(prompts, WORDS[:2]) == pytest.approx([1.0, math.exp(-0.5)])


def test_length_reward_counts_characters_and_reads_conversational_completions():
    reward = LengthReward(target=10, unit="characters")
    assert reward(["q"] * 3, [chat("abcde"), chat(None), "x" * 12]) == pytest.approx([0.5, 0.0, 0.8])


def test_length_reward_counts_tokens_with_a_tokenizer_or_completion_ids(tiny_tokenizer, tmp_path):
    texts = ["The quick brown fox jumps over the lazy dog.", "Yes."]
    token_counts = [len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    target = 10
    expected = [max(0.0, 1 - abs(count - target) / target) for count in token_counts]
    assert LengthReward(target=target, tokenizer=tiny_tokenizer)(["q", "q"], texts) == pytest.approx(expected)
    tiny_tokenizer.save_pretrained(tmp_path)
    from_directory = LengthReward(target=target, tokenizer=str(tmp_path))
    assert from_directory.unit == "tokens"
    assert from_directory(["q", "q"], texts) == pytest.approx(expected)
    by_ids = LengthReward(target=4, unit="tokens", shape="cap")
    assert by_ids(["q", "q"], ["ignored", "ignored"], completion_ids=[[5, 6, 7], [1] * 6]) == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="completion_ids"):
        by_ids(["q"], ["text"])


def test_conciseness_reward_is_a_cap_length_reward():
    reward = conciseness_reward(target=4)
    assert reward.__name__ == "conciseness"
    assert reward.shape == "cap"
    assert reward([None] * len(WORDS), WORDS) == pytest.approx([1.0, 0.5, 1.0, 0.0])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target": -40}, "target must be a positive number"),
        ({"target": 0}, "target must be a positive number"),
        ({"target": "40"}, "target must be a positive number"),
        ({"target": True}, "target must be a positive number"),
        ({"target": 40, "unit": "lines"}, "unit must be one of"),
        ({"target": 40, "shape": "square"}, "shape must be one of"),
        ({"target": 40, "width": 5}, "width applies only to shape='gaussian'"),
        ({"target": 40, "shape": "gaussian", "width": 0}, "width must be a positive number"),
        ({"target": 40, "unit": "words", "tokenizer": "some/dir"}, "tokenizer is used only with unit='tokens'"),
    ],
)
def test_length_reward_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        LengthReward(**params)


def test_length_reward_missing_tokenizer_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        LengthReward(target=4, tokenizer=tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------------
# KeywordReward
# ---------------------------------------------------------------------------------------------------------


def test_keyword_reward_fraction_of_conditions():
    reward = KeywordReward(required=["please", "thank"], forbidden=["stupid"])
    completions = ["Please wait, thank you", "PLEASE, you stupid", "nothing", "", chat("thanks"), None]
    assert reward([None] * 6, completions, **TRL_EXTRAS) == pytest.approx([1.0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1 / 3])


def test_keyword_reward_case_and_word_boundaries():
    completions = ["Thanks a lot", "thank you", "THANK-you", "thank_you"]
    assert KeywordReward(required="thank")([None] * 4, completions) == [1.0, 1.0, 1.0, 1.0]
    assert KeywordReward(required="thank", case_sensitive=True)([None] * 4, completions) == [0.0, 1.0, 0.0, 1.0]
    assert KeywordReward(required="thank", whole_words=True)([None] * 4, completions) == [0.0, 1.0, 1.0, 0.0]
    assert KeywordReward(forbidden=["c++"], whole_words=True)([None] * 2, ["I like C++.", "c+++"]) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "at least one required or forbidden keyword"),
        ({"required": [], "forbidden": None}, "at least one required or forbidden keyword"),
        ({"required": ["ok", ""]}, "required must be a list of non-empty strings"),
        ({"forbidden": [3]}, "forbidden must be a list of non-empty strings"),
        ({"required": "x", "whole_words": 1}, "whole_words must be true or false"),
    ],
)
def test_keyword_reward_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        KeywordReward(**params)


# ---------------------------------------------------------------------------------------------------------
# SentimentReward
# ---------------------------------------------------------------------------------------------------------


def test_sentiment_reward_vader_compound():
    completions = ["I love this, it is wonderful!", chat("This is terrible."), "The box holds 12 apples.", "", None]
    assert SentimentReward()([None] * 5, completions, **TRL_EXTRAS) == [0.8478, -0.4767, 0.0, None, None]
    assert SentimentReward(unit_interval=True)([None] * 3, completions[:3]) == pytest.approx([0.9239, 0.26165, 0.5])


def test_sentiment_reward_rejects_bad_parameters():
    with pytest.raises(ValueError, match="unit_interval must be true or false"):
        SentimentReward(unit_interval="yes")


# ---------------------------------------------------------------------------------------------------------
# Robustness of every text reward
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reward",
    [
        AnswerReward(),
        AnswerReward(mode="exact"),
        FormatReward(partial=True),
        LengthReward(target=5, shape="gaussian"),
        conciseness_reward(target=5, unit="characters"),
        KeywordReward(required=["a"], forbidden=["b"], whole_words=True),
        SentimentReward(),
    ],
    ids=lambda reward: f"{reward.__name__}",
)
def test_text_rewards_never_raise_on_odd_completions(reward):
    count = len(ODD_COMPLETIONS)
    scores = reward([None] * count, ODD_COMPLETIONS, answer=["12"] * count, completion_ids=[[1]] * count)
    assert len(scores) == count
    assert all(score is None or (isinstance(score, float) and 0.0 <= abs(score) <= 1.0) for score in scores)


# ---------------------------------------------------------------------------------------------------------
# RewardModel
# ---------------------------------------------------------------------------------------------------------


def build_sequence_classifier(config):
    """A Llama reward model with random weights (seed 0); the tiny configs have no pad_token_id."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    return LlamaForSequenceClassification(config)


@pytest.fixture(scope="module")
def reward_model_dirs(tmp_path_factory, tiny_tokenizer, make_tiny_llama_config):
    """Saved reward models with one and with two labels, with the tiny tokenizer."""
    directories = {}
    for num_labels in (1, 2):
        path = tmp_path_factory.mktemp(f"reward-model-{num_labels}")
        config = make_tiny_llama_config(len(tiny_tokenizer), num_labels=num_labels)
        build_sequence_classifier(config).save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        directories[num_labels] = path
    return directories


def manual_scores(directory, texts, add_special_tokens, label_index=0):
    """One unpadded forward pass per text."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True).eval()
    scores = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt")["input_ids"]
            scores.append(model(input_ids=ids).logits[0, label_index].item())
    return scores


def test_reward_model_scores_equal_a_manual_forward(reward_model_dirs):
    directory = reward_model_dirs[1]
    reward = RewardModel(directory, batch_size=2, device="cpu")
    assert reward.__name__ == "reward_model"
    prompts = ["Human: How do I bake bread? ", "Say yes. ", "Be kind. "]
    completions = ["Mix flour, water, salt and yeast, then bake it.", chat("Yes."), "No."]
    texts = ["Human: How do I bake bread? Mix flour, water, salt and yeast, then bake it.", "Say yes. Yes.", "Be kind. No."]
    expected = manual_scores(directory, texts, add_special_tokens=True)
    scores = reward(prompts, completions, **TRL_EXTRAS)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(scores)) == 3


def test_reward_model_renders_conversations_with_the_chat_template(reward_model_dirs, tiny_tokenizer):
    directory = reward_model_dirs[1]
    prompts = [[{"role": "user", "content": "How do I bake bread?"}], [{"role": "user", "content": "Yes?"}]]
    completions = [chat("Mix flour and water."), chat(None)]
    texts = [
        tiny_tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": completion_text(completion)}], tokenize=False
        )
        for prompt, completion in zip(prompts, completions)
    ]
    expected = manual_scores(directory, texts, add_special_tokens=False)
    assert RewardModel(directory, batch_size=8, device="cpu")(prompts, completions) == pytest.approx(expected, abs=1e-5)


def test_reward_model_keeps_the_last_max_length_tokens(reward_model_dirs, tiny_tokenizer):
    directory = reward_model_dirs[1]
    text = "The quick brown fox jumps over the lazy dog. I cannot help with that request."
    ids = tiny_tokenizer(text)["input_ids"]
    assert len(ids) > 6
    expected = manual_scores(directory, [tiny_tokenizer.decode(ids[-6:])], add_special_tokens=False)
    assert RewardModel(directory, max_length=6, device="cpu")([""], [text]) == pytest.approx(expected, abs=1e-5)


def test_reward_model_label_index(reward_model_dirs):
    directory = reward_model_dirs[2]
    expected = manual_scores(directory, ["q: a", "q: bb"], add_special_tokens=True, label_index=1)
    reward = RewardModel(directory, label_index=1, batch_size=2, device="cpu")
    assert reward(["q: ", "q: "], ["a", "bb"]) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="has 2 labels; choose the reward logit with label_index"):
        RewardModel(directory)
    with pytest.raises(ValueError, match="label_index must be an integer from 0 to 1"):
        RewardModel(directory, label_index=2)


def test_reward_model_missing_directory_and_bad_parameters(tmp_path, reward_model_dirs):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        RewardModel(missing)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        RewardModel(reward_model_dirs[1], batch_size=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        RewardModel(reward_model_dirs[1], dtype="float8")


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


def test_registry_names_and_logging_names(reward_model_dirs):
    assert list(REWARDS) == [
        "answer", "format", "length", "conciseness", "keyword", "sentiment", "reward_model", "pair_classifier",
    ]
    built = {
        "answer": get_reward("answer"),
        "format": get_reward("format", partial=True),
        "length": get_reward("length", target=40, unit="words", shape="cap"),
        "conciseness": get_reward("conciseness", target=40),
        "keyword": get_reward("keyword", required=["please"]),
        "sentiment": get_reward("sentiment", unit_interval=True),
        "reward_model": get_reward("reward_model", path=str(reward_model_dirs[1]), device="cpu"),
    }
    for name, reward in built.items():
        assert reward.__name__ == name
    assert built["length"].target == 40.0 and built["length"].shape == "cap" and built["length"].unit == "words"


def test_get_reward_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown reward 'brevity'; valid rewards: answer, format, length, concise"):
        get_reward("brevity")
    with pytest.raises(ValueError, match="reward 'length': .*'shape_name'.*its parameters are target, unit, shape"):
        get_reward("length", target=4, shape_name="cap")
    with pytest.raises(ValueError, match="reward 'conciseness': missing a required argument: 'target'"):
        get_reward("conciseness")
    with pytest.raises(ValueError, match="target must be a positive number"):
        get_reward("length", target=-3)
