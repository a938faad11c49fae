"""Propose a theme from an example article: a draft the user edits, not a finished theme."""

from __future__ import annotations

import re
from collections import Counter

from ..text import normalize_space
from .themes import Theme

_STOP = frozenset("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my no nor not now
of off on once only or other our ours out over own same she should so some such than that the their them
then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your said says say new one two three year years week last first
also told according would could percent per cent mr ms its it's company companies people time""".split())


def key_terms(text: str, n: int = 10) -> list[str]:
    """The words and two-word phrases an article leans on most, stopwords left out."""
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9+\-]{2,}", text)]
    lower = [w.lower() for w in words]
    counts = Counter(w for w in lower if w not in _STOP)
    pairs = Counter(f"{a} {b}" for a, b in zip(lower, lower[1:]) if a not in _STOP and b not in _STOP)
    scored = [(c * 1.5, p) for p, c in pairs.items() if c >= 2] + [(float(c), w) for w, c in counts.items()]
    out: list[str] = []
    for _, term in sorted(scored, key=lambda x: (-x[0], x[1])):
        if any(term in t or t in term for t in out):
            continue
        out.append(term)
        if len(out) == n:
            break
    return out


def propose_theme(name: str, title: str, text: str, threshold: float = 0.45) -> Theme:
    """A draft theme from one example article: its gist as description, its key terms, and the
    article's lead as the first positive example."""
    text = normalize_space(text)
    sentences = re.split(r"(?<=[.!?])\s+", text)
    lead = " ".join(text.split()[:60])
    gist = sentences[0] if sentences and len(sentences[0]) < 300 else lead
    description = f"News like: {title.strip()}. {gist}".strip() if title else gist
    return Theme(name=name, description=" ".join(description.split()), threshold=threshold,
                 positive_examples=(lead,), key_terms=tuple(key_terms(f"{title}\n{text}")))
