"""The articles stage in shards: fetch, extract and embed away from the database; one writer merges.

DuckDB lets one process write a file, so with ``storage.shards`` set the work that needs no
database (fetching pages, extracting their text, embedding the passages) runs wherever the
flow's task runner puts it (in-process, a local Dask cluster, or a ``dask.distributed``
scheduler that other machines' workers joined), and only the writer (the run holding the lock)
opens the file:

1. The writer cuts the new entries into shards (a host's entries stay together where they fit,
   so ``fetch.per_host`` still bounds what one site sees) and writes each shard's *plan* (its
   entries and their outlets, JSON) into the shared folder.
2. :func:`build_shard` runs on a worker: plan in, one Parquet file of built articles and one of
   passage vectors out. Pure: it reads the plan, the network and the model, never the database.
3. :func:`merge_shard`, on the writer, stores a finished shard with the same idempotent upserts
   as the in-process stage (:func:`aiwatch.articles.stage.store_built`), then deletes the
   shard's files. An entry already stored with the same content is skipped, so a shard merged
   twice adds nothing.

A run that dies between these steps leaves its plans behind; the next run merges the shards
that were finished and plans the unfinished ones again (their entries were never marked seen).
A worker killed mid-shard loses nothing: Dask runs the shard again on another worker, and
files are written under a temporary name and renamed, so a half-written shard is never read.

The folder may be local, on NFS, or (with fsspec and its driver installed) an object store URL
such as ``s3://bucket/aiwatch``; each database gets a subfolder of its own.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from contextvars import copy_context
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from ..clock import StageClock, utcnow
from ..config import Config
from ..errors import AiwatchError, ConfigError
from ..http import HttpClient
from ..ingest.robots import RobotsPolicy
from ..records import Article, BuiltArticle, Failure, FeedEntry, StoredPage
from ..relevance.embed import embedder_for, model_id
from ..relevance.embedding import EmbedBehind
from ..store import Store
from .build import article_passages, build_article
from .stage import interleave_hosts, store_built

log = logging.getLogger(__name__)

FORMAT = 1  # of the plan and shard files; a file of another format is refused, never guessed at
PLAN, ARTICLES, VECTORS = ".plan.json", ".articles.parquet", ".vectors.parquet"
MERGE_BATCH = 50  # articles stored per transaction while merging, as the in-process stage does


# -- the shared folder: a local path or an fsspec URL --------------------------

def _remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _fs(path: str):
    try:
        import fsspec
    except ImportError:
        raise ConfigError("storage.shards", f"{path}: an object-store folder needs fsspec and its driver "
                                            f"(pip install fsspec s3fs, gcsfs or adlfs)") from None
    return fsspec.core.url_to_fs(path)[0]


def shard_folder(config: Config) -> str:
    """The database's own folder of shards under ``storage.shards``."""
    base = config.storage.shards
    if not base:
        raise ConfigError("storage.shards", "is empty: set a folder every worker can write to shard the work")
    if base.startswith("file://"):
        base = base[len("file://"):]
    name = config.database.stem
    if _remote(base):
        return base.rstrip("/") + "/" + name
    return str(config.resolve(base) / name)


def _write(path: str, data: bytes) -> None:
    """``data`` to ``path``, never seen half-written: a local file is written under a temporary
    name and renamed; an object store makes an object visible only once its upload completes."""
    if _remote(path):
        with _fs(path).open(path, "wb") as f:
            f.write(data)
        return
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: str) -> bytes:
    if _remote(path):
        with _fs(path).open(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def _exists(path: str) -> bool:
    return _fs(path).exists(path) if _remote(path) else os.path.exists(path)


def _remove(path: str) -> None:
    if _remote(path):
        fs = _fs(path)
        if fs.exists(path):
            fs.rm(path)
    else:
        Path(path).unlink(missing_ok=True)


def _plans(folder: str) -> list[str]:
    if _remote(folder):
        fs = _fs(folder)
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)] if fs.exists(folder) else []
    else:
        names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(f"{folder}/{n}" for n in names if n.endswith(PLAN))


