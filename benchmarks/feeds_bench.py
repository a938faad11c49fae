"""Ingest a folder of real-world feed files through aiwatch and count what comes out.

    python benchmarks/feeds_bench.py [FOLDER]     # default: ../shared/data/feeds

FOLDER/feeds.tsv lists the files (tab-separated; columns include file, format, expected_valid
and lenient_entries, the number of entries a tolerant parser finds). A folder without one
(feed files copied from other readers' test suites, say) is read whole, every file under it,
and each file's expected entries are counted here with a tolerant counter of our own: the
item and entry elements, in any namespace, that a recover-mode lxml parse finds and that are
not inside another one (an RSS module's ``content:item`` is part of an item), or the item
objects of a JSON Feed. Every file is served over HTTP on 127.0.0.1, then:

1. each file is fetched with aiwatch's HTTP client and parsed with ``aiwatch.ingest.parse.parse_feed``
   on its own, so that an exception escaping aiwatch is attributed to its file ("crashed");
2. all files are ingested together by the real feed stage, ``aiwatch.pipeline.fetch_feeds``,
   with article fetching off (no page is fetched, no model is loaded), into a temporary DuckDB
   file. Its outcome (ok / failed with a reason) and entry count are what is reported.

One line per file: its status, entries found / expected, and the entries aiwatch dropped and
why, as the feed's health row says it ("2 dropped (nothing to read (no title, link or text))");
a file that came out short of the expected count with no drop to explain it is marked
UNEXPLAINED. Then the totals: the entries dropped by kind, and last

    feeds=N ok=N failed_with_reason=N crashed=N entries_found=N entries_expected=N

where entries_expected sums the expected entries over the files that have some, and
entries_found sums the entries aiwatch found in those same files. Targets: crashed=0,
entries_found >= entries_expected, and no UNEXPLAINED file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from lxml import etree

from aiwatch.config import FeedSpec, load_config
from aiwatch.errors import AiwatchError, FeedError, FetchError
from aiwatch.http import HttpClient
from aiwatch.ingest.parse import FEED_ACCEPT, parse_feed
from aiwatch.ingest.stage import fetch_feeds
from aiwatch.localserver import LocalServer
from aiwatch.pipeline import start_run
from aiwatch.records import DroppedEntries, describe_drops

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "feeds"
CONTENT_TYPES = {".json": "application/json", ".xml": "application/xml", ".rss": "application/xml",
                 ".atom": "application/xml", ".rdf": "application/xml"}


@dataclass
class Result:
    file: str
    expected: int
    status: str = "?"  # as the feed stage says (ok, not_modified, failed, ...), or crashed
    entries: int = 0
    reason: str = ""
    seconds: float = 0.0
    dropped: tuple[DroppedEntries, ...] = ()  # as aiwatch reports them for the feed's health


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower() if isinstance(tag, str) else ""


def tolerant_count(data: bytes) -> int:
    """Entries a tolerant reader sees in a feed file (see the module doc); 0 if it sees none."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return 0
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        try:
            doc = json.loads(data)
        except ValueError:
            return 0
        items = doc.get("items") if isinstance(doc, dict) else None
        return sum(isinstance(i, dict) for i in items) if isinstance(items, list) else 0
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError):
        return 0
    if root is None:
        return 0

    def count(node) -> int:
        return sum(1 if _local(c.tag) in ("item", "entry") else count(c) for c in node)

    return 1 if _local(root.tag) in ("item", "entry") else count(root)


def drop_kind(reason: str) -> str:
    """The kind of a drop reason, for the totals ("unreadable entry: TypeError: ..." -> "unreadable entry")."""
    return reason.split(":", 1)[0]


def list_folder(folder: Path) -> list[dict]:
    """Rows like feeds.tsv's for a folder without one: every file, expected entries counted here."""
    skip = {".sh", ".py", ".md", ".txt", ".tsv"}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in skip
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [{"file": p.relative_to(folder).as_posix(), "lenient_entries": tolerant_count(p.read_bytes())}
            for p in files]


def serve(files: dict[str, Path]) -> LocalServer:
    """Serve ``files`` (URL path -> file) on 127.0.0.1 (aiwatch's own local server)."""

    def site(raw_path: str) -> tuple[bytes, str] | None:
        path = files.get(unquote(urlsplit(raw_path).path))
        if path is None:
            return None
        return path.read_bytes(), CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")

    return LocalServer(site=site).start()


def parse_each(results: dict[str, Result], urls: dict[str, str], config) -> None:
    """Fetch and parse every file on its own, to attribute an escaping exception to its file."""
    with HttpClient.from_config(config) as client:
        for file, url in urls.items():
            r = results[file]
            start = time.perf_counter()
            try:
                fetched = client.fetch(url, accept=FEED_ACCEPT)
                parsed_at = time.perf_counter()
                feed = parse_feed(fetched, max_entries=config.fetch.max_feed_entries)
                r.status, r.entries, r.reason = "ok", len(feed.entries), feed.warning or ""
                r.dropped = feed.dropped
                r.seconds = time.perf_counter() - parsed_at
            except (FeedError, FetchError) as exc:
                r.status, r.reason = "failed", exc.reason
                r.seconds = time.perf_counter() - start
            except Exception as exc:  # the thing this benchmark exists to find
                r.status, r.reason = "crashed", f"{type(exc).__name__}: {exc}"
                r.seconds = time.perf_counter() - start
                traceback.print_exc(file=sys.stderr)


