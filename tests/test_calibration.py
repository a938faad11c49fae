"""Theme accuracy: the project's own challenge set always; the shared dev set when present.

The challenge set (tests/data/challenge, written by the project) is never used for training: it
measures the shipped scorer exactly as `aiwatch run` scores, Chinese items included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiwatch.config import load_config
from aiwatch.relevance.evaluate import ItemScorer, load_labels, prf, reliability
from aiwatch.relevance.protocols import evaluate_split, learning_curve

ROOT = Path(__file__).resolve().parents[1]
CHALLENGE = ROOT / "tests" / "data" / "challenge"
DEV = ROOT.parent / "shared" / "data" / "relevance-dev"


def test_challenge_set_holds_its_measured_accuracy(embedder):
    config = load_config(None)
    scorer = ItemScorer(load_labels(CHALLENGE), embedder, config)
    everything = np.arange(len(scorer.items))
    f1s, baselines = [], {"keywords": [], "description": []}
    for theme in config.themes:
        grades = scorer.labels(theme.name)
        keep = everything[(grades == 0) | (grades == 2)]
        y = grades[keep] == 2
        p = scorer.shipped(theme, keep)
        precision, _, f1 = prf(p >= theme.threshold, y)
        assert precision >= 0.85, theme.name  # README: 0.93 / 0.93 / 1.00
        f1s.append(f1)
        for system in baselines:
            t = scorer.threshold(theme, system, keep)
            baselines[system].append(prf(scorer.scores(theme, system, keep, keep) >= t, y)[2])
        assert reliability(p, y)  # the probabilities fall in bins the calibrate command shows
    # README: macro F1 0.91 at the default threshold; keywords 0.62, description 0.70
    assert np.mean(f1s) >= 0.88
    assert np.mean(f1s) >= np.mean(baselines["keywords"]) + 0.15
    assert np.mean(f1s) >= np.mean(baselines["description"]) + 0.10


def test_items_in_other_languages_are_read_by_the_second_model(embedder):
    """The challenge set's Chinese, German, French, Spanish and Japanese items are scored by the
    multilingual second model; most of their positives are found and few negatives flagged."""
    config = load_config(None)
    scorer = ItemScorer(load_labels(CHALLENGE), embedder, config)
    foreign = np.flatnonzero(~scorer.reads_english())
    assert len(foreign) >= 12
    hits = misses = false = 0
    for theme in config.themes:
        grades = scorer.labels(theme.name)[foreign]
        flagged = scorer.shipped(theme, foreign) >= theme.threshold
        hits += int((flagged & (grades == 2)).sum())
        misses += int((~flagged & (grades == 2)).sum())
        false += int((flagged & (grades == 0)).sum())
    assert hits >= 2 * misses and false <= 2, (hits, misses, false)


@pytest.mark.skipif(not (DEV / "items.jsonl").exists(), reason="../shared/data/relevance-dev absent")
def test_dev_set_learned_scorer_beats_the_baselines(embedder):
    config = load_config(None)
    scorer = ItemScorer(load_labels(DEV), embedder, config, second_opinion=False)
    report = evaluate_split(scorer, "grouped")
    # README (relevance-dev alone, feed-grouped folds, without the second model): aiwatch 0.88
    assert report.macro("aiwatch") >= 0.84
    assert report.macro("aiwatch") >= max(report.macro("keywords"), report.macro("description")) + 0.15
    curve = learning_curve(scorer, steps=(0, 25), repeats=3)
    shown = {k: np.mean([row[k][1] for row in curve.values()]) for k in (0, 25)}
    assert shown[25] >= shown[0] - 1e-9  # judging what it shows never makes it worse here