def _stem(plan: str) -> str:
    return plan[: -len(PLAN)]


def _drop(plan: str) -> None:
    """A shard's files gone, the plan last: while it exists, the shard is not done."""
    for suffix in (ARTICLES, VECTORS, PLAN):
        _remove(_stem(plan) + suffix)


# -- planning (on the writer) --------------------------------------------------

def _entry_json(e: FeedEntry) -> dict[str, Any]:
    d = asdict(e)
    d["published"] = e.published.isoformat() if e.published else None
    return d


def _entry_from(d: dict[str, Any]) -> FeedEntry:
    return FeedEntry(**{**d, "published": datetime.fromisoformat(d["published"]) if d["published"] else None})


def plan_shards(entries: Sequence[FeedEntry], size: int) -> list[list[FeedEntry]]:
    """The entries cut into shards of at most ``size``. A host's entries stay in one shard when
    they fit (per-host politeness holds across workers); a bigger host is split in turn; small
    hosts share shards. The order inside a shard is the feeds' order."""
    by_host: dict[str, list[FeedEntry]] = {}
    for e in entries:
        by_host.setdefault(urlsplit(e.link or "").hostname or "", []).append(e)
    shards: list[list[FeedEntry]] = []
    open_shard: list[FeedEntry] = []
    for host_entries in sorted(by_host.values(), key=len, reverse=True):
        if len(host_entries) >= size:
            shards += [host_entries[i:i + size] for i in range(0, len(host_entries), size)]
            continue
        if len(open_shard) + len(host_entries) > size:
            shards.append(open_shard)
            open_shard = []
        open_shard += host_entries
    if open_shard:
        shards.append(open_shard)
    return shards


def write_plan(folder: str, run_id: str, number: int, entries: Sequence[FeedEntry], outlets: Sequence[str]) -> str:
    path = f"{folder}/{run_id}-{number:04d}{PLAN}"
    body = {"format": FORMAT, "run_id": run_id, "shard": number,
            "entries": [_entry_json(e) for e in entries], "outlets": list(outlets)}
    _write(path, json.dumps(body, ensure_ascii=False).encode("utf-8"))
    return path


