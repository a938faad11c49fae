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

import numpy as np

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
