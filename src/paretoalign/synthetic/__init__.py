"""Synthetic benchmarks with exact ground truth: tabular DPO against its true Pareto front (:mod:`.tabular`) and
transfer from imperfect reward models on a KL-regularised bandit (:mod:`.bandit`), and a small neural policy trained on
sampled pairs under gradient noise and gradient-scale imbalance, measured exactly (:mod:`.policy`)."""
