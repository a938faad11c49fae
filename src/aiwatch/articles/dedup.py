"""Near-duplicate detection: MinHash over word shingles, with LSH bands for lookup.

Wire copies and syndicated reprints differ by a byline, a dateline or an extra sentence, so an
exact hash misses them. Two texts whose 5-word-shingle Jaccard similarity is 0.8 or more are
treated as copies. Signatures are 128 minimum hashes; LSH with 16 bands of 8 rows finds a pair
at Jaccard 0.8 with probability about 0.95 and one at 0.5 with about 0.06. Each candidate is
then checked on the estimated Jaccard, so the cost per article is a few index lookups, never a
comparison with every stored article.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np

from ..records import ArticleToStore, BuiltArticle, Passage, SeenEntry, Signature, StoredSignature
from .build import article_passages

NUM_PERM = 128
BANDS, ROWS = 16, 8
SHINGLE = 5
THRESHOLD = 0.8
_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20261127)
_A = _rng.integers(1, (1 << 61) - 1, NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, (1 << 61) - 1, NUM_PERM, dtype=np.uint64)
_WORD = re.compile(r"\w+")


def shingles(text: str, k: int = SHINGLE) -> set[str]:
    words = _WORD.findall(text.casefold())
    if len(words) < k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def signature(text: str) -> np.ndarray | None:
    """The MinHash signature of ``text`` (None for text too short to compare)."""
    sh = shingles(text)
    if len(sh) < 3:
        return None
    h = np.array([int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
                  for s in sh], dtype=np.uint64) & _MERSENNE
    # (a*h + b) mod p, computed in uint64 with wrap-around; uniform enough for MinHash
    mixed = (h[None, :] * _A[:, None] + _B[:, None]) & _MERSENNE
    return mixed.min(axis=1).astype(np.int64)


def band_keys(sig: np.ndarray) -> list[str]:
    """One bucket key per LSH band."""
    return [f"{b}:" + hashlib.blake2b(sig[b * ROWS:(b + 1) * ROWS].tobytes(), digest_size=8).hexdigest()
            for b in range(BANDS)]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.mean(np.asarray(a) == np.asarray(b)))


# -- deciding, for a batch of built articles, which are copies ------------------------------

def near_copy(sig: np.ndarray, keys: list[str], candidates: dict[str, list[StoredSignature]]) -> str | None:
    """The earliest stored original sharing an LSH bucket whose signature is near enough."""
    seen: dict[str, StoredSignature] = {}
    for key in keys:
        for c in candidates.get(key, ()):
            seen.setdefault(c.article_id, c)
    for c in sorted(seen.values(), key=lambda c: (c.when, c.article_id)):  # oldest first
        if similarity(sig, c.signature) >= THRESHOLD:
            return c.article_id
    return None


@dataclass(frozen=True)
class DedupResult:
    to_store: tuple[ArticleToStore, ...]  # originals and copies (copies carry duplicate_of)
    passages: tuple[Passage, ...]
    signatures: tuple[Signature, ...]  # of the originals
    already_stored: tuple[SeenEntry, ...]  # entries that reached an article stored under another URL
    duplicates: int


def dedup_batch(store, built: Sequence[BuiltArticle], now: datetime, *, chunk_words: int,
                max_chunks: int, entry_hashes: dict[tuple[str, str], str]) -> DedupResult:
    """Decide for each built article of a batch: another URL of a stored article (its entry is
    only marked seen), an exact or near copy of an earlier article, or an original."""
    known = store.known_urls([c for b in built for c in b.aliases])
    firsts = store.first_copy_of([b.article.content_hash for b in built if b.article.content_hash])
    sigs = {b.article.article_id: (signature(b.article.text) if b.article.text else None) for b in built}
    keys = {aid: band_keys(sig) if sig is not None else [] for aid, sig in sigs.items()}
    candidates = store.minhash_candidates(sorted({k for ks in keys.values() for k in ks}))
    to_store, psg, new_sigs, seen = [], [], [], []
    duplicates = 0
    batch_sigs: list[tuple[str, np.ndarray]] = []
    # earliest copy first, so within a batch a reprint links to the original
    for b in sorted(built, key=lambda b: (b.article.published_at or now, b.article.url)):
        article = b.article
        other = next((known[al] for al in b.aliases if known.get(al) not in (None, article.article_id)), None)
        if other is not None:  # reached under another URL of an article we already have: same article
            seen.append(SeenEntry(article.feed_url, article.entry_id, other,
                                  entry_hashes.get((article.feed_url, article.entry_id))))
            continue
        dup_of = firsts.get(article.content_hash) if article.content_hash else None
        sig, article_keys = sigs[article.article_id], keys[article.article_id]
        if dup_of is None and sig is not None:  # not an exact copy: a near one?
            dup_of = near_copy(sig, article_keys, candidates) or next(
                (aid for aid, other_sig in batch_sigs if similarity(sig, other_sig) >= THRESHOLD), None)
        if dup_of == article.article_id:
            dup_of = None
        if dup_of is None:
            if article.content_hash:
                firsts[article.content_hash] = article.article_id
            if sig is not None:
                batch_sigs.append((article.article_id, sig))
                new_sigs.append(Signature(article.article_id, sig, tuple(article_keys)))
        else:
            duplicates += 1
        to_store.append(ArticleToStore(article, dup_of, b.aliases))
        psg += article_passages(article, chunk_words, max_chunks)
    return DedupResult(tuple(to_store), tuple(psg), tuple(new_sigs), tuple(seen), duplicates)
