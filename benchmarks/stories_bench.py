"""Story grouping against hand-made same-event labels: pairwise and BCubed precision, recall, F1.

    python benchmarks/stories_bench.py [--labels DIR] [--items FILE] [--reserved FILE]
                                       [--only-labelled] [--seed N] [--limit N]

The items (``--items``, default ../shared/data/relevance-pool/items.jsonl: 2023 RSS entries and
Feb 2025 articles in English and Chinese) go through aiwatch's own path into a fresh DuckDB
database: feed entries carrying the item's title and text, the articles stage with page fetching
off (so the text is the feed's, deduplicated as usual), the embed stage, and the stories stage
(:func:`aiwatch.relevance.stories.group_stories`), which places the articles oldest first. Every
item of the file is stored (the labelled ones among the rest, as in a real database) unless
``--only-labelled``; only the labelled ones are scored. Items whose URL, normalised URL or
lower-cased title has its sha1 in ``--reserved`` are dropped before anything reads them.

The labels (``--labels``, default labels/stories) give each labelled item an event; items of one
event report the same happening. The events are split in two halves by a seeded shuffle (dev and
test, balanced by group size and language): the window and threshold are chosen on dev (the best
mean of pairwise F1 and BCubed F1 there), and every system is reported on both halves, test being
the figure to quote. Near copies that the articles stage stores as ``duplicate_of`` an original
count as members of the original's story, as the digest shows them.

Systems, all placed by the same code with a story's first article as its only seed:

- ``default``: the shipped settings (MiniLM title + lead, ``stories.threshold``/``window_hours``);
- ``minilm``: MiniLM title + lead at the window and threshold chosen on dev;
- ``title-only``: MiniLM vectors of the title alone (placed by ``place_in_stories`` directly);
- ``e5`` (with ``--e5``): the multilingual second model's vectors of the same title + lead
  (placed by ``place_in_stories`` directly), window and threshold chosen on dev.

Pairs are split by language (en-en, zh-zh, en-zh; the pool's ``lang`` tag); BCubed is given over
all items and within each language. The last lines are

    test <system> pairwise P R F1 ... bcubed P R F1 ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path
from typing import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
LANGS = ("en", "zh")
PAIR_KINDS = ("all", "en-en", "zh-zh", "en-zh")

# -- metrics (pure: tested on a hand-computed example) --------------------------------------------


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def pair_kind(a: str, b: str) -> str:
    return f"{a}-{b}" if a == b else "en-zh"


def pairwise(gold: Mapping[str, str], pred: Mapping[str, str], lang: Mapping[str, str] | None = None
             ) -> dict[str, tuple[float, float, float, int, int]]:
    """Pairwise (P, R, F1, gold pairs, predicted pairs) over the items of ``gold``, overall and
    by the pair's languages: a pair is a true positive when both are in one event and one story."""
    counts = {k: [0, 0, 0] for k in PAIR_KINDS}  # tp, fp, fn
    for a, b in combinations(sorted(gold), 2):
        g, p = gold[a] == gold[b], pred[a] == pred[b]
        if not (g or p):
            continue
        kinds = ["all"] + ([pair_kind(lang[a], lang[b])] if lang else [])
        for k in kinds:
            counts[k][0 if g and p else 1 if p else 2] += 1
    return {k: (*_prf(*c), c[0] + c[2], c[0] + c[1]) for k, c in counts.items() if lang or k == "all"}


def bcubed(gold: Mapping[str, str], pred: Mapping[str, str]) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 over the items of ``gold`` (Amigó et al. 2009)."""
    if not gold:
        return 1.0, 1.0, 1.0
    by_gold: dict[str, set[str]] = defaultdict(set)
    by_pred: dict[str, set[str]] = defaultdict(set)
    for item, event in gold.items():
        by_gold[event].add(item)
        by_pred[pred[item]].add(item)
    p = r = 0.0
    for item in gold:
        g, s = by_gold[gold[item]], by_pred[pred[item]]
        both = len(g & s)
        p += both / len(s)
        r += both / len(g)
    p, r = p / len(gold), r / len(gold)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def scores(gold: Mapping[str, str], pred: Mapping[str, str], lang: Mapping[str, str]) -> dict[str, tuple]:
    """Pairwise by pair language, and BCubed over all items and within each language."""
    out: dict[str, tuple] = {f"pair {k}": v for k, v in pairwise(gold, pred, lang).items()}
    out["bcubed all"] = bcubed(gold, pred)
    for lg in LANGS:
        out[f"bcubed {lg}"] = bcubed({i: e for i, e in gold.items() if lang[i] == lg}, pred)
    return out


def split_events(gold: Mapping[str, str], lang: Mapping[str, str], seed: int) -> tuple[set[str], set[str]]:
    """Two halves of the events, by a seeded shuffle within strata (singleton or not, and the
    event's languages), so each half has its share of cross-language groups."""
    members: dict[str, list[str]] = defaultdict(list)
    for item, event in gold.items():
        members[event].append(item)
    strata: dict[tuple, list[str]] = defaultdict(list)
    for event, items in sorted(members.items()):
        strata[(len(items) > 1, tuple(sorted({lang[i] for i in items})))].append(event)
    rng = random.Random(seed)
    dev: set[str] = set()
    test: set[str] = set()
    flip = 0
    for key in sorted(strata):
        events = strata[key]
        rng.shuffle(events)
        for e in events:  # alternate, carrying the odd one over to the next stratum
            (dev if flip % 2 == 0 else test).add(e)
            flip += 1
    return dev, test


# -- items ----------------------------------------------------------------------------------------


def _sha1(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def reserved_keys(url: str, title: str) -> list[str]:
    """The hashes an item is reserved under: its URL; its URL reduced to lower-case scheme and host
    plus the path, dropping query and fragment (when a path remains); its title, stripped and in lower case."""
    keys = [_sha1(url)]
    try:
        parts = urlsplit(url.strip())
        if parts.path not in ("", "/"):
            keys.append(_sha1(urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))))
    except ValueError:
        pass
    keys.append(_sha1(title.strip().lower()))
    return keys


