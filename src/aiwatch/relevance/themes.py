"""Themes: what a user watches for, as versioned definitions."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError

THEME_KEYS = ("name", "title", "description", "threshold", "positive_examples", "negative_examples", "must_have",
              "must_also_have", "must_not", "key_terms")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SCORER_VERSION = 2  # 2: learned models and probabilities (aiwatch.relevance.model); 1: prototype scores


@dataclass(frozen=True)
class Theme:
    name: str
    description: str
    threshold: float
    positive_examples: tuple[str, ...] = ()
    negative_examples: tuple[str, ...] = ()
    must_have: tuple[str, ...] = ()  # at least one must appear, or the score is halved
    must_also_have: tuple[str, ...] = ()  # a second group: one of these must appear too
    must_not: tuple[str, ...] = ()  # any of these appearing halves the score
    key_terms: tuple[str, ...] = ()  # action words of the theme, in any language (lexical evidence)
    title: str = ""  # how digests and the web app name the theme; never part of its version

    @property
    def display_title(self) -> str:
        """The theme's title, else its name in words ("chip_sanctions" -> "Chip sanctions")."""
        return self.title or self.name.replace("_", " ").capitalize()

    @property
    def version(self) -> str:
        """Hash of the whole definition (threshold included) and of how aiwatch scores: any
        edit, or an upgrade that scores differently, is a new version, and stored articles are
        scored again (from their stored vectors)."""
        definition = {
            "scorer": SCORER_VERSION,
            "name": self.name,
            "description": self.description,
            "threshold": self.threshold,
            "positive_examples": list(self.positive_examples),
            "negative_examples": list(self.negative_examples),
            "must_have": list(self.must_have),
            "must_also_have": list(self.must_also_have),
            "must_not": list(self.must_not),
            "key_terms": list(self.key_terms),
        }
        blob = json.dumps(definition, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({
            "name": self.name, **({"title": self.title} if self.title else {}),
            "description": self.description, "threshold": self.threshold,
            "positive_examples": list(self.positive_examples),
            "negative_examples": list(self.negative_examples),
            "must_have": list(self.must_have), "must_also_have": list(self.must_also_have),
            "must_not": list(self.must_not), "key_terms": list(self.key_terms),
        }, ensure_ascii=False)


def _string_list(item: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ConfigError(f"{where}.{key}", "expected a list of non-empty strings")
    return tuple(x.strip() for x in value)


def theme_from_mapping(item: Mapping[str, Any], *, where: str = "themes") -> Theme:
    unknown = set(item) - set(THEME_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", f"unknown key (known: {', '.join(THEME_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name", f"expected a lowercase identifier like 'chip_sanctions', got {name!r}")
    description = item.get("description")
    if not isinstance(description, str) or len(description.strip()) < 10:
        raise ConfigError(f"{where}.description", "expected a sentence or more describing the theme")
    title = item.get("title", "")
    if not isinstance(title, str) or len(title) > 80 or (title and not title.strip()):
        raise ConfigError(f"{where}.title", f"expected a short text (at most 80 characters), got {title!r}")
    if "threshold" not in item:
        raise ConfigError(f"{where}.threshold", "missing (a score from 0 to 1 at which articles are flagged)")
    threshold = item["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"{where}.threshold", f"expected a number from 0 to 1, got {threshold!r}")
    return Theme(
        name=name,
        title=" ".join(title.split()),
        description=" ".join(description.split()),
        threshold=float(threshold),
        positive_examples=_string_list(item, "positive_examples", where),
        negative_examples=_string_list(item, "negative_examples", where),
        must_have=_string_list(item, "must_have", where),
        must_also_have=_string_list(item, "must_also_have", where),
        must_not=_string_list(item, "must_not", where),
        key_terms=_string_list(item, "key_terms", where),
    )


@lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern:
    # Latin-script terms match as whole words, case-insensitively; CJK terms as substrings.
    escaped = re.escape(term)
    if re.search(r"[\u3040-\u30ff\u3400-\u9fff]", term) or not re.search(r"\w", term):
        return re.compile(escaped)  # CJK words and symbols ("$", "€") match anywhere
    # Boundaries are Latin letters and digits only, so "AI" matches in "初のAI基本計画".
    return re.compile(rf"(?<![0-9A-Za-z\u00c0-\u024f]){escaped}(?![0-9A-Za-z\u00c0-\u024f])", re.IGNORECASE)


def find_terms(text: str, terms: tuple[str, ...]) -> list[str]:
    """The terms (as written in the theme) that occur in ``text``."""
    folded = text.lower()  # a plain substring test first: most terms are absent from most texts
    return [t for t in terms if t.lower() in folded and _term_pattern(t).search(text)]
