"""Reward functions for multi-reward RL, evaluation and transfer.

* :mod:`paretoalign.rewards.builtin`: the reward-function protocol (``reward(prompts, completions, **kwargs)`` ->
  one number or ``None`` per completion) and the built-in rewards by registry name (:func:`get_reward`:
  ``answer``, ``format``, ``length``, ``conciseness``, ``keyword``, ``sentiment``, ``reward_model``).
* :mod:`paretoalign.rewards.specs`: the grammar of reward specs in configs (``{name: ...}``,
  ``{function: 'module:callable'}``, ``{sum: [{weight: w, <spec>}, ...]}``, optional ``label``) and the builder
  that turns a spec into a checked reward function (:func:`build_reward`).
"""
