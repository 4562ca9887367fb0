"""compute_quality assembles the API's JSON shape, with None (never NaN) where not computable."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.quality.stats.gold import GoldSpec
from app.quality.stats.records import RankingRecord
from app.quality.stats.report import compute_quality
from tests.quality.quality_factories import ranking, simulated_rankings


def _records() -> list:
    recs = simulated_rankings(12, 4, {"c1": 0.4, "c2": 0.4, "lazy": float("inf")}, seed=2)
    # attach models and lengths so the leaderboard and length bias have data
    out = []
    for r in recs:
        model_of = {c: ("good" if c.endswith(("c0", "c1")) else "weak") for c in r.ranks}
        lengths = {c: 10 + 5 * int(c[-1]) for c in r.ranks}
        out.append(ranking(r.prompt_id, r.annotator_id, dict(r.ranks), shown=r.shown_order,
                           model_of=model_of, lengths=lengths, seconds=40.0))
    out.append(ranking("p0", "gpt-judge", ["p0c3", "p0c2", "p0c1", "p0c0"], is_ai=True, seconds=None))
    out.append(ranking("solo", "newbie", ["s1", "s2"], seconds=None))
    return out


def test_report_shape_and_json_safety() -> None:
    gold = [GoldSpec.parse("p0", [{"better": "p0c0", "worse": "p0c3"}])]
    rep = compute_quality(_records(), gold, n_bootstrap=30, seed=1)
    d = rep.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN / inf
    assert json.loads(text) == d
    assert set(d) >= {"agreement", "annotators", "leaderboard"}
    assert set(d["agreement"]) >= {"pairwise_agreement", "kendall_tau_b", "krippendorff_alpha", "n_prompts_multi"}
    assert d["agreement"]["n_prompts_multi"] == 12
    ann = {a["id"]: a for a in d["annotators"]}
    assert set(ann) == {"c1", "c2", "lazy", "gpt-judge", "newbie"}
    for a in ann.values():
        assert set(a) >= {"id", "rankings", "median_seconds", "trust", "gold_accuracy", "position_bias",
                          "length_rank_corr"}
    assert ann["c1"]["rankings"] == 12 and ann["c1"]["median_seconds"] == 40.0
    assert ann["c1"]["trust"] > ann["lazy"]["trust"]
    assert ann["c1"]["gold_accuracy"] == 1.0
    assert ann["gpt-judge"]["is_ai"] and ann["gpt-judge"]["gold_accuracy"] == 0.0
    # not computable -> None
    assert ann["newbie"]["trust"] is None and ann["newbie"]["median_seconds"] is None
    assert ann["newbie"]["gold_accuracy"] is None and ann["newbie"]["length_rank_corr"] is None
    assert [row["name"] for row in d["leaderboard"]] == ["good", "weak"]
    for row in d["leaderboard"]:
        assert set(row) >= {"name", "score", "ci_low", "ci_high"}
    assert len(rep.ranking_weights) == len(_records())
    assert all(0.1 <= w <= 1.0 for w in rep.ranking_weights.values())

def test_empty_project() -> None:
    d = compute_quality([]).to_dict()
    assert d["agreement"]["pairwise_agreement"] is None and d["agreement"]["krippendorff_alpha"] is None
    assert d["annotators"] == [] and d["leaderboard"] == []
    json.dumps(d, allow_nan=False)


def test_quality_package_imports_neither_torch_nor_worker() -> None:
    # Every module of the package, not just its (empty) __init__, so an import of torch anywhere in it fails.
    code = (
        "import importlib, pkgutil, sys, app.quality\n"
        "names = [m.name for m in pkgutil.walk_packages(app.quality.__path__, 'app.quality.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names), sorted({'torch', 'transformers', 'worker'} & set(sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True)
    count, heavy = out.stdout.split(" ", 1)
    assert int(count) >= 15  # the walk really imported the feature's modules
    assert heavy.strip() == "[]"


def test_ranking_record_validation() -> None:
    with pytest.raises(ValueError, match="empty"):
        RankingRecord("r", "p", "a", {}, [])
    with pytest.raises(ValueError, match="integers >= 1"):
        RankingRecord("r", "p", "a", {"x": 0}, ["x"])
    with pytest.raises(ValueError, match="different completions"):
        RankingRecord("r", "p", "a", {"x": 1}, ["y"])
