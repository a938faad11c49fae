"""Embeddings: vectors keyed by passage text hash and model, and semantic search over them."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from ..errors import AiwatchError
from ..records import SearchHit


class VectorsMixin:
    def missing_embeddings(self, text_hashes: Sequence[str], model: str) -> list[str]:
        """Those of ``text_hashes`` with no vector by ``model`` yet."""
        if not text_hashes:
            return []
        rows = self.con.execute(
            "SELECT h FROM (SELECT unnest(?::VARCHAR[]) AS h) WHERE h NOT IN "
            "(SELECT text_hash FROM core.embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?::VARCHAR[])))",
            [list(text_hashes), model, list(text_hashes)]).fetchall()
        return [r[0] for r in rows]

    def texts_without_embedding(self, model: str) -> list[tuple[str, str]]:
        """(text_hash, text) of every passage of an original that has no vector by ``model``."""
        rows = self.con.execute("""
            SELECT DISTINCT p.text_hash, p.text FROM core.passages p
            JOIN core.articles a USING (article_id)
            WHERE a.duplicate_of IS NULL AND NOT EXISTS (
                SELECT 1 FROM core.embeddings e WHERE e.text_hash = p.text_hash AND e.model = ?)
            ORDER BY p.text_hash""", [model]).fetchall()
        return [(r[0], r[1]) for r in rows]

    def save_embeddings(self, hashes: Sequence[str], vectors: np.ndarray, model: str, now: datetime) -> None:
        """Insert vectors keyed by text hash; loads them as one flat array (no huge Python lists)."""
        if not len(hashes):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        # DuckDB scans these local numpy arrays by name (replacement scans); POSITIONAL JOIN
        # against range() keeps their order without building per-row Python lists.
        flat = vectors.ravel()  # noqa: F841
        keys = np.array(list(hashes), dtype=object)  # noqa: F841
        with self.transaction() as con:
            con.execute(f"""
                INSERT INTO core.embeddings (text_hash, model, vector, created_at)
                SELECT k.text_hash, ?, v.vec, ?
                FROM (SELECT pos // {dim} AS row_no, list(x ORDER BY pos)::FLOAT[{dim}] AS vec
                      FROM (SELECT range AS pos, flat.column0 AS x FROM range(?) POSITIONAL JOIN flat)
                      GROUP BY row_no) v
                JOIN (SELECT range AS row_no, keys.column0 AS text_hash FROM range(?) POSITIONAL JOIN keys) k
                  USING (row_no)
                ON CONFLICT DO NOTHING""", [model, now, n * dim, n])

    def embeddings_for(self, text_hashes: Sequence[str], model: str) -> dict[str, np.ndarray]:
        if not text_hashes:
            return {}
        res = self.con.execute(
            "SELECT text_hash, vector FROM core.embeddings WHERE model = ? AND text_hash IN "
            "(SELECT unnest(?::VARCHAR[]))", [model, list(set(text_hashes))]).fetchnumpy()
        return {h: np.asarray(v, dtype=np.float32) for h, v in zip(res["text_hash"], res["vector"])}

    def embedding_models(self) -> dict[str, int]:
        """How many stored vectors each model id made."""
        return dict(self.con.execute(
            "SELECT model, count(*) FROM core.embeddings GROUP BY model ORDER BY model").fetchall())

    @staticmethod
    def _family(model: str) -> str:
        return model.rsplit("/", 1)[0]  # "all-MiniLM-L6-v2/onnx-int8" -> "all-MiniLM-L6-v2"

    def check_model(self, model: str) -> None:
        """Refuse to work with ``model`` on a database whose vectors another backend of the same
        model made: vectors of two backends are close but not comparable, so they are never mixed.
        (Another model's vectors, such as the second opinion's, are kept apart by their id.)"""
        others = {m: n for m, n in self.embedding_models().items()
                  if m != model and self._family(m) == self._family(model)}
        if others:
            made = ", ".join(f"{n} by {m}" for m, n in others.items())
            backend = model.rsplit("/", 1)[-1]
            raise AiwatchError(
                f"{self.path}: its vectors were made by another embedding backend ({made}); "
                f"embed.backend = {backend!r} would mix {model} vectors with them. Set embed.backend "
                f"back, or run `aiwatch reembed` to embed the stored articles again with {backend}")

    def drop_other_models(self, model: str) -> int:
        """Delete the vectors other backends of ``model`` made (after a re-embed); returns how many."""
        with self.transaction() as con:
            return con.execute("DELETE FROM core.embeddings WHERE model <> ? AND model LIKE ?",
                               [model, self._family(model) + "/%"]).fetchone()[0]

    def search(self, vector: np.ndarray, model: str, k: int = 10, theme: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               outlet: str | None = None) -> list[SearchHit]:
        """Articles whose best passage is most similar to ``vector`` (cosine, in DuckDB).

        The nearest passages are found first by one scan of the vectors (a top-N, no join),
        and only those are joined to their articles and filtered. When the filters leave fewer
        than ``k`` articles, the pool grows tenfold, up to every vector. The result is exact:
        an article with no passage in the pool is no nearer than the pool's farthest passage.
        """
        where, params = ["a.duplicate_of IS NULL"], {"q": [float(x) for x in vector], "model": model, "k": k}
        if theme:
            where.append("a.article_id IN (SELECT article_id FROM matches WHERE theme = $theme)")
            params["theme"] = theme
        if since:
            where.append("coalesce(a.published_at, a.fetched_at) >= $since")
            params["since"] = since
        if until:
            where.append("coalesce(a.published_at, a.fetched_at) < $until")
            params["until"] = until
        if outlet:
            where.append("a.outlet = $outlet")
            params["outlet"] = outlet
        dim = len(vector)
        total = self.con.execute("SELECT count(*) FROM core.embeddings WHERE model = ?", [model]).fetchone()[0]
        pool = max(50 * k, 1000)
        while True:
            params["pool"] = pool
            rows = self.con.execute(f"""
                WITH near AS (
                    SELECT text_hash, array_cosine_similarity(vector, $q::FLOAT[{dim}]) AS sim
                    FROM core.embeddings WHERE model = $model
                    ORDER BY sim DESC LIMIT $pool),
                sims AS (
                    SELECT p.article_id, p.text, n.sim FROM near n JOIN core.passages p USING (text_hash))
                SELECT round(max(s.sim)::DOUBLE, 4) AS score, a.title,
                       CAST(coalesce(a.published_at, a.fetched_at) AS DATE) AS date, a.outlet, a.url,
                       arg_max(s.text, s.sim) AS passage, a.article_id
                FROM sims s JOIN core.articles a USING (article_id)
                WHERE {" AND ".join(where)}
                GROUP BY a.article_id, a.title, a.published_at, a.fetched_at, a.outlet, a.url
                ORDER BY score DESC, a.url LIMIT $k""", params).fetchall()
            if len(rows) >= k or pool >= total:
                return [SearchHit(score=r[0], title=r[1], date=r[2], outlet=r[3], url=r[4], passage=r[5],
                                  article_id=r[6]) for r in rows]
            pool *= 10
