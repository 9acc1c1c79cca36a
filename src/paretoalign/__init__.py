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

#: Public name -> the module that defines it.
_PUBLIC = {
    "ParetoPreferenceConfig": "paretoalign.trainers.preference",
    "ParetoPreferenceTrainer": "paretoalign.trainers.preference",
    "MultiRewardGRPOConfig": "paretoalign.trainers.grpo",
    "MultiRewardGRPOTrainer": "paretoalign.trainers.grpo",
    "TransferConfig": "paretoalign.trainers.transfer",
    "TransferTrainer": "paretoalign.trainers.transfer",
    "get_weighting": "paretoalign.weighting",
    "validate_weights": "paretoalign.weighting",
    "WEIGHTINGS": "paretoalign.weighting",
    "preference_losses": "paretoalign.losses",
    "preference_metrics": "paretoalign.losses",
    "ObjectiveGradients": "paretoalign.engine",
    "grpo_advantages": "paretoalign.advantages",
    "gdpo_advantages": "paretoalign.advantages",
    "decoupled_advantages": "paretoalign.advantages",
    "conditional_rewards": "paretoalign.advantages",
    "pareto_mask": "paretoalign.pareto",
    "pareto_front": "paretoalign.pareto",
    "hypervolume": "paretoalign.pareto",
    "simplex_grid": "paretoalign.pareto",
    "pareto_criticality": "paretoalign.pareto",
    "get_reward": "paretoalign.rewards",
    "build_reward": "paretoalign.rewards",
    "load_policy": "paretoalign.models",
    "load_trained": "paretoalign.models",
    "load_preferences": "paretoalign.data",
    "load_prompts": "paretoalign.data",
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
