"""paretoalign: multi-objective alignment of language models.

One model, several conflicting objectives, the trade-off the user asks for:

* RACO (reward-free, clipped conflict-averse preference optimisation) and its baselines,
* multi-reward online RL (GRPO / GDPO),
* RLHF with imperfect reward models under a budget of trusted labels,

built on one machinery: per-objective losses -> Gram matrix of their gradients -> a weighting -> one update.
"""

__version__ = "0.1.0"
