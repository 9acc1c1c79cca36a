"""Reward functions for multi-reward RL, evaluation and transfer.

* :mod:`paretoalign.rewards.builtin`: the reward-function protocol (``reward(prompts, completions, **kwargs)`` ->
  one number or ``None`` per completion) and the built-in rewards by registry name (:func:`get_reward`:
  ``answer``, ``format``, ``length``, ``conciseness``, ``keyword``, ``sentiment``, ``reward_model``).
* :mod:`paretoalign.rewards.specs`: the grammar of reward specs in configs (``{name: ...}``,
  ``{function: 'module:callable'}``, ``{sum: [{weight: w, <spec>}, ...]}``, optional ``label``) and the builder
  that turns a spec into a checked reward function (:func:`build_reward`).
"""

from paretoalign.rewards.builtin import (
    REWARDS,
    AnswerReward,
    FormatReward,
    KeywordReward,
    LengthReward,
    RewardFunction,
    RewardModel,
    SentimentReward,
    completion_text,
    conciseness_reward,
    extract_answer,
    get_reward,
    last_number,
)
from paretoalign.rewards.specs import (
    RewardFunctionError,
    WeightedSumReward,
    build_reward,
    build_rewards,
    checked_reward_function,
    parse_key_values,
    parse_reward_spec,
    parse_reward_specs,
    resolve_spec_paths,
    reward_label,
    scores_of,
)

__all__ = [
    "REWARDS",
    "AnswerReward",
    "FormatReward",
    "KeywordReward",
    "LengthReward",
    "RewardFunction",
    "RewardFunctionError",
    "RewardModel",
    "SentimentReward",
    "WeightedSumReward",
    "build_reward",
    "build_rewards",
    "checked_reward_function",
    "completion_text",
    "conciseness_reward",
    "extract_answer",
    "get_reward",
    "last_number",
    "parse_key_values",
    "parse_reward_spec",
    "parse_reward_specs",
    "resolve_spec_paths",
    "reward_label",
    "scores_of",
]
