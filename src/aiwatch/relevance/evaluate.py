"""Theme evaluation, training and calibration on labelled items.

A labels folder holds ``labels.jsonl`` (``id`` or ``url``, then a 0/1/2 grade per theme) and the
items, ``items.jsonl`` (``id``, ``title``, ``text``, optional ``published``, ``url``, ``feed``,
``source``, ``lang``), or a pointer to them (see :func:`load_labels`). Grade 2 is a positive, 0 a
negative; grade 1 is left out of training and of precision and recall.

:class:`ItemScorer` embeds the items once (MiniLM passages, and the second model's title + lead,
both cached on disk by text hash) and computes each theme's features, so that any system can be
scored on any split without embedding again. The systems:

- ``aiwatch``: the learned scorer (:mod:`aiwatch.relevance.model`), fitted on the training part;
- ``prototype``: the prototype score alone, through a prior fitted on the training part (what a
  theme without a shipped model gets);
- ``keywords``: a search-alert rule from the theme's terms (any must_have, no must_not);
- ``description``: cosine of the best passage to the theme description, its threshold chosen
  on the training part.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import Config
from ..errors import AiwatchError
from ..text import passages, text_hash
from ..urls import site_of
from .model import Prior, ThemeModels, fit_theme, prior, shipped_models_for, theme_features
from .score import ThemeVectors, reads_as_english, score_article, theme_texts
from .second import MODEL_ID as SECOND_MODEL_ID, embed_leads
from .themes import Theme, find_terms

log = logging.getLogger(__name__)

SYSTEMS = ("aiwatch", "prototype", "keywords", "description")


@dataclass(frozen=True)
class LabelledItem:
    item_id: str
    title: str
    text: str
    feed: str
    grades: dict[str, int]
    published: str = ""  # ISO 8601 as given ("" when unknown)
    source: str = ""  # the collection the item came from (for the source split)
    language: str = ""
    train_only: bool = False  # written to train on (our own words): in every training part, never tested


def _read_jsonl(path: Path, target: dict, with_url: bool = False) -> None:
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
        if with_url and row.get("url"):
            target.setdefault(row["url"], row)


def load_labels(folder: Path, items: Path | None = None) -> list[LabelledItem]:
    """Read a labels folder: ``labels.jsonl`` and the items it grades, from ``items`` when given,
    else the folder's ``items.jsonl``, else the file named in its ``items.path`` (a path
    relative to the folder: labels kept in a repository whose items are not). Raises
    AiwatchError naming the file and line of a bad record, or saying where the items are."""
    folder = Path(folder)
    labels_path = folder / "labels.jsonl"
    if not labels_path.is_file():
        raise AiwatchError(f"{folder}: no labels.jsonl (a labels folder holds labels.jsonl and items.jsonl)")
    if items is None:
        items = folder / "items.jsonl"
        pointer = folder / "items.path"
        if not items.is_file() and pointer.is_file():
            items = (folder / pointer.read_text("utf-8").strip()).resolve()
    if not Path(items).is_file():
        raise AiwatchError(f"{folder}: the items are not here ({items} is missing); see the folder's README for "
                           "where to get them, or pass --items PATH")
    by_key: dict[str, dict] = {}
    labels: dict[str, dict] = {}
    _read_jsonl(Path(items), by_key, with_url=True)
    _read_jsonl(labels_path, labels)
    out = []
    for key, lab in labels.items():
        item = by_key.get(key) or by_key.get(lab.get("url") or "")
        if item is None:
            raise AiwatchError(f"{labels_path}: label for {key!r} has no item in {items}")
        grades = {k: int(v) for k, v in lab.items() if k not in ("id", "url") and isinstance(v, (int, float))}
        feed = item.get("feed") or site_of(item.get("url") or "")
        out.append(LabelledItem(key, item.get("title", ""), item.get("text", ""), feed, grades,
                                str(item.get("published") or ""), str(item.get("source") or folder.name),
                                str(item.get("lang") or "")))
    return out


# -- metrics -----------------------------------------------------------------------------------

def prf(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


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


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float, float, int]]:
    """(bin low, mean predicted, observed rate, count) per probability bin: a calibrated model has
    mean predicted ≈ observed rate in every bin."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            out.append((lo, float(p[inside].mean()), float(y[inside].mean()), int(inside.sum())))
    return out


# -- the items, embedded once ----------------------------------------------------------------------