def ingest(results: dict[str, Result], urls: dict[str, str], config) -> str | None:
    """Run the real feed stage over all files; returns why it could not run, or None."""
    try:
        run_id = start_run(config)
        outcome = fetch_feeds(config, run_id)
    except AiwatchError as exc:
        return f"the feed stage failed: {exc}"
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return f"the feed stage raised {type(exc).__name__}: {exc}"
    by_url = {o.feed_url: o for o in outcome.outcomes}
    for file, url in urls.items():
        r, o = results[file], by_url.get(url)
        if o is None or r.status == "crashed":
            continue
        r.status, r.entries, r.dropped = o.status, len(o.entries), o.dropped
        r.reason = o.error if o.status == "failed" else (o.warning or "")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER),
                    help="folder holding feeds.tsv and the files it lists, or any folder of feed files "
                         "(default: %(default)s)")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    listing = folder / "feeds.tsv"
    if not folder.is_dir():
        print(f"feeds_bench: {folder} is not a folder (give the folder of feed files as the argument; "
              "benchmarks/README.md says where to get them)",
              file=sys.stderr)
        return 2
    if listing.is_file():
        rows = list(csv.DictReader(listing.open(encoding="utf-8"), delimiter="\t"))
    else:
        rows = list_folder(folder)
        print(f"no feeds.tsv in {folder}: {len(rows)} files, expected entries counted by the tolerant counter")
    files = {"/" + quote(row["file"]): folder / row["file"] for row in rows}
    results = {row["file"]: Result(row["file"], int(row.get("lenient_entries") or 0)) for row in rows}

    server = serve(files)
    base = server.base_url
    urls = {row["file"]: base + "/" + quote(row["file"]) for row in rows}
    try:
        with tempfile.TemporaryDirectory(prefix="aiwatch-feeds-bench-") as tmp:
            settings = {"storage.database": str(Path(tmp) / "bench.duckdb"), "fetch.articles": False,
                        "fetch.allow_private_addresses": True, "digest.dir": tmp,
                        "fetch.host_delay": 0.0}  # every file is on one host: no politeness gap
            config = load_config(None).replace(**settings).with_feeds(
                tuple(FeedSpec(url, file) for file, url in urls.items()))
            started = time.perf_counter()
            parse_each(results, urls, config)
            parse_seconds = sum(r.seconds for r in results.values())
            stage_started = time.perf_counter()
            problem = ingest(results, urls, config)
            stage_seconds = time.perf_counter() - stage_started
    finally:
        server.stop()

    width = max(len(f) for f in results)
    for r in results.values():
        dropped = sum(d.count for d in r.dropped)
        mark = ("  UNEXPLAINED" if r.entries + dropped < r.expected else "  SHORT") if r.entries < r.expected else ""
        line = f"{r.file:<{width}}  {r.status:<12} {r.entries:>4} / {r.expected:<4}{mark}"
        if r.dropped:
            line += f"  [{describe_drops(r.dropped)}]"
        if r.reason:
            line += f"  {r.reason[:160]}"
        print(line)
    if problem:
        print(f"note: {problem}; the figures above come from parsing each file on its own")
    scored = [r for r in results.values() if r.expected > 0]
    kinds: Counter[str] = Counter()
    for r in results.values():
        for d in r.dropped:
            kinds[drop_kind(d.reason)] += d.count
    unexplained = [r.file for r in scored if r.entries + sum(d.count for d in r.dropped) < r.expected]
    print(f"dropped: {sum(kinds.values())} entries in {sum(bool(r.dropped) for r in results.values())} feeds"
          + "".join(f"; {n} {kind}" for kind, n in kinds.most_common())
          + f"; unexplained short feeds: {len(unexplained)}")
    slowest = max(results.values(), key=lambda r: r.seconds)
    print(f"time: parse_feed {parse_seconds:.2f}s over {len(results)} files (slowest {slowest.file} "
          f"{slowest.seconds:.2f}s); feed stage {stage_seconds:.2f}s; total {time.perf_counter() - started:.2f}s")
    print(f"feeds={len(results)} ok={sum(r.status in ('ok', 'not_modified') for r in results.values())} "
          f"failed_with_reason={sum(r.status == 'failed' and bool(r.reason) for r in results.values())} "
          f"crashed={sum(r.status == 'crashed' for r in results.values())} "
          f"entries_found={sum(r.entries for r in scored)} entries_expected={sum(r.expected for r in scored)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
