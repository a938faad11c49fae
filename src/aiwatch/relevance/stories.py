"""Stories: copies of one event across outlets, grouped by similarity to each story's first article.

A new article joins the story whose first article it is most like, within ``stories.window_hours``
of it, or starts a story of its own. Articles are compared with a story's *first* article only,
never with its later members, so distinct events cannot chain into one story; and only with
stories of the same time window, so the cost grows with the articles of a few days, not with
the whole archive.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np

from ..config import Config
from ..records import Placement, StoryCandidate
from ..store import open_store
from .embed import model_id

log = logging.getLogger(__name__)

TITLE_WEIGHT = 0.25  # the headlines' word overlap adds at most this much to the cosine
_WORDS = re.compile(r"\w+")


def title_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two headlines' words."""
    x, y = set(_WORDS.findall(a.casefold())), set(_WORDS.findall(b.casefold()))
    return len(x & y) / len(x | y) if x and y else 0.0


def group_stories(config: Config, now: datetime | None = None) -> int:
    """Put each article not yet in a story into one; returns how many were placed."""
    window = timedelta(hours=config.stories.window_hours).total_seconds()
    model = model_id(config.embed.backend)
    with open_store(config) as store:
        todo = store.ungrouped_articles(model)
        if not todo:
            return 0
        seeds = store.story_seeds(todo[0].when - timedelta(seconds=window),
                                  todo[-1].when + timedelta(seconds=window), model)
        placed = place_in_stories(todo, seeds, window, config.stories.threshold)
        store.save_story_members(placed)
    joined = sum(1 for p in placed if p.article_id != p.story_id)
    log.info("stories: %d articles placed, %d joined an existing story", len(placed), joined)
    return len(placed)


def place_in_stories(todo: Sequence[StoryCandidate], seeds: Sequence[StoryCandidate], window: float,
                     threshold: float, block: int = 256) -> list[Placement]:
    """A placement for each article of ``todo`` (oldest first).

    Similarities to the seeds are computed a block of articles at a time as one matrix
    product; the headline overlap is computed only for seeds whose cosine could still reach
    the threshold with it. An article that joins no story becomes a seed for the articles
    after it, in the same block too.
    """
    dim = len(todo[0].vector)
    capacity = max(len(seeds) + len(todo), 1)
    vectors = np.zeros((capacity, dim), dtype=np.float32)
    times = np.zeros(capacity, dtype=np.float64)
    ids: list[str] = []
    titles: list[str] = []

    def add_seed(c: StoryCandidate) -> None:
        vectors[len(ids)] = c.vector
        times[len(ids)] = c.when.timestamp()
        ids.append(c.article_id)
        titles.append(c.title)

    for seed in seeds:
        add_seed(seed)
    placed = []
    for start in range(0, len(todo), block):
        part = todo[start:start + block]
        known = len(ids)
        sims = np.stack([c.vector for c in part]) @ vectors[:known].T  # (block, seeds known before it)
        for row, c in enumerate(part):
            cos = np.concatenate([sims[row], vectors[known:len(ids)] @ c.vector])  # + seeds from this block
            near = (np.abs(times[:len(ids)] - c.when.timestamp()) <= window) & (cos >= threshold - TITLE_WEIGHT)
            best, best_sim = None, threshold
            for j in np.flatnonzero(near):
                sim = float(cos[j]) + TITLE_WEIGHT * title_overlap(c.title, titles[j])
                if sim >= best_sim:
                    best, best_sim = ids[j], sim
            if best is None:
                add_seed(c)
                placed.append(Placement(c.article_id, c.article_id, 1.0))
            else:
                placed.append(Placement(c.article_id, best, round(best_sim, 4)))
    return placed
