"""How theme matching is measured, trained and calibrated on labelled items.

Three splits, each fitting on one part and measuring on the other, so that no figure comes from
items a setting was chosen on:

- ``grouped``: 5 folds grouped by feed, so a theme is never tested on an outlet it learned from;
- ``time``: trained on items published before a cutoff date, tested on the later ones (news the
  scorer has never seen: new events, new names, new outlets);
- ``source``: each collection of items in turn is the test part, trained on the others.

:func:`learning_curve` shows what judging pays: a theme without a shipped model, scored from its
description and examples, then after 10, 25 and 50 judgements. :func:`train` fits the models
shipped for the default themes; :func:`calibrate` chooses thresholds and reports reliability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .evaluate import SYSTEMS, ItemScorer, best_threshold, prf, reliability
from .model import CANDIDATE, FEATURE_VERSION, SCALARS, Prior, fit, prior, with_judgements
from .scoring import MIN_FEEDBACK

SPLITS = ("grouped", "time", "source")


@dataclass
class SplitReport:
    split: str
    detail: str  # what was trained and tested on
    rows: dict[str, dict[str, tuple[float, float, float, int]]] = field(default_factory=dict)  # theme -> system -> P,R,F1,n+

    def macro(self, system: str) -> float:
        f1s = [r[system][2] for r in self.rows.values() if system in r]
        return float(np.mean(f1s)) if f1s else 0.0


def _folds_by_feed(scorer: ItemScorer, k: int = 5, seed: int = 13) -> list[np.ndarray]:
    feeds = [it.feed for it in scorer.items]
    sizes: dict[str, int] = {}
    for f in feeds:
        sizes[f] = sizes.get(f, 0) + 1
    names = sorted(sizes)
    np.random.default_rng(seed).shuffle(names)
    bins: list[list[str]] = [[] for _ in range(k)]
    for g in sorted(names, key=lambda g: -sizes[g]):  # largest feeds first, into the smallest fold
        min(bins, key=lambda b: sum(sizes[x] for x in b)).append(g)
    arr = np.array(feeds)
    return [np.flatnonzero(np.isin(arr, b)) for b in bins if b]


def source_of(item) -> str:
    return item.source.split("@", 1)[0] or "(unknown)"


def split_parts(scorer: ItemScorer, split: str, cutoff: str = "2024-01-01") -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(train, test) index pairs of a split, and what it means in words. Items marked train-only
    are in every training part and no test part."""
    pairs, detail = _split_parts(scorer, split, cutoff)
    only = np.array([it.train_only for it in scorer.items], dtype=bool)
    if not only.any():
        return pairs, detail
    extra = np.flatnonzero(only)
    return ([(np.union1d(np.setdiff1d(tr, extra), extra), np.setdiff1d(te, extra)) for tr, te in pairs],
            f"{detail}; {len(extra)} items only ever trained on")