def read_plan(path: str) -> tuple[list[FeedEntry], list[str]]:
    try:
        body = json.loads(_read(path))
        if body.get("format") != FORMAT:
            raise AiwatchError(f"{path}: shard plan of format {body.get('format')!r}, this aiwatch reads {FORMAT}")
        return [_entry_from(d) for d in body["entries"]], list(body["outlets"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AiwatchError(f"{path}: unreadable shard plan ({type(exc).__name__}: {exc})") from None


# -- building a shard (on a worker) --------------------------------------------

def _article_json(a: Article) -> dict[str, Any]:
    d = asdict(a)
    d.pop("page")
    for key in ("published_at", "fetched_at"):
        d[key] = d[key].isoformat() if d[key] else None
    return d


def _article_from(d: dict[str, Any], page: StoredPage | None) -> Article:
    d = dict(d)
    for key in ("published_at", "fetched_at"):
        d[key] = datetime.fromisoformat(d[key]) if d[key] else None
    d["date_flags"], d["extraction_notes"] = tuple(d["date_flags"]), tuple(d["extraction_notes"])
    return Article(**d, page=page)


def _parquet(columns: dict[str, Any], meta: dict[str, Any] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if meta:
        table = table.replace_schema_metadata({b"aiwatch": json.dumps(meta).encode("utf-8")})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _table(data: bytes):
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


def build_shard(config: Config, plan: str, now: datetime) -> dict[str, Any]:
    """Fetch, extract and embed one planned shard; write its Parquet files beside the plan.

    Never opens the database. Returns counts and the seconds spent per part of the work."""
    started = time.perf_counter()
    entries, outlets = read_plan(plan)
    clock = StageClock()
    # a Dask worker's nanny sets OMP_NUM_THREADS to its threads: the model follows it
    threads = config.embed.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or None
    # with embed.overlap, passages are embedded on background threads while pages are fetched
    # and extracted, as in the one-process stage; the vectors stay here, in the shard
    behind = EmbedBehind(config, now, workers=threads) if config.embed.overlap and entries else None
    texts: dict[str, str] = {}
    results: dict[int, tuple[FeedEntry, BuiltArticle | None, Failure | None]] = {}
    try:
        with (HttpClient.from_config(config) if config.fetch.articles else nullcontext()) as client, \
                ThreadPoolExecutor(max_workers=config.fetch.concurrency) as pool:
            robots = RobotsPolicy(client) if client is not None and config.fetch.robots else None
            position = {id(e): i for i, e in enumerate(entries)}
            # in turns across hosts, as the one-process stage does: in plan order the pool would
            # wait on one site's politeness gate while the shard's other sites sit idle
            futures = {pool.submit(copy_context().run, build_article, config, client, e, outlets[position[id(e)]],
                                   now, robots, clock): position[id(e)] for e in interleave_hosts(entries)}
            for fut in as_completed(futures):
                e = entries[futures[fut]]
                try:
                    b = fut.result()
                    results[futures[fut]] = (e, b, None)
                except Exception as exc:  # noqa: BLE001 - build_article guards the page; this is the last net
                    results[futures[fut]] = (e, None, Failure("article", e.link or e.entry_id,
                                                              f"unexpected error: {type(exc).__name__}: {exc}",
                                                              e.feed_url))
                    continue
                new = [(p.text_hash, p.text) for p in article_passages(b.article, config.embed.chunk_words,
                                                                       config.embed.max_chunks)
                       if p.text_hash not in texts]
                texts.update(new)
                if behind is not None:
                    behind.submit(new)
    finally:
        made = behind.drain() if behind is not None else []
    built = [results[i] for i in range(len(entries))]
    by_hash: dict[str, np.ndarray] = {}
    model = model_id(config.embed.backend)
    for chunk_hashes, chunk_vectors, chunk_model in made:
        model = chunk_model
        by_hash.update(zip(chunk_hashes, chunk_vectors))
    hashes = sorted(texts)
    left = [h for h in hashes if h not in by_hash]  # none, unless the background embedding failed
    with clock.timed("embed"):
        if left:
            embedder = embedder_for(config, threads)
            model = embedder.model_id
            by_hash.update(zip(left, embedder.embed([texts[h] for h in left])))
    vectors = np.stack([by_hash[h] for h in hashes]) if hashes else np.zeros((0, 1), dtype=np.float32)
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if len(hashes) else 1
    stem = _stem(plan)
    _write(stem + VECTORS, _parquet({
        "text_hash": hashes,
        "model": [model] * len(hashes),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)}))
    records, pages = [], []
    for e, b, failure in built:
        a = b.article if b is not None else None
        records.append(json.dumps({
            "entry": {"feed_url": e.feed_url, "entry_id": e.entry_id, "entry_hash": e.entry_hash},
            "article": _article_json(a) if a is not None else None,
            "page": {"url": a.page.url, "content_type": a.page.content_type} if a is not None and a.page else None,
            "aliases": list(b.aliases) if b is not None else [],
            "failure": asdict(f) if (f := (b.failure if b is not None else failure)) is not None else None,
        }, ensure_ascii=False))
        pages.append(a.page.html if a is not None and a.page is not None else None)
    seconds = dict(clock.seconds)
    seconds["shard"] = time.perf_counter() - started
    # the articles file last: its presence says the shard is complete
    _write(stem + ARTICLES, _parquet({"format": [FORMAT] * len(records), "record": records,
                                      "page_html": pa.array(pages, pa.binary())}, {"seconds": seconds}))
    return {"plan": plan, "articles": sum(1 for _, b, _ in built if b is not None), "passages": len(hashes),
            "seconds": seconds}


# -- merging a shard (on the writer) -------------------------------------------

@dataclass(frozen=True)
class Merged:
    stored: int
    duplicates: int
    failures: tuple[Failure, ...]
    embedded: int
    skipped: int  # entries already stored with the same content (a shard merged again)
    built_seconds: dict[str, float]  # what building the shard took on its worker, by part


def read_shard(plan: str) -> tuple[list[tuple[dict, BuiltArticle | None, Failure | None]], dict[str, np.ndarray],
                                   str, dict[str, float]]:
    """A finished shard: (entry, built article or None, failure) per entry, its vectors by text
    hash, the model that made them, and the seconds its worker spent by part."""
    stem = _stem(plan)
    try:
        arrow = _table(_read(stem + ARTICLES))
        table = arrow.to_pydict()
        meta = json.loads((arrow.schema.metadata or {}).get(b"aiwatch", b"{}"))
        vec = _table(_read(stem + VECTORS))
    except Exception as exc:  # noqa: BLE001 - a damaged file is named, and the shard planned again
        raise AiwatchError(f"{stem}: unreadable shard ({type(exc).__name__}: {exc})") from None
    if any(f != FORMAT for f in table["format"]):
        raise AiwatchError(f"{stem}: shard of another format than {FORMAT}")
    rows = []
    for record, html in zip(table["record"], table["page_html"]):
        r = json.loads(record)
        failure = Failure(**r["failure"]) if r["failure"] else None
        built = None
        if r["article"] is not None:
            page = StoredPage(r["page"]["url"], r["page"]["content_type"], html) if r["page"] else None
            built = BuiltArticle(_article_from(r["article"], page), tuple(r["aliases"]), failure)
        rows.append((r["entry"], built, failure))
    hashes = vec.column("text_hash").to_pylist()
    models = vec.column("model").to_pylist()
    flat = vec.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = flat.reshape(len(hashes), -1) if hashes else np.zeros((0, 1), dtype=np.float32)
    return rows, dict(zip(hashes, matrix)), (models[0] if models else ""), dict(meta.get("seconds") or {})


def merge_shard(config: Config, store: Store, plan: str, run_id: str, now: datetime,
                clock: StageClock | None = None) -> Merged:
    """Store one finished shard, as the in-process stage stores a batch, then delete its files."""
    clock = clock or StageClock()
    with clock.timed("merge_read"):
        rows, vectors, model, built_seconds = read_shard(plan)
    seen = store.seen_entries([(r["feed_url"], r["entry_id"]) for r, _, _ in rows])
    fresh = [(r, b, f) for r, b, f in rows
             if not (b is not None and seen.get((r["feed_url"], r["entry_id"])) == r["entry_hash"])]
    hashes = {(r["feed_url"], r["entry_id"]): r["entry_hash"] for r, _, _ in fresh}
    failures = [f for _, b, f in fresh if b is None and f is not None]  # built nothing: tried again next run
    store.record_failures(run_id, failures, now)
    stored = duplicates = embedded = 0
    built = [b for _, b, _ in fresh if b is not None]
    failures += [b.failure for b in built if b.failure is not None]
    for f in failures:
        log.warning("article %s: %s", f.url, f.error)
    usable = model == model_id(config.embed.backend)
    for start in range(0, len(built), MERGE_BATCH):
        result, todo = store_built(config, store, built[start:start + MERGE_BATCH], run_id, now, hashes, clock,
                                   want_missing=usable)
        stored += len(result.to_store)
        duplicates += result.duplicates
        todo = [h for h in todo if h in vectors]
        if todo:
            with clock.timed("store"):
                store.save_embeddings(todo, np.stack([vectors[h] for h in todo]), model, now)
            embedded += len(todo)
    _drop(plan)
    return Merged(stored, duplicates, tuple(failures), embedded, len(rows) - len(fresh), built_seconds)


# -- the stage (on the writer) -------------------------------------------------

def settled_serial(fn: Callable, arglists: list[tuple]) -> Iterator:
    """Run ``fn`` over each argument tuple in turn, yielding its result or the exception it raised."""
    for args in arglists:
        try:
            yield fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which records it
            yield exc


def changed_settings(config: Config) -> dict[str, Any]:
    """The settings that differ from the defaults, JSON-able: what a worker needs to build a
    shard as this run would (fetch, extract and embed settings), carried with the shard."""
    from ..config import SETTINGS_BY_KEY

    return {k: v for k, v in config.values.items() if v != SETTINGS_BY_KEY[k].default}


@dataclass(frozen=True)
class ShardsResult:
    stored: int
    duplicates: int
    failures: tuple[Failure, ...]
    embedded: int
    seconds: dict[str, float]
    shards: int
    leftover: int  # shards of earlier runs finished here


def run_shards(config: Config, run_id: str, entries: Sequence[FeedEntry], outlets: Sequence[str],
               now: datetime | None = None, fan_out: Callable = settled_serial,
               open_store: Callable[[], Any] | None = None) -> ShardsResult:
    """Plan the entries into shards, have ``fan_out`` build them, merge each as it comes back.

    ``fan_out(fn, arglists)`` yields each call's result or exception, in order (the flow passes
    one that submits to its task runner). Shards left by an earlier run are finished first."""
    from ..store import open_store as default_open

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError("storage.shards", "shards are Parquet files and need pyarrow: "
                                            "pip install 'aiwatch[shards]'") from None
    now = now or utcnow()
    opener = open_store or (lambda: default_open(config))
    folder = shard_folder(config)
    if not _remote(folder):
        os.makedirs(folder, exist_ok=True)
    clock = StageClock()
    stored = duplicates = embedded = leftover = 0
    failures: list[Failure] = []

    def merge(plan: str) -> None:
        nonlocal stored, duplicates, embedded
        with opener() as store, clock.timed("merge"):
            m = merge_shard(config, store, plan, run_id, now, clock)
        stored, duplicates, embedded = stored + m.stored, duplicates + m.duplicates, embedded + m.embedded
        failures.extend(m.failures)
        for key, seconds in m.built_seconds.items():  # the workers' time, summed over shards
            clock.add(key, seconds)

    # an earlier run's shards: merge the finished ones, plan the others again
    again: list[tuple[FeedEntry, str]] = []
    earlier = _plans(folder)
    for plan in earlier:
        if _exists(_stem(plan) + ARTICLES):
            try:
                merge(plan)
                leftover += 1
                continue
            except AiwatchError as exc:
                log.warning("%s", exc)
        try:
            again += list(zip(*read_plan(plan)))
        except AiwatchError as exc:
            log.warning("%s; its entries come back when their feeds list them again", exc)
    keys = {(e.feed_url, e.entry_id) for e in entries}
    pairs = list(zip(entries, outlets))
    if again:
        with opener() as store:
            seen = store.seen_entries([(e.feed_url, e.entry_id) for e, _ in again])
        for e, outlet in again:
            if (e.feed_url, e.entry_id) not in keys and seen.get((e.feed_url, e.entry_id)) != e.entry_hash:
                keys.add((e.feed_url, e.entry_id))
                pairs.append((e, outlet))
    outlet_of = {(e.feed_url, e.entry_id): o for e, o in pairs}
    shards = plan_shards([e for e, _ in pairs], config.storage.shard_entries)
    plans = [write_plan(folder, run_id, n, s, [outlet_of[(e.feed_url, e.entry_id)] for e in s])
             for n, s in enumerate(shards)]
    for plan in earlier:  # their entries are in this run's plans now
        _drop(plan)
    if plans:
        log.info("articles: %d entries in %d shards of at most %d, under %s", len(pairs), len(plans),
                 config.storage.shard_entries, folder)
    for plan, outcome in zip(plans, fan_out(build_shard, [(config, plan, now) for plan in plans])):
        if isinstance(outcome, BaseException):
            # the plan stays: the next run builds the shard again
            failures.append(Failure("article", plan, f"shard failed: {type(outcome).__name__}: {outcome}"))
            log.warning("article %s: %s", plan, failures[-1].error)
            continue
        try:
            merge(plan)
        except AiwatchError as exc:
            failures.append(Failure("article", plan, str(exc)))
            log.warning("%s", exc)
    return ShardsResult(stored, duplicates, tuple(failures), embedded, dict(clock.seconds), len(plans), leftover)