_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def plain(text: str) -> str:
    """The pool's Markdown bodies as a page extractor would leave them: link text without its
    URL, no images."""
    return _LINK.sub(r"\1", _IMAGE.sub("", text or ""))


def language(tag: str) -> str:
    return "zh" if (tag or "").lower().startswith("zh") else "en"


def published(item: dict) -> datetime | None:
    """The item's date as an aware datetime (the 2025 part's site runs on Asia/Shanghai time)."""
    raw = item.get("published")
    if not raw:
        return None
    when = datetime.fromisoformat(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return when.astimezone(timezone.utc)


def load(labels: Path, items_path: Path, reserved: Path | None, only_labelled: bool, limit: int | None
         ) -> tuple[list[dict], dict[str, str], dict[str, str], int]:
    """(items to store, gold event by labelled id, language by id, how many were reserved)."""
    gold = {}
    for line in (labels / "groups.jsonl").read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            gold[row["id"]] = row["event"]
    held = set()
    if reserved is not None and reserved.is_file():
        held = {h.strip() for h in reserved.read_text("utf-8").splitlines() if h.strip()}
    items, dropped = [], 0
    for line in items_path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if held and held.intersection(reserved_keys(row.get("url") or "", row.get("title") or "")):
            dropped += 1
            gold.pop(row["id"], None)
            continue
        if only_labelled and row["id"] not in gold:
            continue
        items.append(row)
    if limit:  # a slice: the first events in id order, whole
        events = sorted(set(gold.values()))[:limit]
        gold = {i: e for i, e in gold.items() if e in events}
        keep = set(gold)
        items = [r for r in items if r["id"] in keep]
    found = {r["id"] for r in items}
    missing = set(gold) - found
    if missing:
        raise SystemExit(f"{len(missing)} labelled ids are not in {items_path}, e.g. {sorted(missing)[:3]}")
    lang = {r["id"]: language(r.get("lang", "")) for r in items}
    return items, gold, lang, dropped


# -- aiwatch's own path ---------------------------------------------------------------------------


class Pipeline:
    """A fresh database holding the items as aiwatch stores them, grouped again per setting."""

    def __init__(self, items: Sequence[dict], database: Path):
        from aiwatch.articles.stage import fetch_articles
        from aiwatch.config import load_config
        from aiwatch.pipeline import start_run
        from aiwatch.records import FeedEntry
        from aiwatch.relevance.embedding import embed_passages
        from aiwatch.urls import url_key

        # page fetching off: the text is the item's own; one passage (title + lead) is all stories read
        self.config = load_config(None).replace(**{"storage.database": str(database),
                                                   "digest.dir": str(database.parent), "fetch.articles": False,
                                                   "embed.max_chunks": 1})
        entries = []
        for r in items:
            feed = r.get("feed") or "unknown"
            feed_url = feed if "://" in feed else f"https://{r.get('source', 'pool')}.example/{feed}"
            entries.append(FeedEntry(feed_url=feed_url, entry_id=r["id"], link=r.get("url") or None,
                                     title=(r.get("title") or "").strip() or "(untitled)",
                                     summary=plain(r.get("text") or ""), content="", published=published(r)))
        dates = [e.published for e in entries if e.published]
        self.now = max(dates) + timedelta(days=1) if dates else datetime.now(timezone.utc)
        self.article_of = {e.entry_id: url_key(e.canonical_url) for e in entries}
        t0 = time.perf_counter()
        reused = database.exists()  # --db: a database this benchmark made before, from the same items
        if not reused:
            run_id = start_run(self.config, self.now)
            fetch_articles(self.config, run_id, entries, self.now)
        t1 = time.perf_counter()
        embed_passages(self.config, self.now)
        self.seconds = {"store": t1 - t0, "embed": time.perf_counter() - t1}
        with self.store() as store:
            self.duplicate_of = dict(store.con.execute(
                "SELECT article_id, duplicate_of FROM core.articles WHERE duplicate_of IS NOT NULL").fetchall())
            self.stored = store.con.execute("SELECT count(*) FROM core.articles").fetchone()[0]
            self.leads = store.con.execute("""
                SELECT p.article_id, p.text_hash, p.text FROM core.passages p JOIN core.articles a USING (article_id)
                WHERE p.passage_no = 0 AND a.duplicate_of IS NULL""").fetchall()

    def store(self):
        from aiwatch.store import open_store
        return open_store(self.config)

    def group(self, threshold: float, window: float) -> dict[str, str]:
        """Story id by item id, grouped from scratch by the stories stage at these settings."""
        from aiwatch.relevance.stories import group_stories
        with self.store() as store:
            store.con.execute("DELETE FROM core.story_members")
        config = self.config.replace(**{"stories.threshold": threshold, "stories.window_hours": window})
        group_stories(config, self.now)
        with self.store() as store:
            story = dict(store.con.execute("SELECT article_id, story_id FROM core.story_members").fetchall())
        return self._by_item(story)

    def _by_item(self, story: Mapping[str, str]) -> dict[str, str]:
        out = {}
        for item, article in self.article_of.items():
            original = self.duplicate_of.get(article, article)
            out[item] = story.get(original, original)
        return out

    def candidates(self, vectors: Mapping[str, object]) -> list:
        """StoryCandidates of the stored originals with other vectors (oldest first), for
        variants that the stored passages do not carry."""
        from aiwatch.records import StoryCandidate
        with self.store() as store:
            rows = store.con.execute("""
                SELECT article_id, title, coalesce(published_at, fetched_at) AS t FROM core.articles
                WHERE duplicate_of IS NULL ORDER BY t, article_id""").fetchall()
        return [StoryCandidate(article_id=a, title=t, when=w, vector=vectors[a]) for a, t, w in rows]

    def place(self, todo: Sequence, threshold: float, window: float) -> dict[str, str]:
        from aiwatch.relevance.stories import place_in_stories
        placed = place_in_stories(todo, [], window * 3600.0, threshold)
        return self._by_item({p.article_id: p.story_id for p in placed})


# -- the run ----------------------------------------------------------------------------------------

THRESHOLDS = [round(0.4 + 0.02 * i, 2) for i in range(30)]  # 0.40 .. 0.98
WINDOWS = [24.0, 48.0, 72.0, 96.0, 144.0]


def objective(s: Mapping[str, tuple]) -> float:
    return (s["pair all"][2] + s["bcubed all"][2]) / 2


def line(half: str, name: str, s: Mapping[str, tuple]) -> str:
    pair = " ".join(f"{k}={s['pair ' + k][0]:.3f}/{s['pair ' + k][1]:.3f}/{s['pair ' + k][2]:.3f}(n={s['pair ' + k][3]})"
                    for k in PAIR_KINDS)
    bc = " ".join(f"{k}={s['bcubed ' + k][0]:.3f}/{s['bcubed ' + k][1]:.3f}/{s['bcubed ' + k][2]:.3f}"
                  for k in ("all",) + LANGS)
    return f"{half:4} {name:22} pairwise P/R/F1 {pair} | bcubed P/R/F1 {bc}"


def sweep(name: str, predict, dev: dict, test: dict, lang: dict,
          grid: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], dict, dict]:
    """The (threshold, window) with the best dev objective; its dev and test scores."""
    best = None
    for threshold, window in grid:
        pred = predict(threshold, window)
        s = scores(dev, pred, lang)
        if best is None or objective(s) > objective(best[1]) + 1e-9:
            best = ((threshold, window), s, pred)
    (threshold, window), s_dev, pred = best
    print(f"# {name}: chosen on dev threshold={threshold} window_hours={window:g} "
          f"(dev objective {objective(s_dev):.3f})", flush=True)
    return (threshold, window), s_dev, scores(test, pred, lang)