class VectorCache:
    """Vectors by (model id, text hash), kept in one .npz per model under ``folder`` (or in memory)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._data: dict[str, dict[str, np.ndarray]] = {}

    def _path(self, model: str) -> Path | None:
        return self.folder / f"eval-{model.replace('/', '_')}.npz" if self.folder else None

    def get(self, model: str, texts: Sequence[str], embed) -> np.ndarray:
        known = self._data.get(model)
        if known is None:
            path = self._path(model)
            known = {}
            if path is not None and path.is_file():
                z = np.load(path)
                known = dict(zip(z["keys"], z["vectors"]))
            self._data[model] = known
        hashes = [text_hash(t) for t in texts]
        missing = sorted({h: t for h, t in zip(hashes, texts) if h not in known}.items())
        if missing:
            known.update(zip([h for h, _ in missing], embed([t for _, t in missing])))
            path = self._path(model)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        return np.stack([known[h] for h in hashes]) if hashes else np.zeros((0, 384), dtype=np.float32)


class ItemScorer:
    """Labelled items embedded once, with each theme's features; scores them under any system."""

    def __init__(self, items: Sequence[LabelledItem], embedder, config: Config, cache_dir: Path | None = None,
                 second_opinion: bool = True):
        self.items = list(items)
        self.second_opinion = second_opinion  # False: the learned scorer without the second model (faster)
        self.config = config
        self.themes = config.themes
        self.embedder = embedder
        self.cache = VectorCache(cache_dir)
        self.passages = [passages(it.title, it.text, max_words=config.embed.chunk_words,
                                  max_passages=config.embed.max_chunks) or [it.title or " "] for it in self.items]
        flat = [p for ps in self.passages for p in ps]
        vecs = self.cache.get(embedder.model_id, flat, embedder.embed)
        self.vectors, i = [], 0
        for ps in self.passages:
            self.vectors.append(vecs[i:i + len(ps)])
            i += len(ps)
        theme_vecs = dict(zip(*self._theme_vectors()))
        self.tvs = {tv.theme.name: tv for tv in ThemeVectors.build_all(self.themes, theme_vecs)}
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._second: np.ndarray | None = None

    def _theme_vectors(self) -> tuple[list[str], np.ndarray]:
        texts = sorted({t for th in self.themes for t in theme_texts(th)})
        return texts, self.cache.get(self.embedder.model_id, texts, self.embedder.embed)

    def features(self, theme: str) -> tuple[np.ndarray, np.ndarray]:
        """(feature rows, prototype scores) of every item for ``theme``."""
        if theme not in self._features:
            tv = self.tvs[theme]
            fs = [theme_features(v, ps, tv) for v, ps in zip(self.vectors, self.passages)]
            self._features[theme] = (np.stack([f.vector for f in fs]), np.array([f.prototype_score for f in fs]))
        return self._features[theme]

    def second_vectors(self) -> np.ndarray:
        """The second model's vector of every item's title + lead (embedded once, cached)."""
        if self._second is None:
            threads = self.config.embed.threads or None
            self._second = self.cache.get(SECOND_MODEL_ID, [ps[0] for ps in self.passages],
                                          lambda texts: embed_leads(texts, threads))
        return self._second

    def labels(self, theme: str) -> np.ndarray:
        """Each item's grade for ``theme`` (-1 when ungraded)."""
        return np.array([it.grades.get(theme, -1) for it in self.items])

    # -- systems ------------------------------------------------------------------------------

    def fit(self, theme: Theme, train: np.ndarray, with_second: bool = True) -> ThemeModels | None:
        grades = self.labels(theme.name)[train]
        keep = train[(grades == 0) | (grades == 2)]
        y = self.labels(theme.name)[keep] == 2
        if y.sum() < 2 or (~y).sum() < 2:
            return None
        feats, _ = self.features(theme.name)
        second = self.second_vectors()[keep] if with_second and self.second_opinion else None
        return fit_theme(theme, feats[keep], second, y, f"{len(keep)} labelled items")

    def learned(self, theme: Theme, models: ThemeModels | None, idx: np.ndarray) -> np.ndarray:
        """Probabilities by ``models`` (the cascade `aiwatch run` uses); the prior without models."""
        feats, proto = self.features(theme.name)
        if models is None:
            return prior().probability(proto[idx])
        first = models.first_opinion(feats[idx])
        if not self.second_opinion:
            models = ThemeModels(models.scalars, models.minilm)
        ask = models.needs_second_opinion(feats[idx], first, theme.threshold)
        second = self.second_vectors()[idx] if ask.any() else None
        return models.probability(feats[idx], second, first, ask)

    def scores(self, theme: Theme, system: str, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of the ``test`` items under ``system``, fitted (where it learns) on ``train``;
        a score reaching :meth:`threshold` means flagged."""
        feats, proto = self.features(theme.name)
        if system == "aiwatch":
            return self.learned(theme, self.fit(theme, train), test)
        if system == "prototype":  # the prior, fitted (like the shipped one) on the training part only
            grades = self.labels(theme.name)[train]
            keep = train[(grades == 0) | (grades == 2)]
            return Prior.fit(proto[keep], self.labels(theme.name)[keep] == 2).probability(proto[test])
        if system == "keywords":
            out = []
            for i in test:
                text = "\n".join(self.passages[i])
                hit = bool(find_terms(text, theme.must_have)) if theme.must_have else True
                out.append(1.0 if hit and not find_terms(text, theme.must_not) else 0.0)
            return np.array(out)
        if system == "description":
            tv = ThemeVectors.build(Theme(theme.name, theme.description, theme.threshold),
                                    {theme.description: self.tvs[theme.name].prototypes[0]})
            return np.array([score_article(self.vectors[i], self.passages[i], tv).score for i in test])
        raise ValueError(system)

    def threshold(self, theme: Theme, system: str, train: np.ndarray) -> float:
        if system in ("aiwatch", "prototype"):
            return theme.threshold
        if system == "keywords":
            return 0.5
        grades = self.labels(theme.name)[train]
        keep = train[(grades == 0) | (grades == 2)]
        return best_threshold(self.scores(theme, system, keep, keep), self.labels(theme.name)[keep] == 2)

    def shipped(self, theme: Theme, idx: np.ndarray) -> np.ndarray:
        """Probabilities as `aiwatch run` gives them with the models shipped for the theme."""
        return self.learned(theme, shipped_models_for(theme), idx)

    def reads_english(self) -> np.ndarray:
        return np.array([reads_as_english("\n".join(ps)) for ps in self.passages])
