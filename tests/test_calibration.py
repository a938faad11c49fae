"""Theme accuracy: the project's own challenge set always; the shared dev set when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiwatch.config import load_config
from aiwatch.relevance.evaluate import ItemScorer, evaluate, load_labels

ROOT = Path(__file__).resolve().parents[1]
CHALLENGE = ROOT / "tests" / "data" / "challenge"
DEV = ROOT.parent / "shared" / "data" / "relevance-dev"


def _macro(reports, system, key):
    rows = [r.rows[system][key] for r in reports]
    return sum(rows) / len(rows)


def test_challenge_set_holds_its_measured_accuracy(embedder):
    config = load_config(None)
    reports = evaluate(ItemScorer(load_labels(CHALLENGE), embedder, config), config.themes)
    assert len(reports) == 3
    # README: F1 0.90 at the default thresholds; keywords 0.62, description 0.70
    assert _macro(reports, "aiwatch", "f1") >= 0.85
    assert _macro(reports, "aiwatch", "f1") >= _macro(reports, "keywords", "f1") + 0.15
    assert _macro(reports, "aiwatch", "f1") >= _macro(reports, "description", "f1") + 0.10


@pytest.mark.skipif(not (DEV / "items.jsonl").exists(), reason="../shared/data/relevance-dev absent")
def test_dev_set_targets(embedder):
    config = load_config(None)
    reports = evaluate(ItemScorer(load_labels(DEV), embedder, config), config.themes)
    grouped = _macro(reports, "aiwatch", "grouped_f1")
    in_sample = _macro(reports, "aiwatch", "f1")
    better_baseline = max(_macro(reports, "keywords", "grouped_f1"), _macro(reports, "description", "grouped_f1"))
    assert grouped >= 0.89  # README: 0.904 with onnx-int8 (0.916 with torch)
    assert grouped - better_baseline >= 0.12  # README: 0.904 against 0.763
    assert abs(in_sample - grouped) < 0.05  # thresholds that generalise
