"""What the pages show, built from the store's records: stories as cards, probabilities in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from ..records import ReviewMatch, StoryMember
from ..relevance.themes import Theme
from ..report.digest import excerpt
from ..urls import safe_link

# (lowest probability, words): read top down; calibrated, so 0.5 is even odds on every theme
LIKELIHOOD = ((0.9, "very likely"), (0.7, "likely"), (0.5, "more likely than not"), (0.3, "possible"),
              (0.1, "unlikely"), (0.0, "very unlikely"))


def likelihood(p: float) -> str:
    """A probability in words, with the number: "very likely (0.93)"."""
    words = next(w for low, w in LIKELIHOOD if p >= low)
    return f"{words} ({p:.2f})"


def when(d: datetime | None) -> str:
    return f"{d:%Y-%m-%d}" if d else "date unknown"


def ago(d: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in a few words ("3 h ago")."""
    if d is None:
        return "never"
    seconds = ((now or datetime.now(timezone.utc)) - d).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


@dataclass(frozen=True)
class StoryCard:
    """One story under one theme: its best article explains it, its other articles are listed."""

    story_id: str
    theme: str
    lead: ReviewMatch
    articles: tuple[ReviewMatch, ...]  # every scored article of the story shown for this theme, lead first
    also: tuple[tuple[str, str], ...]  # (outlet, safe link or "") of the other outlets carrying it
    newest: datetime | None

    @property
    def anchor(self) -> str:
        return f"s-{self.theme}-{self.story_id}"

    @property
    def link(self) -> str:
        return safe_link(self.lead.url) or ""

    @property
    def passage(self) -> str:
        return excerpt(self.lead.passage or "", self.lead.title or "", 420)

    @property
    def likelihood(self) -> str:
        return likelihood(self.lead.score)

    @property
    def judgement(self) -> bool | None:
        """The user's verdict on the story: that of its articles, when they were judged alike."""
        verdicts = {a.judgement for a in self.articles}
        return verdicts.pop() if len(verdicts) == 1 else None

    @property
    def outlet(self) -> str:
        return self.lead.outlet or "unknown outlet"


@dataclass(frozen=True)
class ThemeCards:
    theme: Theme
    stories: tuple[StoryCard, ...]

    @property
    def flagged(self) -> int:
        return sum(1 for s in self.stories if s.judgement is not False)


def story_cards(themes: Sequence[Theme], matches: Sequence[ReviewMatch], story_of: dict[str, str],
                members: Sequence[StoryMember]) -> list[ThemeCards]:
    """The matches grouped by theme (in the config's order) and story, newest story first."""
    by_story: dict[str, list[StoryMember]] = {}
    for m in members:
        by_story.setdefault(m.story_id, []).append(m)
    out = []
    for theme in themes:
        grouped: dict[str, list[ReviewMatch]] = {}
        for m in matches:
            if m.theme == theme.name:
                grouped.setdefault(story_of.get(m.article_id, m.article_id), []).append(m)
        cards = []
        for sid, arts in grouped.items():
            arts.sort(key=lambda a: (a.judgement is False, -a.score, a.article_id))
            lead = arts[0]
            also: dict[str, str] = {}  # other outlets only: a re-post by the lead's outlet is no news
            for member in by_story.get(sid, ()):
                if member.outlet and member.outlet != (lead.outlet or "") and member.outlet not in also:
                    also[member.outlet] = safe_link(member.url) or ""
            dates = [a.published_at or a.fetched_at for a in arts]
            cards.append(StoryCard(story_id=sid, theme=theme.name, lead=lead, articles=tuple(arts),
                                   also=tuple(also.items()), newest=max(dates) if dates else None))
        cards.sort(key=lambda c: (c.newest or datetime.min.replace(tzinfo=timezone.utc), c.lead.score), reverse=True)
        out.append(ThemeCards(theme=theme, stories=tuple(cards)))
    return out


def feed_badges(row: dict, now: datetime, stale_days: int) -> list[tuple[str, str]]:
    """A feed's health as (kind, words) badges: failing, backing off, stale, dropping, ok."""
    status = row.get("last_status") or "never fetched"
    out = []
    if status == "never fetched":
        out.append(("never", "never fetched"))
    elif status == "failed":
        n = row.get("consecutive_failures") or 0
        out.append(("failing", f"failing ({n} in a row)"))
    else:
        out.append(("ok", "ok" if status == "ok" else "unchanged" if status == "not_modified" else status))
    next_try = row.get("next_fetch_at")
    if next_try is not None and next_try > now:
        out.append(("backoff", f"backing off until {next_try:%Y-%m-%d %H:%M} UTC"))
    newest = row.get("last_new_at")
    if status != "never fetched" and newest is not None and (now - newest).days >= stale_days:
        out.append(("stale", f"stale: nothing new since {newest:%Y-%m-%d}"))
    if row.get("entries_dropped"):
        out.append(("dropping", f"{row['entries_dropped']} entries dropped"))
    return out
