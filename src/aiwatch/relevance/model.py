"""A theme's learned scorer: logistic regression over what the prototype scorer sees, and more.

The prototype scorer (:mod:`aiwatch.relevance.score`) explains a match: the passage that came
closest to the theme, the nearest example, the terms. It generalises poorly on its own, because
a few examples cannot draw the line between "government AI policy" and "a company's AI news".
A model trained on labelled items draws that line: for each article it reads

- the prototype scores (best passage, title + lead, nearest rival theme, the term checks),
- a few lexical signals (a currency amount, a percentage, a per-token price, not English),
- the title + lead vector and the best passage's vector (MiniLM, 384 each),

and turns them into a probability with one logistic regression per theme (weights fitted on
labels, then Platt-scaled on held-out folds so that 0.5 means even odds on every theme).

Parameters for the default themes ship with aiwatch (``default_models.json``: numbers learned from
labels, never the labelled text). A theme a user writes has no shipped model: it is scored from
its description and examples, and a model is fitted from the user's own judgements once there
are enough of them (``aiwatch feedback``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np

from .score import ThemeVectors, reads_as_english, score_article
from .themes import Theme, find_terms

FEATURE_VERSION = 1
DIMENSIONS = 384
_CURRENCY = re.compile(r"(?:[$€£¥]\s?\d|\d\s?(?:yuan|dollars|cents|euros|pounds|元|美元|日元))", re.IGNORECASE)
_PERCENT = re.compile(r"\d+(?:\.\d+)?\s?(?:%|percent|per cent)", re.IGNORECASE)
_PER_TOKEN = re.compile(r"per (?:million |thousand |1,?000 )?tokens?|百万tokens?|每百万|每千|tokens?\b", re.IGNORECASE)
SCALARS = ("prototype", "best_passage", "nearest_prototype", "lead_prototype", "nearest_rival", "must_have",
           "must_also_have", "must_not", "key_terms", "currency", "percent", "per_token", "not_english")


@dataclass(frozen=True)
class Features:
    vector: np.ndarray  # scalars, then the lead vector, then the best passage's vector
    prototype_score: float  # what the prototype scorer alone says (the explanation's score)
    best: int  # index of the best passage
    nearest: str
    terms: tuple[str, ...]


def theme_features(passage_vectors: np.ndarray, passage_texts: Sequence[str], tv: ThemeVectors) -> Features:
    """The features of one article for one theme (rows of ``passage_vectors`` L2-normalised,
    the first being title + lead)."""
    theme = tv.theme
    explained = score_article(passage_vectors, passage_texts, tv)
    sims = passage_vectors @ tv.prototypes.T
    pos = sims.max(axis=1)
    neg = (passage_vectors @ tv.negatives.T).max(axis=1) if len(tv.negatives) else np.zeros(len(pos))
    text = "\n".join(passage_texts)
    scalars = np.array([
        explained.score, explained.semantic, float(pos.max()), float(pos[0]), float(neg.max()),
        float(bool(find_terms(text, theme.must_have))) if theme.must_have else 1.0,
        float(bool(find_terms(text, theme.must_also_have))) if theme.must_also_have else 1.0,
        float(bool(find_terms(text, theme.must_not))),
        min(len(find_terms(text, theme.key_terms)), 3) / 3,
        float(bool(_CURRENCY.search(text))), float(bool(_PERCENT.search(text))), float(bool(_PER_TOKEN.search(text))),
        float(not reads_as_english(text)),
    ], dtype=np.float32)
    vector = np.concatenate([scalars, passage_vectors[0], passage_vectors[explained.best]]).astype(np.float32)
    return Features(vector, explained.score, explained.best, explained.nearest, explained.terms)


def definition_key(theme: Theme) -> str:
    """What a shipped model was trained for: the theme's definition without its threshold (a
    threshold edit keeps the model; a new description or new examples do not)."""
    d = json.loads(theme.to_json())
    d.pop("threshold", None)
    d.pop("title", None)  # a name for people: never changes what the model scores
    return hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ThemeModel:
    """Standardised logistic regression, then Platt scaling: p = σ(a · (w·z + b) + c)."""

    theme: str
    definition: str  # definition_key of the theme it was trained for ("" for a user's feedback model)
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    platt: tuple[float, float] = (1.0, 0.0)
    trained_on: str = ""  # in words: which labels, how many

    def probability(self, features: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(features) - self.mean) / self.scale
        logit = np.clip(self.platt[0] * (z @ self.weights + self.bias) + self.platt[1], -50, 50)
        return 1.0 / (1.0 + np.exp(-logit))

    def to_json(self) -> dict:
        return {"theme": self.theme, "definition": self.definition, "feature_version": FEATURE_VERSION,
                "mean": _floats(self.mean), "scale": _floats(self.scale), "weights": _floats(self.weights),
                "bias": round(float(self.bias), 6), "platt": [round(float(x), 6) for x in self.platt],
                "trained_on": self.trained_on}

    @classmethod
    def from_json(cls, d: dict) -> "ThemeModel":
        return cls(theme=d["theme"], definition=d["definition"], mean=np.array(d["mean"], dtype=np.float32),
                   scale=np.array(d["scale"], dtype=np.float32), weights=np.array(d["weights"], dtype=np.float32),
                   bias=float(d["bias"]), platt=tuple(d["platt"]), trained_on=d.get("trained_on", ""))


def _floats(a: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in np.asarray(a).ravel()]


def fit(theme: str, X: np.ndarray, y: np.ndarray, *, c: float = 0.05, definition: str = "",
        trained_on: str = "", calibrate_folds: int = 5, seed: int = 7) -> ThemeModel:
    """Fit a theme model on feature rows ``X`` and labels ``y`` (True = on the theme).

    The regression is fitted on everything; the Platt scaling on out-of-fold scores, so the
    probabilities are not over-confident on the items the weights were fitted to."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
    Z = (X - mean) / scale

    def regression(Zt, yt):
        return LogisticRegression(C=c, max_iter=5000).fit(Zt, yt)

    model = regression(Z, y)
    logits = np.zeros(len(y))
    folds = _stratified_folds(y, calibrate_folds, seed)
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        if y[train].all() or not y[train].any():
            logits[test] = model.decision_function(Z[test])
            continue
        logits[test] = regression(Z[train], y[train]).decision_function(Z[test])
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logits.reshape(-1, 1), y)
    return ThemeModel(theme, definition, mean.astype(np.float32), scale.astype(np.float32),
                      model.coef_[0].astype(np.float32), float(model.intercept_[0]),
                      (float(platt.coef_[0][0]), float(platt.intercept_[0])), trained_on)


