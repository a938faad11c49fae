"""Theme scoring: how close an article's passages come to each theme, and why.

A theme is represented by prototype vectors: its description and positive examples. Its
negatives are its own negative examples (near misses a user does not want) plus the other
themes' prototypes, so that themes compete: an article about a national AI plan sits closer
to the policy theme than to the chip theme and is pushed down on the latter. For each passage,

    pos = max cosine to a prototype,   neg = max cosine to a negative,
    passage score = pos - NEG_WEIGHT * max(0, neg - pos)

The article's score is its best passage's, clipped to [0, 1]. A lexical check follows: when a
theme lists ``must_have`` terms and the article contains none of them, or contains one of its
``must_not`` terms, the score is multiplied by TERM_PENALTY (a search-engine API price change
that never mentions AI is not an LLM pricing story, however close its wording). The best
passage, the nearest prototype and the matched terms are the explanation. The combination was chosen on ../shared/data/relevance-dev
with feed-grouped folds (benchmarks/eval_themes.py): feed-grouped macro F1 0.79 with own
negatives only, 0.89 with rival themes as negatives and NEG_WEIGHT = 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .themes import Theme, find_terms

NEG_WEIGHT = 2.0
TERM_PENALTY = 0.5


@dataclass(frozen=True)
class ThemeVectors:
    theme: Theme
    prototypes: np.ndarray  # (P, d): description first, then positive examples
    prototype_texts: tuple[str, ...]
    negatives: np.ndarray  # (N, d), N may be 0

    @classmethod
    def build(cls, theme: Theme, vectors: dict[str, np.ndarray],
              rivals: Sequence[Theme] = ()) -> "ThemeVectors":
        """``vectors`` maps each theme text to its embedding; ``rivals`` are the other themes."""
        protos = (theme.description, *theme.positive_examples)
        dim = len(next(iter(vectors.values())))
        neg_texts = [*theme.negative_examples]
        for other in rivals:
            if other.name != theme.name:
                neg_texts += [other.description, *other.positive_examples]
        neg = [vectors[t] for t in neg_texts if t not in protos]
        return cls(theme=theme, prototypes=np.stack([vectors[t] for t in protos]),
                   prototype_texts=protos,
                   negatives=np.stack(neg) if neg else np.zeros((0, dim), dtype=np.float32))

    @classmethod
    def build_all(cls, themes: Sequence[Theme], vectors: dict[str, np.ndarray]) -> list["ThemeVectors"]:
        return [cls.build(t, vectors, themes) for t in themes]


def theme_texts(theme: Theme) -> list[str]:
    return [theme.description, *theme.positive_examples, *theme.negative_examples]


@dataclass(frozen=True)
class PassageScore:
    score: float
    best: int  # index of the best passage
    nearest: str  # the prototype text closest to the best passage
    terms: tuple[str, ...] = ()  # must_have terms found in the article
    semantic: float = 0.0  # the score before the lexical check


def score_article(passage_vectors: np.ndarray, passage_texts: Sequence[str], tv: ThemeVectors) -> PassageScore:
    """Score one article: semantic score of its passages, then the theme's term check."""
    sem = score_passages(passage_vectors, tv)
    theme = tv.theme
    if not (theme.must_have or theme.must_not):
        return sem
    text = "\n".join(passage_texts)
    found = tuple(find_terms(text, theme.must_have))
    penalised = (theme.must_have and not found) or bool(find_terms(text, theme.must_not))
    score = sem.score * TERM_PENALTY if penalised else sem.score
    return PassageScore(score, sem.best, sem.nearest, found, sem.score)


def score_passages(passage_vectors: np.ndarray, tv: ThemeVectors) -> PassageScore:
    """Semantic score of one article from its passage vectors (rows L2-normalised)."""
    sims = passage_vectors @ tv.prototypes.T  # (k, P)
    pos = sims.max(axis=1)
    if len(tv.negatives):
        neg = (passage_vectors @ tv.negatives.T).max(axis=1)
        per_passage = pos - NEG_WEIGHT * np.maximum(0.0, neg - pos)
    else:
        per_passage = pos
    best = int(np.argmax(per_passage))
    nearest = tv.prototype_texts[int(np.argmax(sims[best]))]
    score = float(np.clip(per_passage[best], 0.0, 1.0))
    return PassageScore(score, best, nearest, (), score)
