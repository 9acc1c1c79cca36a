"""Transfer from imperfect reward models (TPO): selection, budget, oracles, pairs, the trainer and its CLI."""

from __future__ import annotations

import io
import json
import textwrap

import pytest
import torch

from paretoalign.trainers.transfer import (
    SELF_SOURCE,
    BudgetExceededError,
    HumanOracle,
    LabelLedger,
    LabelsFileOracle,
    OracleInterrupted,
    RewardOracle,
    TransferConfig,
    UCBSourceSelector,
    WeightedSumReward,
    build_reward,
    pair_key,
    parse_transfer_config,
    preference_pair,
    ranking_from_scores,
    replace_with_transferred,
    running_best,
    transcript_messages,
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


# --- oracles ----------------------------------------------------------------------------------------------------


def by_length(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]


def test_reward_oracle_is_one_query_per_ranking():
    oracle = RewardOracle(by_length)
    ranking = oracle.rank("q", ["aa", "a", "aaaa", "aaa"])
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 1)
    assert oracle.max_cost(8) == 1


def test_labels_file_oracle_in_either_order_and_unknown_pairs_reported(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "b"},
        {"prompt": "q", "response_a": "z", "response_b": "y", "preferred": "a"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    oracle = LabelsFileOracle(path)
    ranking = oracle.rank("q", ["x", "y", "z"])
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 2)  # y beats x; z beats y (stored as z vs y)
    ranking = oracle.rank("q", ["x", "w", "y"])  # (x, w) is not in the file: counted, not charged, not guessed
    assert oracle.unknown_pairs == 1 and oracle.unknown_examples == ["q"]
    assert (ranking.best, ranking.worst, ranking.cost, ranking.unanswered) == (2, 0, 1, 1)
    assert pair_key("q", "x", "y") == pair_key("q", "y", "x")


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "c"}', "line 1: field 'preferred'"),
        ('{"prompt": "q", "response_a": 3, "response_b": "y", "preferred": "a"}', "line 1: field 'response_a'"),
        ("not json", "line 1: not valid JSON"),
    ],
)
def test_labels_file_errors_name_the_line_and_field(tmp_path, row, message):
    path = tmp_path / "labels.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=message):
        LabelsFileOracle(path)


def test_labels_file_contradictions_are_errors(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"prompt": "q", "response_a": "x", "response_b": "y", "preferred": "a"}\n'
        '{"prompt": "q", "response_a": "y", "response_b": "x", "preferred": "a"}\n'
    )
    with pytest.raises(ValueError, match="line 2: contradicts line 1"):
        LabelsFileOracle(path)


def _human(path, answers: str) -> tuple[HumanOracle, io.StringIO]:
    shown = io.StringIO()
    return HumanOracle(path, input_stream=io.StringIO(answers), output_stream=shown), shown


def test_human_oracle_via_stdin_resumes_without_asking_again(tmp_path):
    answers_path = tmp_path / "answers.jsonl"
    responses = ["short", "a longer reply", "the longest reply of all"]

    def key_for(champion, challenger, prefer):
        """The key that prefers ``responses[prefer]`` in the comparison (champion, challenger)."""
        a, b = responses[champion], responses[challenger]
        swap = int(pair_key("q", a, b)[0], 16) % 2 == 1
        first = b if swap else a
        return "1" if responses[prefer] == first else "2"

    # the person answers the first comparison (prefers response 1 over 0), then input ends
    oracle, shown = _human(answers_path, "maybe\n" + key_for(0, 1, 1) + "\n")
    with pytest.raises(OracleInterrupted, match="1 given are saved"):
        oracle.rank("q", responses, budget_left=10)
    text = shown.getvalue()
    assert "please type 1, 2 or s, not 'maybe'" in text
    assert "comparison 1 of 2 for this prompt" in text and "labels left: 10" in text
    assert len(answers_path.read_text().splitlines()) == 1

    # a new session reuses the saved answer and asks only the second comparison
    oracle, shown = _human(answers_path, key_for(1, 2, 2) + "\n")
    ranking = oracle.rank("q", responses, budget_left=10)
    assert shown.getvalue().count("PROMPT:") == 1 and "comparison 2 of 2" in shown.getvalue()
    assert "labels left: 9" in shown.getvalue()
    assert (oracle.asked, oracle.reused) == (1, 1)
    assert (ranking.best, ranking.worst, ranking.cost) == (2, 1, 2)

    # a third session asks nothing at all; a skip is stored, charged and keeps the champion
    oracle, shown = _human(answers_path, "")
    assert oracle.rank("q", responses).best == 2 and shown.getvalue() == ""
    oracle, _ = _human(answers_path, "s\n")
    skipped = oracle.rank("q", ["short", "other"])
    assert (skipped.best, skipped.worst, skipped.cost, skipped.unanswered) == (0, None, 1, 1)
    rows = [json.loads(line) for line in answers_path.read_text().splitlines()]
    assert [row["answer"] for row in rows][-1] == "skip" and len(rows) == 3