def _stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(y == cls))
        for i, j in enumerate(idx):
            folds[i % k].append(int(j))
    return [np.array(sorted(f)) for f in folds if f]


# -- the combination ------------------------------------------------------------------------

THRESHOLD = 0.45  # the default theme threshold: a probability, the same on every theme
SECOND_OPINION_MARGIN = 0.2  # an English article this near a threshold is also read by the second model
CANDIDATE = 0.15  # articles from this probability up are the ones a user sees and judges


def with_judgements(p: np.ndarray, scalars: np.ndarray, model: "ThemeModel | None") -> np.ndarray:
    """Probabilities after a model fitted on the user's judgements has had its say. Users judge
    what a theme shows them, so such a model knows the candidates, not the rest: it is averaged in
    where the probability is at least CANDIDATE, and the rest keep theirs."""
    if model is None:
        return p
    return np.where(p >= CANDIDATE, (p + model.probability(scalars)) / 2, p)


@dataclass(frozen=True)
class ThemeModels:
    """A theme's learned scorers: on the scalars alone (the most robust to new outlets and
    years), on the scalars and the MiniLM vectors, and on the scalars and the second model's
    vector of the title and lead (multilingual: the one that reads Chinese)."""

    scalars: ThemeModel
    minilm: ThemeModel
    second: ThemeModel | None = None

    def first_opinion(self, features: np.ndarray) -> np.ndarray:
        """Without the second model: the mean of the scalar and MiniLM models, the MiniLM model
        reading either the title + lead or, as if it were the lead, the best passage, whichever
        says more: a story deep in a round-up is not lost to its off-theme opening (measured
        neutral on the labelled items, which hold few round-ups)."""
        f = np.atleast_2d(features)
        n = len(SCALARS)
        return (self.scalars.probability(f[:, :n]) + self._minilm(f)) / 2

    def _minilm(self, f: np.ndarray) -> np.ndarray:
        n = len(SCALARS)
        deep = f.copy()
        deep[:, n:n + DIMENSIONS] = f[:, n + DIMENSIONS:]
        return np.maximum(self.minilm.probability(f), self.minilm.probability(deep))

    def needs_second_opinion(self, features: np.ndarray, first: np.ndarray, threshold: float) -> np.ndarray:
        """Where the second model would change the decision: text the English model cannot read,
        and English text whose first opinion is near the threshold."""
        if self.second is None:
            return np.zeros(len(first), dtype=bool)
        not_english = np.atleast_2d(features)[:, SCALARS.index("not_english")] > 0.5
        return not_english | (np.abs(first - threshold) < SECOND_OPINION_MARGIN)

    def probability(self, features: np.ndarray, second_vectors: np.ndarray | None, first: np.ndarray,
                    use_second: np.ndarray) -> np.ndarray:
        """The final probability: the first opinion, or, where ``use_second``, the mean with the
        second model (for text the English model cannot read, only the scalar and second models)."""
        f = np.atleast_2d(features)
        if second_vectors is None or not use_second.any():
            return first
        p_scal = self.scalars.probability(f[:, :len(SCALARS)])
        p_min = self._minilm(f)
        p_sec = self.second.probability(np.hstack([f[:, :len(SCALARS)], second_vectors]))
        not_english = f[:, SCALARS.index("not_english")] > 0.5
        both = np.where(not_english, (p_scal + p_sec) / 2, (p_scal + p_min + p_sec) / 3)
        return np.where(use_second, both, first)

    def to_json(self) -> dict:
        return {"scalars": self.scalars.to_json(), "minilm": self.minilm.to_json(),
                "second": self.second.to_json() if self.second else None}

    @classmethod
    def from_json(cls, d: dict) -> "ThemeModels":
        return cls(ThemeModel.from_json(d["scalars"]), ThemeModel.from_json(d["minilm"]),
                   ThemeModel.from_json(d["second"]) if d.get("second") else None)


