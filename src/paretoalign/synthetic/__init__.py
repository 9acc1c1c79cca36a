"""Synthetic benchmarks with exact ground truth: tabular DPO against its true Pareto front (:mod:`.tabular`) and
transfer from imperfect reward models on a KL-regularised bandit (:mod:`.bandit`)."""
