"""Gold specs, scoring, degraded completions, the injection schedule and flagging."""

import pytest

from app.quality.stats.gold import (
    GoldScore,
    GoldSpec,
    degrade,
    flag_annotators,
    score_gold,
    should_inject_gold,
)

SPEC = GoldSpec.parse("g1", [{"better": "A", "worse": "C"}, {"last": "D"}])


def test_parse_round_trip_and_errors() -> None:
    assert SPEC.to_list() == [{"better": "A", "worse": "C"}, {"last": "D"}]
    for bad in ([], [{"better": "A"}], [{"better": "A", "worse": "A"}], [{"last": "D", "first": "A"}], ["A>C"]):
        with pytest.raises(ValueError):
            GoldSpec.parse("g", bad)


def test_map_letters_to_ids() -> None:
    spec = SPEC.map_ids({"A": 11, "C": 13, "D": 14})
    assert spec.to_list() == [{"better": 11, "worse": 13}, {"last": 14}]


def test_score_gold() -> None:
    assert score_gold({"A": 1, "B": 2, "C": 3, "D": 4}, SPEC) == GoldScore(2, 2)
    s = score_gold({"A": 3, "B": 2, "C": 1, "D": 4}, SPEC)
    assert (s.satisfied, s.applicable, s.fraction, s.passed) == (1, 2, 0.5, False)
    # ties fail: D tied for last, A tied with C
    assert score_gold({"A": 1, "C": 1, "B": 2, "D": 2}, SPEC) == GoldScore(0, 2)
    # C not shown: only the "last" constraint applies
    assert score_gold({"A": 1, "B": 2, "D": 3}, SPEC) == GoldScore(1, 1)
    assert score_gold({"B": 1, "E": 2}, SPEC).passed is None
    first = GoldSpec.parse("g", [{"first": "B"}])
    assert score_gold({"A": 2, "B": 1}, first).passed is True


TEXT = "The quick brown fox jumps over the lazy dog near the river bank today"


def test_degrade_truncate_and_shuffle_are_deterministic() -> None:
    t1 = degrade(TEXT, "truncate", 7, original_ids=["a", "b"], degraded_id="x")
    t2 = degrade(TEXT, "truncate", 7, original_ids=["a", "b"], degraded_id="x")
    assert t1 == t2
    words = TEXT.split()
    assert TEXT.startswith(t1.text) and 1 <= len(t1.text.split()) <= len(words) // 2
    assert t1.constraints == [{"better": "a", "worse": "x"}, {"better": "b", "worse": "x"}]
    s = degrade(TEXT, "shuffle", 7, original_ids=["a"], degraded_id="x")
    assert s.text != TEXT and sorted(s.text.split()) == sorted(words)
    assert s == degrade(TEXT, "shuffle", 7, original_ids=["a"], degraded_id="x")
    outs = {degrade(TEXT, "shuffle", seed, original_ids=["a"], degraded_id="x").text for seed in range(5)}
    assert len(outs) > 1  # the seed matters


def test_degrade_other_prompt_and_errors() -> None:
    o = degrade(TEXT, "other_prompt", 1, original_ids=["a"], degraded_id="x", other_answers=["foo bar", TEXT])
    assert o.text == "foo bar"  # never the original itself
    with pytest.raises(ValueError):
        degrade(TEXT, "other_prompt", 1, original_ids=["a"], degraded_id="x")
    with pytest.raises(ValueError):
        degrade("word", "truncate", 1, original_ids=["a"], degraded_id="x")
    with pytest.raises(ValueError):
        degrade("same same", "shuffle", 1, original_ids=["a"], degraded_id="x")


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.15, 1 / 3, 0.5, 0.7])
def test_should_inject_gold_hits_the_rate_at_every_prefix(rate: float) -> None:
    for ann in ("alice", "bob", 42):
        flags = [should_inject_gold(rate, ann, n, seed=3) for n in range(600)]
        for n in range(1, 601):
            assert abs(sum(flags[:n]) - rate * n) <= 1.0
    a = [should_inject_gold(rate, "alice", n, 3) for n in range(200)]
    b = [should_inject_gold(rate, "bob", n, 3) for n in range(200)]
    assert a != b  # positions differ between annotators
    assert a == [should_inject_gold(rate, "alice", n, 3) for n in range(200)]  # and are reproducible


def test_should_inject_gold_edges() -> None:
    assert not any(should_inject_gold(0.0, "a", n) for n in range(50))
    assert all(should_inject_gold(1.0, "a", n) for n in range(50))


def test_flag_annotators() -> None:
    flags = {f.annotator_id: f for f in flag_annotators({
        "good": [GoldScore(2, 2)] * 6,
        "bad": [GoldScore(0, 2)] * 3 + [GoldScore(2, 2)] * 3,
        "new": [GoldScore(0, 2)] * 2,
    }, threshold=0.7, min_items=5)}
    assert not flags["good"].flagged and flags["good"].accuracy == 1.0
    assert flags["bad"].flagged and flags["bad"].accuracy == 0.5 and flags["bad"].n_constraints == 12
    assert flags["bad"].ci_low is not None and flags["bad"].ci_low < 0.5 < (flags["bad"].ci_high or 0)
    assert not flags["new"].flagged and flags["new"].n_items == 2  # too few items to judge


@pytest.mark.parametrize("rate", [1e-320, 5e-324, 1e-300, 1e-17, float("nan"), float("inf"), -1e-320])
def test_injection_schedule_never_overflows(rate: float) -> None:
    """Issue 16: a gold rate of 1e-320 made b / rate infinite and ceil() raise OverflowError on every task page."""
    shown = [should_inject_gold(rate, 7, n) for n in (0, 1, 2, 10**6)]
    assert shown == [rate == float("inf")] * 4  # a vanishing rate shows no gold in any reachable task
