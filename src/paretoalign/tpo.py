r"""The pure parts of transfer from imperfect reward models (TPO): source selection, label budget, rankings, pairs.

Empirical TPO of Huang, Li, Dann and He, "Can RLHF be More Efficient with Imperfect Reward Models? A Policy
Coverage Perspective" (ICML 2025, arXiv 2502.19255, Algorithm 3 and the authors' ``annotate_data/Annotation.py``).
Everything here is plain Python on lists and numbers; every state is a JSON-ready dict (``to_dict`` /
``from_dict``), so :mod:`paretoalign.trainers.transfer` checkpoints it and :mod:`paretoalign.synthetic.bandit`
simulates the algorithm with exact ground truth.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SELF_SOURCE", "BudgetExceededError", "LabelLedger", "OracleRanking", "UCBSourceSelector", "preference_pair",
    "ranking_from_scores", "replace_with_transferred", "running_best",
]

#: Name of the "no transfer" arm of the selector (the authors' ``null``).
SELF_SOURCE = "self"


@dataclass
class UCBSourceSelector:
    r"""Upper-confidence-bound choice among the sources and ``self`` (the authors' ``utils.UCB``).

    At each refresh, for every arm s (the sources, then ``self``)

    ``V(s) = wins(s) / (picks(s) + 1e-6) + exploration / sqrt(picks(s) + 1e-6)``

    and the arm with the largest V (the first one on a tie) is used for the next ``refresh_prompts`` prompts. An
    arm never picked has a bonus of 1000 and is tried first. Before the first refresh (``current is None``) each
    prompt draws an arm uniformly at random, from a generator seeded by ``(seed, prompt position)`` so that the
    draws need no stored generator state. A source scores 1 when the oracle-best response is one it supplied and
    0 otherwise; ``self`` scores ``self_win_score`` every time it is picked. Outcomes enter the statistics at the
    next refresh, not before.

    The state is plain JSON (:meth:`to_dict` / :meth:`from_dict`), so it survives checkpoints and carries over
    between iterations.
    """

    sources: list[str]
    refresh_prompts: int = 50
    self_win_score: float = 0.55
    exploration: float = 1.0
    seed: int = 0
    wins: dict[str, float] = field(default_factory=dict)
    picks: dict[str, int] = field(default_factory=dict)
    pending_wins: dict[str, float] = field(default_factory=dict)
    pending_picks: dict[str, int] = field(default_factory=dict)
    prompts_seen: int = 0
    current: str | None = None

    def __post_init__(self) -> None:
        names = list(self.sources)
        if SELF_SOURCE in names:
            names.remove(SELF_SOURCE)
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}.")
        self.sources = names
        if self.refresh_prompts < 1:
            raise ValueError(f"ucb_refresh_prompts must be at least 1, got {self.refresh_prompts}.")
        if not 0.0 <= self.self_win_score <= 1.0:
            raise ValueError(f"self_win_score must lie in [0, 1], got {self.self_win_score}.")
        for table in (self.wins, self.picks, self.pending_wins, self.pending_picks):
            for arm in self.arms:
                table.setdefault(arm, 0)

    @property
    def arms(self) -> list[str]:
        """The sources in order, then ``self``."""
        return [*self.sources, SELF_SOURCE]

    def prompts_until_refresh(self) -> int:
        """How many prompts are left in the current block (at least 1)."""
        return self.refresh_prompts - self.prompts_seen % self.refresh_prompts

    def next_picks(self, count: int) -> list[str]:
        """The arms for the next ``count`` prompts, which must all lie before the next refresh."""
        if not 1 <= count <= self.prompts_until_refresh():
            raise ValueError(f"can plan 1..{self.prompts_until_refresh()} prompts before the next refresh, got {count}.")
        if self.current is not None:
            return [self.current] * count
        arms = self.arms
        return [
            arms[random.Random(f"ucb-{self.seed}-{self.prompts_seen + offset}").randrange(len(arms))]
            for offset in range(count)
        ]

    def record(self, arm: str, supplied_best: bool) -> float:
        """Record one prompt's outcome and return its score; refreshes the statistics after every
        ``refresh_prompts`` prompts."""
        if arm not in self.pending_picks:
            raise ValueError(f"unknown arm {arm!r}; arms are {self.arms}.")
        score = self.self_win_score if arm == SELF_SOURCE else float(supplied_best)
        self.pending_wins[arm] += score
        self.pending_picks[arm] += 1
        self.prompts_seen += 1
        if self.prompts_seen % self.refresh_prompts == 0:
            self.refresh()
        return score

    def refresh(self) -> None:
        """Merge the pending outcomes into the statistics and pick the arm of largest UCB value."""
        for arm in self.arms:
            self.wins[arm] += self.pending_wins[arm]
            self.picks[arm] += self.pending_picks[arm]
            self.pending_wins[arm] = 0.0
            self.pending_picks[arm] = 0
        values = self.ucb_values()
        self.current = max(self.arms, key=lambda arm: (values[arm], -self.arms.index(arm)))

    def mean_wins(self) -> dict[str, float]:
        """``wins(s) / (picks(s) + 1e-6)``: the estimated win rate of each arm (0 for an arm never picked)."""
        return {arm: self.wins[arm] / (self.picks[arm] + 1e-6) for arm in self.arms}

    def ucb_values(self) -> dict[str, float]:
        """``mean_win(s) + exploration / sqrt(picks(s) + 1e-6)`` for each arm."""
        means = self.mean_wins()
        return {arm: means[arm] + self.exploration / math.sqrt(self.picks[arm] + 1e-6) for arm in self.arms}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> UCBSourceSelector:
        return cls(**state)


class BudgetExceededError(RuntimeError):
    """Spending would take the ledger past its label budget."""


@dataclass
class LabelLedger:
    """Oracle queries spent against a budget: one ranking of n responses by a ranking oracle is one query, one
    pairwise comparison is one query. ``spend`` refuses to go past the budget."""

    budget: int
    spent: int = 0

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError(f"label_budget must be >= 0, got {self.budget}.")
        if not 0 <= self.spent <= self.budget:
            raise ValueError(f"spent must lie in [0, budget={self.budget}], got {self.spent}.")

    @property
    def remaining(self) -> int:
        return self.budget - self.spent

    def can_afford(self, cost: int) -> bool:
        return cost <= self.remaining

    def spend(self, cost: int) -> None:
        if cost < 0:
            raise ValueError(f"a cost is non-negative, got {cost}.")
        if not self.can_afford(cost):
            raise BudgetExceededError(f"spending {cost} would exceed the budget ({self.spent} of {self.budget} spent).")
        self.spent += cost

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, int]) -> LabelLedger:
        return cls(budget=int(state["budget"]), spent=int(state["spent"]))


def replace_with_transferred(
    on_policy: Sequence[Any], candidates: Sequence[Any], source_scores: Sequence[float | None], num_replaced: int
) -> tuple[list[Any], list[int]]:
    """Put the ``num_replaced`` best candidates under the source reward in place of the first on-policy responses.

    Candidates are ordered by score, highest first (equal scores by candidate index); unscored (None or NaN)
    candidates are never transferred, so fewer than ``num_replaced`` may be. Returns the new response list and the
    indices of the transferred responses in it (``0 .. k - 1``).
    """
    if len(candidates) != len(source_scores):
        raise ValueError(f"{len(candidates)} candidates but {len(source_scores)} source scores.")
    if not 0 <= num_replaced <= len(on_policy):
        raise ValueError(f"num_replaced must lie in [0, {len(on_policy)}], got {num_replaced}.")
    scored = [i for i, s in enumerate(source_scores) if s is not None and math.isfinite(s)]
    best = sorted(scored, key=lambda i: -source_scores[i])[:num_replaced]
    responses = [candidates[i] for i in best] + list(on_policy[len(best) :])
    return responses, list(range(len(best)))


@dataclass
class OracleRanking:
    """An oracle's judgement of n responses: the best and the worst index (``worst`` None: no pair), the queries
    charged, the scores (ranking oracles) or the (winner, loser) comparisons (pairwise oracles), and how many
    comparisons got no answer (identical responses, an unknown pair, a skip)."""

    best: int
    worst: int | None
    cost: int
    scores: list[float | None] | None = None
    comparisons: list[tuple[int, int]] = field(default_factory=list)
    unanswered: int = 0


def ranking_from_scores(scores: Sequence[float | None]) -> OracleRanking:
    """Best = highest index among the top scores, worst = lowest index among the bottom scores (one query).

    Unscored responses (None or NaN) rank below every scored one; when all scores are equal there is no pair.
    """
    keyed = [(-math.inf if s is None or not math.isfinite(s) else s, i) for i, s in enumerate(scores)]
    ordered = sorted(keyed)
    best, worst = ordered[-1][1], ordered[0][1]
    tied = ordered[-1][0] == ordered[0][0]
    return OracleRanking(best=best, worst=None if tied else worst, cost=1, scores=list(scores))


def running_best(num_responses: int, compare: Callable[[int, int], tuple[int | None, int]]) -> OracleRanking:
    """Find the best of n responses with n - 1 pairwise comparisons against a running best.

    ``compare(champion, challenger)`` returns ``(winner or None, cost)``; None (no answer) keeps the champion.
    The worst is the last response the final best beat in a direct comparison (the champion it displaced when it
    beat no later challenger), so the DPO pair is always one the oracle judged itself. No answered comparison
    involving the best: no pair.
    """
    champion, cost, unanswered = 0, 0, 0
    comparisons: list[tuple[int, int]] = []
    beaten: list[int] = []
    for challenger in range(1, num_responses):
        winner, charged = compare(champion, challenger)
        cost += charged
        if winner is None:
            unanswered += 1
            continue
        loser = challenger if winner == champion else champion
        comparisons.append((winner, loser))
        if winner == champion:
            beaten.append(challenger)
        else:
            champion, beaten = challenger, [loser]
    return OracleRanking(
        best=champion, worst=beaten[-1] if beaten else None, cost=cost, comparisons=comparisons, unanswered=unanswered
    )


def preference_pair(responses: Sequence[str], ranking: OracleRanking) -> tuple[int, int] | None:
    """``(chosen, rejected)`` = (oracle-best, oracle-worst) indices, or None when there is no informative pair."""
    if ranking.worst is None or ranking.worst == ranking.best:
        return None
    if responses[ranking.best] == responses[ranking.worst]:
        return None
    return ranking.best, ranking.worst