def test_human_oracle_ignores_a_line_cut_short_by_a_crash(tmp_path):
    answers_path = tmp_path / "answers.jsonl"
    answers_path.write_text('{"key": "abc", "preferred": "x"}\n{"key": "de')
    oracle, _ = _human(answers_path, "")
    assert oracle.answers == {"abc": "x"}


# --- rewards and config -----------------------------------------------------------------------------------------


def test_weighted_sum_reward_and_function_specs(tmp_path):
    module = tmp_path / "my_rewards.py"
    module.write_text("def count(prompts, completions, letter='a'):\n    return [c.count(letter) for c in completions]\n")
    reward = build_reward({"sum": [{"weight": 2.0, "function": f"{module}:count"},
                                   {"weight": -1.0, "function": f"{module}:count", "letter": "b"}]})
    assert isinstance(reward, WeightedSumReward)
    assert reward(["q", "q"], ["aab", "bbb"]) == [3.0, -3.0]
    with pytest.raises(ValueError, match="exactly one of 'name', 'function' or 'sum'"):
        build_reward({"weight": 1.0})
    with pytest.raises(ValueError, match="cannot import module"):
        build_reward({"function": "no_such_module_here:f"})


def test_transcript_messages():
    assert transcript_messages("Human: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}
    ]
    assert transcript_messages("plain") == [{"role": "user", "content": "plain"}]


ORACLE = {"type": "reward", "function": "x.py:f"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"label_budget": -1}, "label_budget must be >= 0"),
        ({"n": 1}, "n must be >= 2"),
        ({"n": 4, "num_replaced": 5}, r"num_replaced must lie in \[1, n - 1\] = \[1, 3\]"),
        ({"sources": [{"target": 3}]}, r"sources\[0\]: needs exactly one of"),
        ({"sources": [{"name": "length"}, {"name": "length"}]}, "distinct 'label'"),
        ({"oracle": {"type": "crowd"}}, "oracle must be a mapping with type"),
        ({"loss_type": "hinge"}, "loss_type must be one of"),
    ],
)
def test_bad_configs_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        TransferConfig(**{"prompts": "p.txt", "oracle": ORACLE, **overrides})


def test_yaml_paths_are_relative_to_the_file_and_cli_overrides_parse(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "run.yaml").write_text(textwrap.dedent("""\
        prompts: prompts.txt
        oracle: {type: labels, path: labels.jsonl}
        sources: [{function: rewards.py:fn, label: mine}]
    """))
    config = parse_transfer_config(folder / "run.yaml", ["--n", "5", "--eval_prompts", "held.txt"])
    assert config.prompts == str(folder / "prompts.txt")
    assert config.oracle == {"type": "labels", "path": str(folder / "labels.jsonl")}
    assert config.sources == [{"function": f"{folder / 'rewards.py'}:fn", "label": "mine"}]
    assert config.eval_prompts == "held.txt" and config.n == 5
    config = parse_transfer_config(folder / "run.yaml", ["--oracle", "{type: human, answers: a.jsonl}"])
    assert config.oracle == {"type": "human", "answers": "a.jsonl"}


# --- the trainer and the CLI on a tiny random model -------------------------------------------------------------

REWARDS_MODULE = """\
def gold(prompts, completions, **kwargs):
    return [float(len(set(text))) for text in completions]


def longest(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]


def noisy(prompts, completions, **kwargs):
    return [float(hash(text) % 7) for text in completions]
"""