def _split_parts(scorer: ItemScorer, split: str, cutoff: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    n = len(scorer.items)
    everything = np.arange(n)
    if split == "grouped":
        folds = _folds_by_feed(scorer)
        return [(np.setdiff1d(everything, f), f) for f in folds], f"{len(folds)} folds grouped by feed"
    if split == "time":
        early = np.array([i for i, it in enumerate(scorer.items) if not it.published or it.published < cutoff], dtype=int)
        late = np.setdiff1d(everything, early)
        if not len(early) or not len(late):
            return [], f"needs items published before and after {cutoff} (--time-cutoff)"
        return [(early, late)], f"trained on {len(early)} items published before {cutoff}, tested on {len(late)} later"
    if split == "source":
        sources = [source_of(it) for it in scorer.items]
        big = [s for s in sorted(set(sources)) if sources.count(s) >= 50]
        if len(set(sources)) < 2:
            return [], "needs items from at least two sources"
        pairs = [(np.array([i for i in everything if sources[i] != s]), np.array([i for i in everything if sources[i] == s]))
                 for s in big]
        return pairs, f"each of {len(big)} sources in turn tested, trained on the others ({', '.join(big)})"
    raise ValueError(split)


def evaluate_split(scorer: ItemScorer, split: str, systems: Sequence[str] = SYSTEMS,
                   cutoff: str = "2024-01-01") -> SplitReport:
    """Per theme and system: precision, recall and F1 over the split's test parts (pooled)."""
    pairs, detail = split_parts(scorer, split, cutoff)
    report = SplitReport(split, detail)
    for theme in scorer.themes:
        grades = scorer.labels(theme.name)
        report.rows[theme.name] = {}
        for system in systems:
            preds, ys = [], []
            for train, test in pairs:
                if len(train) == 0 or len(test) == 0:
                    continue
                t = scorer.threshold(theme, system, train)
                s = scorer.scores(theme, system, train, test)
                keep = (grades[test] == 0) | (grades[test] == 2)
                preds.append(s[keep] >= t)
                ys.append(grades[test][keep] == 2)
            if preds:
                y = np.concatenate(ys)
                report.rows[theme.name][system] = prf(np.concatenate(preds), y) + (int(y.sum()),)
    return report


def format_reports(reports: Sequence[SplitReport], title: str, systems: Sequence[str] = SYSTEMS) -> str:
    lines = [title]
    for rep in reports:
        if not any(rep.rows.values()):
            lines.append(f"\n{rep.split} split: {rep.detail}")
            continue
        lines.append(f"\n{rep.split} split ({rep.detail})")
        lines.append(f"  {'theme':16} {'n+':>4}  " + "  ".join(f"{s:>22}" for s in systems))
        for theme, rows in rep.rows.items():
            npos = next(iter(rows.values()))[3] if rows else 0
            cells = [f"P{r[0]:.2f} R{r[1]:.2f} F1 {r[2]:.2f}" if (r := rows.get(s)) else "-" for s in systems]
            lines.append(f"  {theme:16} {npos:>4}  " + "  ".join(f"{c:>22}" for c in cells))
        lines.append(f"  {'macro F1':16} {'':>4}  " + "  ".join(f"{rep.macro(s):>22.3f}" for s in systems))
    return "\n".join(lines)


# -- what judging pays --------------------------------------------------------------------------

def learning_curve(scorer: ItemScorer, steps: Sequence[int] = (0, 10, 25, 50), repeats: int = 5,
                   seed: int = 5) -> dict[str, dict[int, tuple[float, float]]]:
    """F1 on the first feed-grouped fold of each theme used as a user's own theme (no shipped
    model: its description and examples through the prior), after k judgements drawn at random
    from the other folds: uniformly, and among the items the theme shows the user (those with a
    probability of CANDIDATE or more, which is what a user judges from a digest).
    theme -> k -> (F1 uniform, F1 shown), each the mean of ``repeats`` draws."""
    train, test = split_parts(scorer, "grouped")[0][0]
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for theme in scorer.themes:
        grades = scorer.labels(theme.name)
        feats, proto = scorer.features(theme.name)
        p_all = prior().probability(proto)
        keep_test = test[(grades[test] == 0) | (grades[test] == 2)]
        pool = train[(grades[train] == 0) | (grades[train] == 2)]
        shown = pool[p_all[pool] >= CANDIDATE]
        out[theme.name] = {}
        for k in steps:
            f1s = []
            for draws_from in (pool, shown):
                runs = []
                for _ in range(repeats if k else 1):
                    judged = rng.choice(draws_from, size=min(k, len(draws_from)), replace=False)
                    y = grades[judged] == 2
                    model = (fit(theme.name, feats[judged][:, :len(SCALARS)], y, c=0.5, calibrate_folds=3)
                             if len(judged) >= MIN_FEEDBACK and y.sum() >= 3 and (~y).sum() >= 3 else None)
                    p = with_judgements(p_all[keep_test], feats[keep_test][:, :len(SCALARS)], model)
                    runs.append(prf(p >= theme.threshold, grades[keep_test] == 2)[2])
                f1s.append(float(np.mean(runs)))
            out[theme.name][k] = (f1s[0], f1s[1])
    return out


def format_learning_curve(curve: dict[str, dict[int, tuple[float, float]]]) -> str:
    steps = sorted(next(iter(curve.values())))
    lines = ["learning curve: F1 of each theme scored as your own theme (no shipped model) after k judgements,",
             "on a feed-grouped fold (uniform: judged items drawn at random from the other folds; shown: drawn",
             "from what the theme shows you, as a user judges from a digest)",
             f"  {'theme':16} " + "  ".join(f"{'k=' + str(k):>15}" for k in steps)]
    for theme, row in curve.items():
        lines.append(f"  {theme:16} " + "  ".join(f"{row[k][0]:>6.2f} / {row[k][1]:<6.2f}" for k in steps))
    lines.append(f"  {'macro':16} " + "  ".join(
        f"{np.mean([r[k][0] for r in curve.values()]):>6.2f} / {np.mean([r[k][1] for r in curve.values()]):<6.2f}"
        for k in steps))
    return "\n".join(lines)


# -- the shipped models and thresholds ----------------------------------------------------------

def train(scorer: ItemScorer, out: Path, note: str) -> dict:
    """Fit every configured theme's models on all labelled items, and the prior on the pooled
    prototype scores; write them to ``out`` (the numbers only, never the items)."""
    everything = np.arange(len(scorer.items))
    themes, proto_x, proto_y = {}, [], []
    for theme in scorer.themes:
        models = scorer.fit(theme, everything)
        if models is not None:
            themes[theme.name] = models.to_json()
        grades = scorer.labels(theme.name)
        keep = (grades == 0) | (grades == 2)
        proto_x.append(scorer.features(theme.name)[1][keep])
        proto_y.append(grades[keep] == 2)
    fitted = Prior.fit(np.concatenate(proto_x), np.concatenate(proto_y))
    doc = {"feature_version": FEATURE_VERSION, "trained_on": note, "prior": {"a": fitted.a, "b": fitted.b},
           "themes": themes}
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n", "utf-8")
    return doc


def calibrate(scorer: ItemScorer, targets: dict[str, float] | None = None
              ) -> tuple[dict[str, float], dict[str, list[tuple[float, float, float, int]]]]:
    """Per theme: the probability threshold with the best F1 (or the best recall at a precision
    target) on the labelled items as `aiwatch run` scores them, and the reliability curve."""
    thresholds, curves = {}, {}
    everything = np.arange(len(scorer.items))
    for theme in scorer.themes:
        grades = scorer.labels(theme.name)
        keep = everything[(grades == 0) | (grades == 2)]
        y = grades[keep] == 2
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        p = scorer.shipped(theme, keep)
        thresholds[theme.name] = round(best_threshold(p, y, (targets or {}).get(theme.name)), 3)
        curves[theme.name] = reliability(p, y)
    return thresholds, curves


def format_reliability(curves: dict[str, list[tuple[float, float, float, int]]]) -> str:
    lines = ["reliability (is a probability what it says?): bin, mean predicted, observed share on the theme, items"]
    for theme, rows in curves.items():
        lines.append(f"  {theme}: " + "; ".join(f"{lo:.1f}+ {pred:.2f}->{obs:.2f} ({n})" for lo, pred, obs, n in rows))
    return "\n".join(lines)
