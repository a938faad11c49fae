"""The story-grouping benchmark: its metrics on a hand-computed example (always), and a small slice
of the labelled pool through aiwatch's own stories stage (when ../shared/data is there)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import stories_bench as sb  # noqa: E402

POOL = next((p for p in (Path("/work/shared/data"), ROOT.parent / "shared" / "data")
             if (p / "relevance-pool" / "items.jsonl").is_file()), None)

# Events: {a b c} {d e} {f}; stories: {a b} {c d e} {f}. a b c f are English, d e Chinese.
GOLD = {"a": "E1", "b": "E1", "c": "E1", "d": "E2", "e": "E2", "f": "E3"}
PRED = {"a": "S1", "b": "S1", "c": "S2", "d": "S2", "e": "S2", "f": "S3"}
LANG = {"a": "en", "b": "en", "c": "en", "d": "zh", "e": "zh", "f": "en"}


def test_metrics_on_a_hand_computed_example():
    pairs = sb.pairwise(GOLD, PRED, LANG)
    # gold pairs ab ac bc de, predicted ab cd ce de: tp ab de, fp cd ce, fn ac bc
    assert pairs["all"] == pytest.approx((0.5, 0.5, 0.5, 4, 4))
    assert pairs["en-en"] == pytest.approx((1.0, 1 / 3, 0.5, 3, 1))  # ab found, ac bc missed
    assert pairs["zh-zh"] == pytest.approx((1.0, 1.0, 1.0, 1, 1))
    assert pairs["en-zh"][0] == 0.0 and pairs["en-zh"][2] == 0.0 and pairs["en-zh"][3:] == (0, 2)
    # BCubed per item (precision, recall): a b (1, 2/3), c (1/3, 1/3), d e (2/3, 1), f (1, 1)
    p, r, f = sb.bcubed(GOLD, PRED)
    assert (p, r, f) == pytest.approx((7 / 9, 7 / 9, 7 / 9))
    # the perfect grouping, and everything in one story
    assert sb.bcubed(GOLD, {i: e for i, e in GOLD.items()}) == pytest.approx((1, 1, 1))
    assert sb.bcubed(GOLD, {i: "one" for i in GOLD}) == pytest.approx(((9 + 4 + 1) / 36, 1, 28 / 50))
    s = sb.scores(GOLD, PRED, LANG)
    assert s["bcubed zh"] == pytest.approx((1, 1, 1))  # within Chinese, d and e are one story alone


def test_split_is_by_event_seeded_and_balanced():
    gold = {f"i{n}": f"e{n // 2}" for n in range(40)} | {f"s{n}": f"x{n}" for n in range(20)}
    lang = {i: ("zh" if i.endswith("1") else "en") for i in gold}
    dev, test = sb.split_events(gold, lang, 3)
    assert dev.isdisjoint(test) and dev | test == set(gold.values())
    assert abs(len(dev) - len(test)) <= 1
    assert sb.split_events(gold, lang, 3) == (dev, test)
    assert sum(e.startswith("x") for e in dev) in (9, 10, 11)  # singletons split too


def test_reserved_keys_and_markdown():
    keys = sb.reserved_keys("HTTPS://Example.COM/a/b?x=1#y", "  Some Title ")
    assert keys[1] == sb._sha1("https://example.com/a/b") and keys[2] == sb._sha1("some title")
    assert len(sb.reserved_keys("https://example.com/", "t")) == 2  # no path: no normalised URL
    assert sb.plain("Read ![pic](http://x/i.png)[the report](http://x/r) now") == "Read the report now"


@pytest.mark.skipif(POOL is None, reason="../shared/data/relevance-pool absent")
def test_a_slice_of_the_labelled_pool(tmp_path):
    results = sb.run(["--items", str(POOL / "relevance-pool" / "items.jsonl"),
                      "--reserved", str(POOL / "relevance-reserved.sha1"), "--only-labelled", "--limit", "16",
                      "--no-title", "--thresholds", "0.7,0.85", "--windows", "72",
                      "--db", str(tmp_path / "slice.duckdb")])
    assert len(results) == 2 and next(iter(results)).startswith("default")
    for dev, test in results.values():
        for s in (dev, test):
            assert all(0.0 <= x <= 1.0 for k, v in s.items() for x in v[:3]), s
            assert s["pair all"][3] > 0  # the slice holds same-event pairs
            assert s["bcubed all"][2] >= 0.5  # far from random on real reports of one event
