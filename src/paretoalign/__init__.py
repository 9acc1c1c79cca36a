"""paretoalign: multi-objective alignment of language models.

One model, several conflicting objectives, the trade-off the user asks for:

* RACO (reward-free, clipped conflict-averse preference optimisation) and its baselines,
* multi-reward online RL (GRPO / GDPO),
* RLHF with imperfect reward models under a budget of trusted labels,

built on one machinery: per-objective losses -> Gram matrix of their gradients -> a weighting -> one update.

The public API is importable from here (``from paretoalign import get_weighting, ParetoPreferenceTrainer``); each
name is loaded from its module on first use, so importing one algorithm does not load the trainers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The module that defines each public name.
_PUBLIC = {
    name: module
    for module, names in {
        "paretoalign.trainers.preference": ["ParetoPreferenceConfig", "ParetoPreferenceTrainer"],
        "paretoalign.trainers.grpo": ["MultiRewardGRPOConfig", "MultiRewardGRPOTrainer"],
        "paretoalign.trainers.transfer": ["TransferConfig", "TransferTrainer"],
        "paretoalign.weighting": ["WEIGHTINGS", "get_weighting", "validate_weights"],
        "paretoalign.losses": ["preference_losses", "preference_metrics"],
        "paretoalign.engine": ["ObjectiveGradients"],
        "paretoalign.advantages": ["conditional_rewards", "decoupled_advantages", "gdpo_advantages", "grpo_advantages"],
        "paretoalign.pareto": ["hypervolume", "pareto_criticality", "pareto_front", "pareto_mask", "simplex_grid"],
        "paretoalign.rewards.builtin": ["get_reward"],
        "paretoalign.rewards.specs": ["build_reward"],
        "paretoalign.models": ["load_policy", "load_trained"],
        "paretoalign.data.preferences": ["load_preferences"],
        "paretoalign.data.prompts": ["load_prompts"],
    }.items()
    for name in names
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'paretoalign' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
