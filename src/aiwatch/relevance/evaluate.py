"""Theme evaluation and calibration on labelled items.

A labels folder holds ``items.jsonl`` (``id``, ``title``, ``text``, optional ``url`` and
``feed``) and ``labels.jsonl`` (``id`` or ``url``, then a 0/1/2 grade per theme). Grade 2 is a
positive, 0 a negative, 1 is left out. Three systems are compared on the same items:

- ``aiwatch``: the full theme score (passages, prototypes, rival themes, negatives, terms);
- ``keywords``: a search-alert rule built from the theme's terms (any must_have term and no
  must_not term), the baseline users know;
- ``description``: cosine of the best passage to the theme description alone.

Thresholds are chosen on training folds and measured on held-out folds: plain 5-fold, and
folds grouped by feed so a theme is never tested on an outlet it was tuned on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import Config
from ..errors import AiwatchError
from .score import ThemeVectors, score_article, theme_texts
from ..text import passages
from .themes import Theme, find_terms
from ..urls import site_of

SYSTEMS = ("aiwatch", "keywords", "description")


@dataclass(frozen=True)
class LabelledItem:
    item_id: str
    title: str
    text: str
    feed: str
    grades: dict[str, int]


def load_labels(folder: Path) -> list[LabelledItem]:
    """Read a labels folder; raises AiwatchError naming the file and line of a bad record."""
    folder = Path(folder)
    items_path, labels_path = folder / "items.jsonl", folder / "labels.jsonl"
    for p in (items_path, labels_path):
        if not p.is_file():
            raise AiwatchError(f"{folder}: no {p.name} (a labels folder holds items.jsonl and labels.jsonl)")
    items, labels = {}, {}
    for path, target in ((items_path, items), (labels_path, labels)):
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AiwatchError(f"{path}:{n}: not JSON: {exc.msg}") from None
            key = row.get("id") or row.get("url")
            if not key:
                raise AiwatchError(f"{path}:{n}: needs an id or url")
            target[key] = row
            if path is items_path and row.get("url"):
                target.setdefault(row["url"], row)
    out = []
    for key, lab in labels.items():
        item = items.get(key)
        if item is None:
            raise AiwatchError(f"{labels_path}: label for {key!r} has no item in items.jsonl")
        grades = {k: int(v) for k, v in lab.items() if k not in ("id", "url") and isinstance(v, (int, float))}
        feed = item.get("feed") or site_of(item.get("url") or "")
        out.append(LabelledItem(key, item.get("title", ""), item.get("text", ""), feed, grades))
    return out


def best_threshold(scores: np.ndarray, y: np.ndarray, min_precision: float | None = None) -> float:
    """The threshold with the best F1 (or, with ``min_precision``, the best recall at that precision)."""
    best_t, best_key = 1.0, (-1.0, -1.0)
    for t in np.unique(scores):
        pred = scores >= t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        fn = int((~pred & y).sum())
        if min_precision is not None:
            prec = tp / (tp + fp) if tp + fp else 0.0
            key = (tp / (tp + fn) if tp + fn else 0.0, -t) if prec >= min_precision else (-1.0, -1.0)
        else:
            key = (2 * tp / (2 * tp + fp + fn) if tp else 0.0, -t)
        if key > best_key:
            best_key, best_t = key, float(t)
    return best_t


def prf(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def folds(n: int, groups: Sequence[str] | None, k: int = 5, seed: int = 13) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        return [np.sort(order[i::k]) for i in range(k)]
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    names = sorted(sizes)
    rng.shuffle(names)
    bins: list[list[str]] = [[] for _ in range(k)]
    for g in sorted(names, key=lambda g: -sizes[g]):  # largest groups first, into the smallest fold
        min(bins, key=lambda b: sum(sizes[x] for x in b)).append(g)
    arr = np.array(groups)
    return [np.flatnonzero(np.isin(arr, b)) for b in bins if b]


def cross_validated(scores: np.ndarray, y: np.ndarray, groups: Sequence[str] | None) -> tuple[float, float, float]:
    pred = np.zeros_like(y)
    for test in folds(len(y), groups):
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[test] = scores[test] >= best_threshold(scores[train], y[train])
    return prf(pred, y)


@dataclass
class ThemeReport:
    theme: str
    positives: int
    negatives: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # system -> metrics


class ItemScorer:
    """Embeds labelled items once and scores them under any theme definitions."""

    def __init__(self, items: Sequence[LabelledItem], embedder, config: Config):
        self.items = list(items)
        self.embedder = embedder
        self.passages = [passages(it.title, it.text, max_words=config.embed.chunk_words,
                                  max_passages=config.embed.max_chunks) or [it.title or " "]
                         for it in self.items]
        flat = [p for ps in self.passages for p in ps]
        vecs = embedder.embed(flat)
        self.vectors, i = [], 0
        for ps in self.passages:
            self.vectors.append(vecs[i:i + len(ps)])
            i += len(ps)
        self._text_vectors: dict[str, np.ndarray] = {}

    def _vectors_for(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        missing = sorted({t for t in texts if t not in self._text_vectors})
        if missing:
            self._text_vectors.update(zip(missing, self.embedder.embed(missing)))
        return self._text_vectors

    def scores(self, theme: Theme, themes: Sequence[Theme], system: str = "aiwatch") -> np.ndarray:
        if system == "keywords":
            out = []
            for ps in self.passages:
                text = "\n".join(ps)
                hit = bool(find_terms(text, theme.must_have)) if theme.must_have else True
                out.append(1.0 if hit and not find_terms(text, theme.must_not) else 0.0)
            return np.array(out)
        vectors = self._vectors_for([t for th in themes for t in theme_texts(th)])
        if system == "description":
            tv = ThemeVectors.build(Theme(theme.name, theme.description, theme.threshold), vectors)
            return np.array([score_article(v, ps, tv).score for v, ps in zip(self.vectors, self.passages)])
        tv = ThemeVectors.build(theme, vectors, themes)
        return np.array([score_article(v, ps, tv).score for v, ps in zip(self.vectors, self.passages)])


def _labelled(scorer: ItemScorer, theme: Theme) -> tuple[np.ndarray, np.ndarray] | None:
    """Which items count for ``theme`` (grade 0 or 2, grade 1 left out) and which of those are
    positive; None when the labels hold no positive or no negative for it."""
    grades = np.array([it.grades.get(theme.name, -1) for it in scorer.items])
    keep = (grades == 0) | (grades == 2)
    y = (grades == 2)[keep]
    return None if y.sum() == 0 or (~y).sum() == 0 else (keep, y)


def evaluate(scorer: ItemScorer, themes: Sequence[Theme]) -> list[ThemeReport]:
    """Per theme and system: in-sample (at the configured and at the best threshold), 5-fold and
    feed-grouped cross-validated precision, recall and F1."""
    reports = []
    feeds = [it.feed for it in scorer.items]
    for theme in themes:
        labelled = _labelled(scorer, theme)
        if labelled is None:
            continue
        keep, y = labelled
        rep = ThemeReport(theme.name, int(y.sum()), int((~y).sum()))
        groups = [g for g, k in zip(feeds, keep) if k]
        for system in SYSTEMS:
            s = scorer.scores(theme, themes, system)[keep]
            row: dict[str, float] = {}
            if system == "keywords":  # a rule has no threshold to tune
                row["p"], row["r"], row["f1"] = prf(s >= 0.5, y)
                row["cv_f1"] = row["grouped_f1"] = row["f1"]
                row["grouped_p"], row["grouped_r"] = row["p"], row["r"]
            else:
                thr = theme.threshold if system == "aiwatch" else best_threshold(s, y)
                row["threshold"] = thr
                row["p"], row["r"], row["f1"] = prf(s >= thr, y)
                row["best_threshold"] = best_threshold(s, y)
                row["best_f1"] = prf(s >= row["best_threshold"], y)[2]
                row["cv_f1"] = cross_validated(s, y, None)[2]
                row["grouped_p"], row["grouped_r"], row["grouped_f1"] = cross_validated(s, y, groups)
            rep.rows[system] = row
        reports.append(rep)
    return reports


def format_report(reports: Sequence[ThemeReport], title: str) -> str:
    lines = [title, f"{'theme':16} {'system':12} {'n+':>4} {'n-':>4} | {'P':>5} {'R':>5} {'F1':>5} "
                    f"| {'5-fold F1':>9} | {'grouped P':>9} {'R':>5} {'F1':>5}"]
    for rep in reports:
        for system, row in rep.rows.items():
            lines.append(f"{rep.theme:16} {system:12} {rep.positives:>4} {rep.negatives:>4} | "
                         f"{row['p']:5.2f} {row['r']:5.2f} {row['f1']:5.2f} | {row['cv_f1']:9.2f} | "
                         f"{row['grouped_p']:9.2f} {row['grouped_r']:5.2f} {row['grouped_f1']:5.2f}")
    for system in SYSTEMS:
        rows = [rep.rows[system] for rep in reports if system in rep.rows]
        if rows:
            lines.append(f"macro {system:12}: F1 {np.mean([r['f1'] for r in rows]):.3f}  "
                         f"5-fold {np.mean([r['cv_f1'] for r in rows]):.3f}  "
                         f"grouped {np.mean([r['grouped_f1'] for r in rows]):.3f}")
    return "\n".join(lines)


def calibrate(scorer: ItemScorer, themes: Sequence[Theme],
              precision_targets: dict[str, float] | None = None) -> dict[str, float]:
    """A threshold per theme: best F1, or the best recall at a precision target."""
    out = {}
    for theme in themes:
        labelled = _labelled(scorer, theme)
        if labelled is None:
            continue
        keep, y = labelled
        s = scorer.scores(theme, themes)[keep]
        target = (precision_targets or {}).get(theme.name)
        out[theme.name] = round(best_threshold(s, y, target), 3)
    return out