def fit_theme(theme: Theme, features: np.ndarray, second_vectors: np.ndarray | None, y: np.ndarray,
              trained_on: str) -> ThemeModels:
    """The three scorers of a theme, fitted on labelled rows (``second_vectors`` may be None)."""
    key = definition_key(theme)
    n = len(SCALARS)
    scalars = fit(theme.name, features[:, :n], y, c=0.2, definition=key, trained_on=trained_on)
    minilm = fit(theme.name, features, y, c=0.05, definition=key, trained_on=trained_on)
    second = (fit(theme.name, np.hstack([features[:, :n], second_vectors]), y, c=0.05, definition=key,
                  trained_on=trained_on) if second_vectors is not None else None)
    return ThemeModels(scalars, minilm, second)


@dataclass(frozen=True)
class Prior:
    """The probability of a theme without a model, from its prototype score alone:
    p = σ(a · score + b), fitted on the default themes' labels (pooled)."""

    a: float = 12.0
    b: float = -5.5

    def probability(self, prototype_scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(prototype_scores) + self.b)))

    @classmethod
    def fit(cls, prototype_scores: np.ndarray, y: np.ndarray) -> "Prior":
        from sklearn.linear_model import LogisticRegression
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(prototype_scores).reshape(-1, 1), y)
        return cls(round(float(lr.coef_[0][0]), 6), round(float(lr.intercept_[0]), 6))


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, ThemeModels], Prior]:
    path = resources.files("aiwatch.relevance").joinpath("default_models.json")
    if not path.is_file():
        return {}, Prior()
    doc = json.loads(path.read_text("utf-8"))
    if doc.get("feature_version") != FEATURE_VERSION:
        return {}, Prior()
    return ({name: ThemeModels.from_json(d) for name, d in doc["themes"].items()},
            Prior(**doc["prior"]) if doc.get("prior") else Prior())


def shipped_models_for(theme: Theme) -> ThemeModels | None:
    """The shipped models of a default theme, when the theme is still defined as they were
    trained for (its threshold may differ)."""
    models = _shipped()[0].get(theme.name)
    return models if models is not None and models.scalars.definition == definition_key(theme) else None


def prior() -> Prior:
    return _shipped()[1]
