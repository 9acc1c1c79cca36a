"""Tests for paretoalign.tpo: UCB source selection, the label ledger, rankings, transferred responses, pairs."""

from __future__ import annotations

import json

import pytest

from paretoalign.tpo import (
    SELF_SOURCE,
    BudgetExceededError,
    LabelLedger,
    UCBSourceSelector,
    preference_pair,
    ranking_from_scores,
    replace_with_transferred,
    running_best,
)

# --- UCB selection ----------------------------------------------------------------------------------------------


def test_ucb_values_on_a_hand_made_table():
    selector = UCBSourceSelector(["good", "bad"], refresh_prompts=10)
    selector.wins.update({"good": 6.0, "bad": 1.0, SELF_SOURCE: 2.2})
    selector.picks.update({"good": 9, "bad": 4, SELF_SOURCE: 4})
    values = selector.ucb_values()
    # mean + 1 / sqrt(picks): good 6/9 + 1/3 = 1.0, bad 1/4 + 1/2 = 0.75, self 0.55 + 1/2 = 1.05
    assert values["good"] == pytest.approx(1.0, abs=1e-6)
    assert values["bad"] == pytest.approx(0.75, abs=1e-6)
    assert values[SELF_SOURCE] == pytest.approx(1.05, abs=1e-6)
    selector.refresh()
    assert selector.current == SELF_SOURCE  # the exploration bonus of the less-picked arm decides
    selector.picks["good"], selector.wins["good"] = 16, 12.0  # 0.75 + 0.25 = 1.0 < 1.05: still self
    selector.wins["good"] = 13.0  # 0.8125 + 0.25 = 1.0625 > 1.05
    selector.refresh()
    assert selector.current == "good"


def test_unpicked_arms_are_explored_first_and_ties_go_to_the_first_arm():
    selector = UCBSourceSelector(["a", "b"], refresh_prompts=1)
    selector.refresh()
    assert selector.current == "a"  # every arm has bonus 1000: the first wins the tie
    selector.record("a", supplied_best=True)  # a: 1/1, bonus 1 -> 2; b and self unpicked -> ~1000
    assert selector.current == "b"
    selector.record("b", supplied_best=False)
    assert selector.current == SELF_SOURCE
    assert selector.record(SELF_SOURCE, supplied_best=True) == 0.55  # self scores 0.55 whatever happened
    assert selector.wins == {"a": 1.0, "b": 0.0, SELF_SOURCE: 0.55}
    assert selector.current == "a"  # a: 2.0, b: 1.0, self: 1.55


def test_picks_stay_fixed_between_refreshes_and_outcomes_wait_for_the_refresh():
    selector = UCBSourceSelector(["src"], refresh_prompts=3, seed=4)
    first_block = selector.next_picks(3)
    # before the first refresh each prompt draws uniformly, from (seed, position): reproducible
    assert first_block == UCBSourceSelector(["src"], refresh_prompts=3, seed=4).next_picks(3)
    for arm in first_block:
        selector.record(arm, supplied_best=arm == "src")
    assert selector.prompts_seen == 3 and selector.current is not None
    picks_src = first_block.count("src")
    assert selector.picks["src"] == picks_src and selector.wins["src"] == picks_src
    current = selector.current
    assert selector.next_picks(3) == [current] * 3
    selector.record(current, supplied_best=False)
    selector.record(current, supplied_best=False)
    assert selector.picks[current] == first_block.count(current)  # pending until the refresh
    assert selector.prompts_until_refresh() == 1
    with pytest.raises(ValueError, match="before the next refresh"):
        selector.next_picks(2)


def test_selector_state_round_trips_through_json():
    selector = UCBSourceSelector(["x", "y"], refresh_prompts=2, self_win_score=0.6, seed=1)
    for arm, won in [("x", True), ("y", False), ("x", True)]:
        selector.record(arm, won)
    restored = UCBSourceSelector.from_dict(json.loads(json.dumps(selector.to_dict())))
    assert restored == selector
    assert restored.next_picks(1) == selector.next_picks(1)


def test_self_only_selector_always_picks_self():
    selector = UCBSourceSelector([], refresh_prompts=2)
    assert selector.next_picks(2) == [SELF_SOURCE, SELF_SOURCE]


# --- candidates, rankings, pairs --------------------------------------------------------------------------------


def test_transferred_candidates_replace_the_first_responses_best_first():
    responses, supplied = replace_with_transferred(
        ["p0", "p1", "p2", "p3"], ["c0", "c1", "c2", "c3", "c4"], [0.1, None, 0.9, 0.5, 0.9], 2
    )
    assert responses == ["c2", "c4", "p2", "p3"]  # equal scores: lower candidate index first
    assert supplied == [0, 1]
    responses, supplied = replace_with_transferred(["p0", "p1", "p2"], ["c0", "c1"], [None, 2.0], 2)
    assert responses == ["c1", "p1", "p2"] and supplied == [0]  # an unscored candidate is never transferred


def test_ranking_from_scores_breaks_ties_like_the_reference_code():
    ranking = ranking_from_scores([1.0, 3.0, 0.0, 3.0, 0.0])
    assert (ranking.best, ranking.worst, ranking.cost) == (3, 2, 1)
    assert ranking_from_scores([None, 2.0, float("nan")]).worst == 0
    assert ranking_from_scores([1.0, 1.0, 1.0]).worst is None


def test_preference_pair():
    ranking = ranking_from_scores([0.2, 0.9, 0.1])
    assert preference_pair(["a", "b", "c"], ranking) == (1, 2)
    assert preference_pair(["a", "same", "same"], ranking) is None  # identical texts carry no preference


def test_running_best_uses_n_minus_1_comparisons_and_a_directly_judged_worst():
    quality = [3, 1, 5, 2, 4]
    asked = []

    def compare(champion, challenger):
        asked.append((champion, challenger))
        return (champion if quality[champion] > quality[challenger] else challenger), 1

    ranking = running_best(5, compare)
    assert asked == [(0, 1), (0, 2), (2, 3), (2, 4)]
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 4, 4)
    assert ranking.comparisons == [(0, 1), (2, 0), (2, 3), (2, 4)]
    last = running_best(3, lambda c, d: (d, 1))  # the last response wins: the displaced champion is the worst
    assert (last.best, last.worst) == (2, 1)
    nothing = running_best(3, lambda c, d: (None, 1))
    assert nothing.worst is None and nothing.cost == 2 and nothing.unanswered == 2


# --- budget -----------------------------------------------------------------------------------------------------


def test_ledger_never_exceeds_the_budget_and_resumes_with_the_same_count(tmp_path):
    ledger = LabelLedger(budget=10)
    ledger.spend(7)
    assert ledger.can_afford(3) and not ledger.can_afford(4)
    with pytest.raises(BudgetExceededError):
        ledger.spend(4)
    assert ledger.spent == 7
    assert LabelLedger.from_dict(ledger.to_dict()) == LabelLedger(budget=10, spent=7)
    with pytest.raises(ValueError, match="label_budget must be >= 0"):
        LabelLedger(budget=-1)
