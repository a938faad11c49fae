"""What an edited theme would flag among the stored articles, before it is saved.

Nothing is fetched and no article is embedded again: the features come from the stored passage
vectors, and only the theme's own texts are embedded (those already stored are read back). When
only the threshold changed, the stored probabilities are exactly what the theme gives, so they
are used as they are. Otherwise the theme has no shipped model (those are tied to its
definition, see :func:`~aiwatch.relevance.model.definition_key`): its prototype score goes through
the prior, and a model fitted on the user's judgements joins in as in a run. The second opinion
is not asked in a preview (it reads text with another model; the run will).

Precision and recall are measured against the user's own judgements of the theme, on the model's
probability (not on the judgement-overridden flag, which would always agree with itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..store import Store
from ..text import text_hash
from .model import SCALARS, definition_key, prior, shipped_models_for, theme_features, with_judgements
from .score import ThemeVectors, theme_texts
from .scoring import feedback_model
from .themes import Theme

PREVIEW_ARTICLES = 3000  # the most recently fetched originals a preview scores (kept interactive)
CURVE = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class PreviewItem:
    article_id: str
    probability: float
    flagged_now: bool  # flagged by the theme as it is saved (stored scores, judgements applied)
    judgement: bool | None = None


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    flagged: int  # articles flagged at this threshold (judgements have the last word, as in a run)
    precision: float | None  # against the user's judgements; None without a judged article flagged
    recall: float | None  # None without an article judged relevant


@dataclass(frozen=True)
class ThemePreview:
    theme: Theme
    method: str  # how the probabilities were had, in words
    items: tuple[PreviewItem, ...]  # most probable first
    seconds: float = 0.0

    def at(self, threshold: float) -> CurvePoint:
        p = np.array([i.probability for i in self.items])
        judged = np.array([i.judgement is not None for i in self.items], dtype=bool)
        relevant = np.array([bool(i.judgement) for i in self.items], dtype=bool)
        model_says = p >= threshold
        flagged = int(np.where(judged, relevant, model_says).sum())
        tp = int((model_says & judged & relevant).sum())
        said = int((model_says & judged).sum())
        return CurvePoint(threshold=threshold, flagged=flagged,
                          precision=tp / said if said else None,
                          recall=tp / int(relevant.sum()) if relevant.any() else None)

    def changes(self, threshold: float) -> tuple[int, int]:
        """(newly flagged, no longer flagged) at ``threshold``, against the theme as saved."""
        new = gone = 0
        for i in self.items:
            flag = i.judgement if i.judgement is not None else i.probability >= threshold
            new += flag and not i.flagged_now
            gone += i.flagged_now and not flag
        return new, gone

    @property
    def curve(self) -> tuple[CurvePoint, ...]:
        return tuple(self.at(t) for t in CURVE)

    @property
    def judged(self) -> int:
        return sum(i.judgement is not None for i in self.items)


def preview_theme(store: Store, embedder, themes: Sequence[Theme], edited: Theme,
                  limit: int = PREVIEW_ARTICLES) -> ThemePreview:
    """Score the stored articles (the ``limit`` most recent, and every judged one) for ``edited``,
    a new definition of one of ``themes`` (or a new theme), from stored vectors only."""
    start = time.perf_counter()
    current = next((t for t in themes if t.name == edited.name), None)
    judged = {j.article_id: j.relevant for j in store.feedback(edited.name)}
    ids = list(dict.fromkeys(store.recent_originals(limit) + sorted(judged)))
    now: dict[str, tuple[float, bool]] = {}
    if current is not None:
        now = store.theme_scores(current.name, current.version)
    if current is not None and definition_key(current) == definition_key(edited) and now:
        probs = {aid: now[aid][0] for aid in ids if aid in now}
        method = "the stored probabilities: only the threshold changed"
    else:
        probs = _probabilities(store, embedder, themes, edited, ids)
        method = ("the shipped models (first opinion)" if shipped_models_for(edited) else
                  "the prototype score through the prior, as a theme without a shipped model is scored") + \
                 " from the stored passage vectors"
    items = sorted((PreviewItem(article_id=aid, probability=round(p, 4),
                                flagged_now=now[aid][1] if aid in now else False, judgement=judged.get(aid))
                    for aid, p in probs.items()), key=lambda i: (-i.probability, i.article_id))
    return ThemePreview(theme=edited, method=method, items=tuple(items), seconds=time.perf_counter() - start)


def _theme_vectors(store: Store, embedder, themes: Sequence[Theme], edited: Theme) -> ThemeVectors:
    rivals = [edited] + [t for t in themes if t.name != edited.name]
    texts = sorted({t for th in rivals for t in theme_texts(th)})
    hashes = {t: text_hash(t) for t in texts}
    have = store.embeddings_for(list(hashes.values()), embedder.model_id)
    missing = [t for t in texts if hashes[t] not in have]
    if missing:  # an edited example: embedded here, kept in memory only (the run stores it)
        have.update({hashes[t]: v for t, v in zip(missing, embedder.embed(missing))})
    return ThemeVectors.build(edited, {t: have[hashes[t]] for t in texts}, rivals)


def _probabilities(store: Store, embedder, themes: Sequence[Theme], edited: Theme,
                   ids: Sequence[str]) -> dict[str, float]:
    tv = _theme_vectors(store, embedder, themes, edited)
    by_article = store.passages_for(list(ids))
    vecs = store.embeddings_for([p.text_hash for ps in by_article.values() for p in ps], embedder.model_id)
    ready = {aid: ps for aid, ps in by_article.items() if ps and all(p.text_hash in vecs for p in ps)}
    if not ready:
        return {}
    feats = [theme_features(np.stack([vecs[p.text_hash] for p in ps]), [p.text for p in ps], tv)
             for ps in ready.values()]
    features = np.stack([f.vector for f in feats])
    models = shipped_models_for(edited)
    if models is not None:
        p = models.first_opinion(features)
    else:
        p = prior().probability(np.array([f.prototype_score for f in feats]))
    p = with_judgements(p, features[:, :len(SCALARS)], feedback_model(store, tv, embedder.model_id))
    return {aid: float(x) for aid, x in zip(ready, p)}
