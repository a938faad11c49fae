"""Honest publication dates: reconcile the feed's date, the page's date and first-seen time.

The rule, in order:

1. A date is *plausible* when it is after 1995-01-01 and no more than a day after aiwatch
   first saw the article (clocks and time zones drift a little; news does not come from the
   future). Implausible dates are dropped and flagged (``future_feed_date``,
   ``future_page_date``, ``implausible_feed_date``, ``implausible_page_date``).
2. ``published_at`` is the feed's date when plausible: feeds state when they published the
   item, while a page carries many dates (updates, related stories, copyright years).
3. Otherwise the page's date (declared in its meta tags, else htmldate's) when plausible.
4. Otherwise the first-seen time, flagged ``no_trusted_date``.

When feed and page dates are both plausible but more than two days apart, the feed's date is
kept and ``dates_disagree`` is flagged.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EARLIEST = datetime(1995, 1, 1, tzinfo=timezone.utc)
SLACK = timedelta(days=1)
DISAGREE = timedelta(days=2)


def _aware(d: datetime | None) -> datetime | None:
    if d is None:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def choose_published(feed_date: datetime | None, page_date: datetime | None,
                     first_seen: datetime) -> tuple[datetime, str, tuple[str, ...]]:
    """(published_at, source, flags) by the rule above; source is feed, page or first_seen."""
    flags: list[str] = []
    kept: dict[str, datetime] = {}
    for source, date in (("feed", _aware(feed_date)), ("page", _aware(page_date))):
        if date is None:
            continue
        if date > first_seen + SLACK:
            flags.append(f"future_{source}_date")
        elif date < EARLIEST:
            flags.append(f"implausible_{source}_date")
        else:
            kept[source] = date
    if "feed" in kept and "page" in kept and abs(kept["feed"] - kept["page"]) > DISAGREE:
        flags.append("dates_disagree")
    for source in ("feed", "page"):
        if source in kept:
            return kept[source], source, tuple(flags)
    return first_seen, "first_seen", tuple(flags + ["no_trusted_date"])