def _write_run(tmp_path, tiny_model_dir, **extra) -> str:
    (tmp_path / "rewards.py").write_text(REWARDS_MODULE)
    (tmp_path / "prompts.txt").write_text("How do I bake bread?\nSay something kind.\nWhat is a fox?\n")
    config = {
        "model": str(tiny_model_dir),
        "prompts": "prompts.txt",
        "eval_prompts": "prompts.txt",
        "max_eval_prompts": 2,
        "prompts_per_iteration": 3,
        "n": 3,
        "m": 4,
        "num_replaced": 1,
        "ucb_refresh_prompts": 2,
        "label_budget": 5,
        "oracle": {"type": "reward", "function": "rewards.py:gold"},
        "sources": [{"function": "rewards.py:longest", "label": "long"}, {"function": "rewards.py:noisy"}],
        "iterations": 1,
        "epochs_per_iteration": 1,
        "batch_size": 2,
        "max_new_tokens": 4,
        "learning_rate": 1e-3,
        "lora_r": 2,
        "lora_alpha": 4,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    import yaml

    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_transfer_runs_checkpoints_and_resumes(tmp_path, tiny_model_dir):
    from paretoalign.cli import main

    config_file = _write_run(tmp_path, tiny_model_dir)
    assert main(["transfer", "--config", config_file]) == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    first = rows[0]
    assert first["prompts"] == 3 and first["labels_spent"] == 3 and first["label_budget"] == 5
    assert sum(first["picks_this_iteration"].values()) == 3
    assert set(first["sources"]) == {"long", "noisy", SELF_SOURCE}
    assert 0.0 <= first["eval_win_rate_vs_initial"] <= 1.0 and first["eval_prompts"] == 2
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["ledger"] == {"budget": 5, "spent": 3} and state["iterations_done"] == 1
    assert state["selector"]["prompts_seen"] == 3
    assert (run / "checkpoint" / "model" / "adapter_config.json").is_file()
    assert any((run / "tensorboard").iterdir()) and (run / "model" / "adapter_config.json").is_file()

    # resume for two more iterations: the ledger continues from 3 and stops at the budget of 5
    assert main(["transfer", "--config", config_file, "--iterations", "3"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["labels_spent"] for row in rows] == [3, 5]
    assert rows[1]["prompts"] == 2 and rows[1]["budget_exhausted"] is True
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["ledger"]["spent"] == 5 and state["selector"]["prompts_seen"] == 5 and state["prompt_cursor"] == 5


def test_resume_continues_bit_for_bit(tmp_path, tiny_model_dir):
    """Two iterations in one run equal one iteration, a stop, and a resumed second iteration."""
    from paretoalign.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = _write_run(tmp_path / "a", tiny_model_dir, iterations=2, label_budget=20)
    assert main(["transfer", "--config", straight]) == 0
    split = _write_run(tmp_path / "b", tiny_model_dir, iterations=1, label_budget=20)
    assert main(["transfer", "--config", split]) == 0
    assert main(["transfer", "--config", split, "--iterations", "2"]) == 0
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    for row_a, row_b in zip(rows_a, rows_b):
        for key in ("labels_spent", "pairs", "picks_this_iteration", "wins_this_iteration", "train_loss"):
            assert row_a[key] == row_b[key], key
    from safetensors.torch import load_file

    weights_a = load_file(tmp_path / "a" / "run" / "model" / "adapter_model.safetensors")
    weights_b = load_file(tmp_path / "b" / "run" / "model" / "adapter_model.safetensors")
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--label_budget", "-1"], "label_budget must be >= 0"),
        (["--n", "1"], "n must be >= 2"),
        (["--num_replaced", "9"], "num_replaced must lie in"),
        (["--sources", "[{name: no_such_reward}]"], "sources[0]"),
        (["--sources", "[{function: 'rewards.py:missing'}]"], "no callable 'missing'"),
    ],
)
def test_cli_bad_configs_exit_with_code_2(tmp_path, tiny_model_dir, capsys, flags, message):
    from paretoalign.cli import main

    config_file = _write_run(tmp_path, tiny_model_dir)
    if "rewards.py:missing" in flags[-1]:
        flags = [flags[0], flags[1].replace("rewards.py", str(tmp_path / "rewards.py"))]
    assert main(["transfer", "--config", config_file, *flags]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
    assert not (tmp_path / "run" / "checkpoint").exists()
