"""The score stage: every article not yet scored for a theme's current version gets a
probability of being on the theme, an explanation, and a flag.

For each theme and article, :func:`~aiwatch.relevance.model.theme_features` reads the prototype
scores (the explanation: best passage, nearest example, terms) and the vectors. A theme with
learned models (shipped for the default themes) turns them into a probability with the first
opinion, and asks the second model (:mod:`aiwatch.relevance.second`) where it can change the
decision; a theme without one maps its prototype score through the prior. A user's judgements
(``aiwatch feedback``) have the last word on the articles they judged and, once there are enough of
them, add a model fitted on them (:func:`~aiwatch.relevance.model.with_judgements`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np

from ..clock import utcnow
from ..config import Config
from ..records import Match, Passage
from ..store import Store, open_store
from ..text import text_hash
from .embed import embedder_for
from .model import SCALARS, ThemeModel, ThemeModels, fit, prior, shipped_models_for, theme_features, with_judgements
from .score import ThemeVectors, theme_texts
from .second import second_vectors
from .themes import Theme

log = logging.getLogger(__name__)

BATCH = 500
MIN_FEEDBACK = 10  # judgements of a theme (3 or more each way) before a model is fitted on them


@dataclass(frozen=True)
class ScoreResult:
    scored: int
    flagged: int
    second_opinions: int = 0  # articles the second model read


def theme_vectors(store: Store, embedder, themes: Sequence[Theme], now: datetime) -> list[ThemeVectors]:
    """The themes' prototype and negative vectors (embedded once, stored like passages)."""
    texts = sorted({t for th in themes for t in theme_texts(th)})
    hashes = {t: text_hash(t) for t in texts}
    have = store.embeddings_for(list(hashes.values()), embedder.model_id)
    missing = [t for t in texts if hashes[t] not in have]
    if missing:
        vecs = embedder.embed(missing)
        store.save_embeddings([hashes[t] for t in missing], vecs, embedder.model_id, now)
        have.update({hashes[t]: v for t, v in zip(missing, vecs)})
    return ThemeVectors.build_all(themes, {t: have[hashes[t]] for t in texts})


def feedback_model(store: Store, tv: ThemeVectors, model_id: str) -> ThemeModel | None:
    """A scalar model fitted on the user's judgements of a theme, once there are enough."""
    judged = {j.article_id: j.relevant for j in store.feedback(tv.theme.name)}
    y = np.array(list(judged.values()))
    if len(y) < MIN_FEEDBACK or y.sum() < 3 or (~y).sum() < 3:
        return None
    rows = []
    by_article = store.passages_for(list(judged))
    vecs = store.embeddings_for([p.text_hash for ps in by_article.values() for p in ps], model_id)
    keep = []
    for i, (aid, ok) in enumerate(judged.items()):
        ps = by_article.get(aid, [])
        if ps and all(p.text_hash in vecs for p in ps):
            rows.append(theme_features(np.stack([vecs[p.text_hash] for p in ps]), [p.text for p in ps], tv)
                        .vector[:len(SCALARS)])
            keep.append(i)
    if len(keep) < MIN_FEEDBACK:
        return None
    return fit(tv.theme.name, np.array(rows), y[keep], c=0.5, calibrate_folds=3,
               trained_on=f"{len(keep)} of your judgements")


def _probabilities(config: Config, store: Store, tv: ThemeVectors, models: ThemeModels | None,
                   from_feedback: ThemeModel | None, features: np.ndarray, prototype: np.ndarray,
                   leads: list[Passage], now: datetime) -> tuple[np.ndarray, int]:
    """Probabilities of a batch of articles for one theme; and how many the second model read."""
    threshold = tv.theme.threshold
    if models is None:
        p = prior().probability(prototype)
        asked = 0
    else:
        first = models.first_opinion(features)
        ask = models.needs_second_opinion(features, first, threshold)
        vectors = None
        if ask.any():
            texts = {leads[i].text_hash: leads[i].text for i in np.flatnonzero(ask)}
            got = second_vectors(store, texts, config.embed.threads or None, now)
            vectors = np.zeros((len(leads), got[next(iter(got))].shape[0]), dtype=np.float32)
            for i in np.flatnonzero(ask):
                vectors[i] = got[leads[i].text_hash]
        p = models.probability(features, vectors, first, ask)
        asked = int(ask.sum())
    return with_judgements(p, features[:, :len(SCALARS)], from_feedback), asked


def score_articles(config: Config, run_id: str, now: datetime | None = None,
                   only: Sequence[str] | None = None) -> ScoreResult:
    """Score every unscored article against each theme version (or the themes named in
    ``only``); flag those whose probability reaches the theme's threshold."""
    now = now or utcnow()
    scored = flagged = asked = 0
    with open_store(config) as store:
        store.sync_themes(config.themes, now)
        todo = {t.name: store.articles_to_score(t) for t in config.themes if not only or t.name in only}
        if not any(todo.values()):
            log.info("score: nothing new to score")
            return ScoreResult(0, 0)
        embedder = embedder_for(config)
        for tv in theme_vectors(store, embedder, config.themes, now):
            if tv.theme.name not in todo:
                continue
            ids = todo[tv.theme.name]
            judged = {j.article_id: j.relevant for j in store.feedback(tv.theme.name)}
            models = shipped_models_for(tv.theme)
            from_feedback = feedback_model(store, tv, embedder.model_id) if judged else None
            for start in range(0, len(ids), BATCH):
                by_article = store.passages_for(ids[start:start + BATCH])
                vecs = store.embeddings_for([p.text_hash for ps in by_article.values() for p in ps],
                                            embedder.model_id)
                # not fully embedded yet (e.g. after a crash): the next run scores it
                ready = {aid: ps for aid, ps in by_article.items() if all(p.text_hash in vecs for p in ps)}
                if not ready:
                    continue
                feats = [theme_features(np.stack([vecs[p.text_hash] for p in ps]), [p.text for p in ps], tv)
                         for ps in ready.values()]
                p, n_asked = _probabilities(config, store, tv, models, from_feedback,
                                            np.stack([f.vector for f in feats]),
                                            np.array([f.prototype_score for f in feats]),
                                            [ps[0] for ps in ready.values()], now)
                asked += n_asked
                matches = []
                for (aid, ps), f, prob in zip(ready.items(), feats, p):
                    is_flagged = judged.get(aid, bool(prob >= tv.theme.threshold))  # the user has the last word
                    best = ps[f.best]
                    matches.append(Match(article_id=aid, theme=tv.theme.name, theme_version=tv.theme.version,
                                         score=round(float(prob), 4), flagged=is_flagged, passage=best.text,
                                         passage_no=best.passage_no, nearest_example=f.nearest, terms=f.terms))
                    flagged += is_flagged
                store.save_scores(matches, run_id, now)
                scored += len(matches)
    log.info("score: %d article-theme scores, %d flagged; the second model read %d", scored, flagged, asked)
    return ScoreResult(scored, flagged, asked)