def run(argv: Sequence[str] | None = None) -> dict[str, tuple[dict, dict]]:
    """Every system's (dev scores, test scores), by a name carrying its settings."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=Path, default=ROOT / "labels" / "stories")
    ap.add_argument("--items", type=Path, default=SHARED / "relevance-pool" / "items.jsonl")
    ap.add_argument("--reserved", type=Path, default=SHARED / "relevance-reserved.sha1")
    ap.add_argument("--only-labelled", action="store_true", help="store only the labelled items")
    ap.add_argument("--db", type=Path, help="keep the database here, and reuse it when it exists "
                    "(made by an earlier run with the same item options)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--limit", type=int, help="only the first N events (a quick slice)")
    ap.add_argument("--e5", action="store_true", help="add the multilingual second model (slow: it read 2,994 "
                    "titles + leads in 46 min on a loaded 2-core machine, against 2.8 min for MiniLM)")
    ap.add_argument("--no-title", action="store_true", help="leave out the title-only system")
    ap.add_argument("--thresholds", help="comma-separated thresholds to try (default 0.40 .. 0.98 by 0.02)")
    ap.add_argument("--windows", help="comma-separated windows in hours to try (default 24,48,72,96,144)")
    args = ap.parse_args(argv)
    thresholds = [float(x) for x in args.thresholds.split(",")] if args.thresholds else THRESHOLDS
    windows = [float(x) for x in args.windows.split(",")] if args.windows else WINDOWS

    from aiwatch.config import load_config
    defaults = load_config(None).stories
    items, gold, lang, dropped = load(args.labels, args.items, args.reserved, args.only_labelled, args.limit)
    dev_events, test_events = split_events(gold, lang, args.seed)
    dev = {i: e for i, e in gold.items() if e in dev_events}
    test = {i: e for i, e in gold.items() if e in test_events}
    print(f"# {len(items)} items stored, {len(gold)} labelled ({dropped} reserved dropped); "
          f"dev {len(dev)} items / {len(dev_events)} events, test {len(test)} items / {len(test_events)} events "
          f"(seed {args.seed})", flush=True)
    with tempfile.TemporaryDirectory(prefix="stories-bench-") as tmp:
        pipe = Pipeline(items, args.db or Path(tmp) / "stories.duckdb")
        print(f"# stored {pipe.stored} articles ({len(pipe.duplicate_of)} near copies) in {pipe.seconds['store']:.1f} s; "
              f"MiniLM title + lead of {len(pipe.leads)} originals in {pipe.seconds['embed']:.1f} s", flush=True)
        grid = [(t, w) for w in windows for t in thresholds]
        results: dict[str, tuple] = {}
        t0 = time.perf_counter()
        pred = pipe.group(defaults.threshold, defaults.window_hours)
        grouping_s = time.perf_counter() - t0
        results[f"default t={defaults.threshold:g} w={defaults.window_hours:g}"] = (
            scores(dev, pred, lang), scores(test, pred, lang))
        print(f"# one stories stage over {len(pipe.leads)} articles: {grouping_s:.2f} s", flush=True)
        chosen, s_dev, s_test = sweep("minilm", pipe.group, dev, test, lang, grid)
        results[f"minilm t={chosen[0]:g} w={chosen[1]:g}"] = (s_dev, s_test)
        if not args.no_title:
            from aiwatch.relevance.embed import embedder_for
            with pipe.store() as store:
                titles = dict(store.con.execute(
                    "SELECT article_id, title FROM core.articles WHERE duplicate_of IS NULL").fetchall())
            ids = sorted(titles)
            vectors = embedder_for(pipe.config).embed([titles[a] for a in ids])
            todo = pipe.candidates(dict(zip(ids, vectors)))
            chosen_t, d, t = sweep("title-only", lambda th, w: pipe.place(todo, th, w), dev, test, lang, grid)
            results[f"title-only t={chosen_t[0]:g} w={chosen_t[1]:g}"] = (d, t)
        if args.e5:
            from aiwatch.relevance.second import second_vectors
            t0 = time.perf_counter()
            with pipe.store() as store:  # stored under the second model's id: a reused --db has them
                got = second_vectors(store, {h: text for _, h, text in pipe.leads}, None, pipe.now)
            e5_s = time.perf_counter() - t0
            print(f"# e5 title + lead of {len(pipe.leads)} originals in {e5_s:.1f} s "
                  f"(MiniLM: {pipe.seconds['embed']:.1f} s)", flush=True)
            todo = pipe.candidates({a: got[h] for a, h, _ in pipe.leads})
            pred = pipe.place(todo, defaults.threshold, defaults.window_hours)
            results[f"e5 t={defaults.threshold:g} w={defaults.window_hours:g}"] = (
                scores(dev, pred, lang), scores(test, pred, lang))
            chosen_e, d, t = sweep("e5", lambda th, w: pipe.place(todo, th, w), dev, test, lang, grid)
            results[f"e5 t={chosen_e[0]:g} w={chosen_e[1]:g}"] = (d, t)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    results = run(argv)
    for half, k in (("dev", 0), ("test", 1)):
        for name, pair in results.items():
            print(line(half, name, pair[k]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
