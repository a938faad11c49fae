"""aiwatch end to end against its own limits and a peer, on a corpus built from real pages.

    python benchmarks/e2e_bench.py [--articles N] [--scale] [--pages DIR] [--work DIR]

The corpus: N article pages (default 2,000) made from the real pages in ``--pages`` (default
../shared/data/pages: Mozilla's readability test pages and miniflux's encoding and large-page
cases). Copy i is page i mod P with half of its words swapped for other words of the same page
(a fixed seed per copy), so every copy is unique for the exact and the MinHash near-duplicate
checks while keeping its markup, language and length. 20 RSS feeds list the copies, each
article on one of 20 loopback hosts (127.0.0.1 to 127.0.0.20), served by local HTTP servers
with ETags, so aiwatch's per-host politeness limits apply as they would to 20 sites.

Then, in one run of this script:

1. **End to end**: ``aiwatch run`` in a subprocess, through the real Prefect flow (against a
   Prefect server the script starts first, as a served daily deployment runs), into a fresh
   DuckDB file, with the defaults except ``fetch.allow_private_addresses``. It prints the run's
   stage times (recorded by aiwatch in ``runs.stage_seconds``), articles per second end to end
   (the subprocess's wall time, imports included) and its peak RSS.
2. **Components alone**: trafilatura's ``extract`` on the same pages, and the configured
   embedder on the same passages (read back from the database), in this process.
   ``limit = 1 / (extract_s_per_article + embed_s_per_article)``; ``e2e_vs_limit`` is the end to
   end rate over that limit.
3. **The peer**: newspaper4k downloading and parsing the same URLs (``fetch_news``, 8 threads),
   beside aiwatch fetching and extracting them (``build_article`` on 8 threads); ``peer_ratio``
   is aiwatch's pages/s over newspaper4k's. Skipped (ratio "nan") when newspaper4k is absent:
   ``pip install newspaper4k``.
4. **No-op run**: ``aiwatch run`` again over the unchanged feeds; every feed answers 304.
   ``noop_fraction`` is its wall time over the first run's; a third run with ``--no-prefect`` gives the floor
   without Prefect (``noop_bare_fraction``).
5. **Search**: top-20 ``Store.search`` latency over 100k and 1M synthetic stored embeddings
   (random FLOAT[384] made in SQL, 5 passages per article), median of 3 after a warm-up. The
   line is printed once here (``before the scale runs: ...``) and again at the end.
6. **Scale** (``--scale [SIZES]``): steps 1 and 4 at 1k, 5k and 10k articles (or the sizes
   given), with throughput, peak RSS, and the near-duplicate, story and store stage times per
   article (flat if the cost grows linearly). The table is printed again after each size.

The last line:

    articles=N e2e_per_s=X limit_per_s=Y e2e_vs_limit=R peer_ratio=P noop_fraction=F peak_rss_mb=M search_1m_s=S noop_bare_fraction=B

(``noop_bare_fraction``: the no-op run again with ``--no-prefect``, the floor without Prefect.)

``peak_rss_mb`` is the largest aiwatch run measured (the 10k one with ``--scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from aiwatch.localserver import LocalServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FEEDS = 20
CORPUS_VERSION = "2"
_SPLIT = re.compile(r"(<script\b.*?</script\s*>|<style\b.*?</style\s*>|<!--.*?-->|<[^>]*>)", re.S | re.I)
_WORD = re.compile(r"\w{3,}")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.S | re.I)


# -- the corpus ---------------------------------------------------------------------------

def source_pages(folder: Path) -> list[Path]:
    pages = [p for p in sorted(folder.rglob("*.html")) if p.name != "expected.html"]
    if not pages:
        raise SystemExit(f"e2e_bench: {folder}: no .html pages")
    return pages


def make_unique(html: str, seed: int) -> str:
    """Swap half of the words in the text (not in tags, scripts or styles) for other words of
    the same page, with a fixed seed: same markup, language and length; different text."""
    parts = _SPLIT.split(html)
    vocab = sorted({w for part in parts[0::2] for w in _WORD.findall(part)}) or ["word"]
    rng = random.Random(seed)

    def swap(m: re.Match) -> str:
        return vocab[rng.randrange(len(vocab))] if rng.random() < 0.5 else m.group(0)

    parts[0::2] = [_WORD.sub(swap, part) for part in parts[0::2]]
    return "".join(parts)


def build_corpus(pages_dir: Path, n: int, work: Path) -> Path:
    """Write pages/{i}.html for i < n (kept between runs of the script) and return the folder."""
    from aiwatch.articles.page import decode_html

    folder = work / f"corpus-v{CORPUS_VERSION}"
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    sources = source_pages(pages_dir)
    decoded: dict[int, str] = {}
    made = 0
    start = time.perf_counter()
    for i in range(n):
        target = folder / "pages" / f"{i}.html"
        if target.exists():
            continue
        k = i % len(sources)
        if k not in decoded:
            decoded[k] = decode_html(sources[k].read_bytes())
        target.write_text(make_unique(decoded[k], seed=i), "utf-8")
        made += 1
    if made:
        print(f"corpus: made {made} pages from {len(sources)} real ones in {time.perf_counter() - start:.0f}s")
    return folder


def host(i: int) -> str:
    return f"127.0.0.{i % FEEDS + 1}"


def page_title(html: str, i: int) -> str:
    m = _TITLE.search(html[:20000])
    title = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m.group(1))).strip() if m else ""
    return (title or f"Article {i}")[:200]


def feed_xml(k: int, ids: list[int], corpus: Path, port: int, now: datetime) -> bytes:
    items = []
    for i in ids:
        html = (corpus / "pages" / f"{i}.html").read_text("utf-8")
        when = now - timedelta(minutes=i)
        url = f"http://{host(i)}:{port}/a/{i}.html"
        items.append(f"<item><title>{escape(page_title(html, i))}</title><link>{url}</link>"
                     f"<guid isPermaLink='false'>bench-{i}</guid><pubDate>{format_datetime(when)}</pubDate>"
                     f"<description>Item {i} of the benchmark corpus.</description></item>")
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Bench feed {k}</title>"
            f"<link>http://{host(k)}:{port}/</link><description>benchmark</description>"
            + "".join(items) + "</channel></rss>").encode("utf-8")


class CorpusSites(LocalServer):
    """The feeds (with ETags) and pages, on 20 loopback addresses sharing one port (aiwatch's own
    local server), so the per-host politeness limits apply as they would to 20 sites."""

    def __init__(self, corpus: Path, n: int):
        self.corpus, self.n = corpus, n
        self.feeds: dict[int, bytes] = {}
        super().__init__(site=self._load, extra_hosts=[host(k) for k in range(1, FEEDS)])

    def _load(self, path: str) -> tuple[bytes, str] | None:
        m = re.fullmatch(r"/(feed|a)/(\d+)\.(xml|html)", path)
        if m and m.group(1) == "feed" and int(m.group(2)) in self.feeds:
            return self.feeds[int(m.group(2))], "application/rss+xml"
        if m and m.group(1) == "a" and int(m.group(2)) < self.n:
            return (self.corpus / "pages" / f"{m.group(2)}.html").read_bytes(), "text/html; charset=utf-8"
        return None

    def __enter__(self) -> "CorpusSites":
        self.start()
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for k in range(FEEDS):
            self.feeds[k] = feed_xml(k, list(range(k, self.n, FEEDS)), self.corpus, self.port, now)
        return self

    def feed_urls(self) -> list[str]:
        return [f"http://{host(k)}:{self.port}/feed/{k}.xml" for k in range(FEEDS)]

    def page_urls(self) -> list[str]:
        return [f"http://{host(i)}:{self.port}/a/{i}.html" for i in range(self.n)]


# -- runs -----------------------------------------------------------------------------------

def write_config(work: Path, name: str, feeds: list[str], extra: str = "") -> Path:
    path = work / f"{name}.toml"
    db = work / f"{name}.duckdb"
    for p in (db, db.with_suffix(".duckdb.wal"), db.with_suffix(".duckdb.lock")):
        p.unlink(missing_ok=True)
    body = [f'[storage]\ndatabase = "{db}"\n', "[fetch]\nallow_private_addresses = true\n",
            f'[digest]\ndir = "{work / (name + "-digest")}"\n', extra]
    body += [f'[[feeds]]\nurl = "{u}"\nname = "Bench {k}"\n' for k, u in enumerate(feeds)]
    path.write_text("\n".join(body), "utf-8")
    return path


def aiwatch_run(config: Path, env: dict[str, str], *args: str) -> tuple[float, float, dict]:
    """Run `aiwatch run --config` (and ``args``) in a subprocess: (wall seconds, peak RSS MB, the runs row).
    Its stderr is kept beside the config (``<name>-<k>.err``): with PYTHONFAULTHANDLER=1 a native
    crash leaves every thread's Python stack there."""
    k = 1
    while (err_path := config.with_name(f"{config.stem}-{k}.err")).exists():
        k += 1
    start = time.perf_counter()
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "aiwatch", "run", "--config", str(config), *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        tail = err_path.read_text("utf-8", "replace").strip().splitlines()[-5:]
        raise SystemExit(f"e2e_bench: aiwatch run exited {proc.returncode} (stderr in {err_path}):\n"
                         + "\n".join(tail))
    return wall, usage.ru_maxrss / 1024, last_run(config)


def last_run(config: Path) -> dict:
    import duckdb
    db = config.with_suffix(".duckdb")
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
        row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    row["stage_seconds"] = json.loads(row.get("stage_seconds") or "{}")
    return row


def print_stages(label: str, wall: float, rss: float, run: dict, n: int) -> None:
    s = run["stage_seconds"]
    print(f"\n{label}: {wall:.1f}s wall, {n / wall:.2f} articles/s, peak RSS {rss:.0f} MB; "
          f"status {run['status']}, {run['articles_new']} new articles, {run['passages_embedded']} passages "
          f"embedded, {run['flagged']} flagged")
    print("  stage          seconds   per article ms")
    for key in ("feeds", "articles", "fetch", "extract", "dedup", "store", "embed", "stories", "score", "digest"):
        if key in s:
            note = {"fetch": " (summed over threads)", "extract": " (CPU)"}.get(key, "")
            print(f"  {key:12} {s[key]:9.2f}   {1000 * s[key] / max(n, 1):9.2f}{note}")
    if "embed_overlapped" in s:
        print(f"  passages embedded while fetching: {s['embed_overlapped']:.0f}")


# -- components alone -------------------------------------------------------------------

def trafilatura_alone(corpus: Path, n: int) -> float:
    import trafilatura
    total = 0.0
    for i in range(n):
        html = (corpus / "pages" / f"{i}.html").read_text("utf-8")
        start = time.perf_counter()
        trafilatura.extract(html)
        total += time.perf_counter() - start
    return total


def stored_passages(config: Path) -> tuple[list[str], int]:
    import duckdb
    with duckdb.connect(str(config.with_suffix(".duckdb")), read_only=True) as con:
        texts = [r[0] for r in con.execute(
            "SELECT DISTINCT p.text FROM core.passages p JOIN core.articles a USING (article_id) "
            "WHERE a.duplicate_of IS NULL").fetchall()]
        originals = con.execute("SELECT count(*) FROM core.articles WHERE duplicate_of IS NULL").fetchone()[0]
    return texts, originals


def embed_alone(config_path: Path, texts: list[str]) -> float:
    """Seconds for the configured embedder alone on ``texts``, run the faster of two ways on
    this machine: one model on every core, or one single-threaded model per core side by side
    (what aiwatch does while fetching). The limit is then the best the component can do."""
    from aiwatch.config import load_config
    from aiwatch.relevance.embed import embedder_for
    config = load_config(config_path)
    cores = os.cpu_count() or 1
    chunks = [texts[i:i + 64] for i in range(0, len(texts), 64)]  # the pipeline's chunk size

    whole = embedder_for(config)  # every core
    whole.embed(texts[:32])  # load and warm up outside the timing
    start = time.perf_counter()
    for chunk in chunks:
        whole.embed(chunk)
    one_model = time.perf_counter() - start

    single = embedder_for(config, threads=1)
    single.embed(texts[:32])
    start = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(single.embed, chunks))
    per_core = time.perf_counter() - start
    print(f"embedder alone: {len(texts) / one_model:.1f} passages/s as one model on {cores} cores, "
          f"{len(texts) / per_core:.1f} as {cores} single-threaded models")
    return min(one_model, per_core)


def peer(urls: list[str], config_path: Path) -> tuple[float, float]:
    """(aiwatch fetch+extract pages/s, newspaper4k download+parse pages/s) on the same URLs."""
    from aiwatch.config import load_config
    from aiwatch.http import HttpClient
    from aiwatch.articles.build import build_article
    from aiwatch.records import FeedEntry

    config = load_config(config_path)
    now = datetime.now(timezone.utc)
    entries = [FeedEntry(feed_url="bench", entry_id=u, link=u, title=f"Bench {i}", summary="", content="",
                         published=None, author=None)
               for i, u in enumerate(urls)]
    start = time.perf_counter()
    with HttpClient.from_config(config) as client, ThreadPoolExecutor(config.fetch.concurrency) as pool:
        list(pool.map(lambda e: build_article(config, client, e, "bench", now), entries))
    ours = len(urls) / (time.perf_counter() - start)
    try:
        import warnings
        warnings.filterwarnings("ignore")
        from newspaper import Article
    except ImportError:
        print("peer: newspaper4k is not installed (pip install newspaper4k); skipped")
        return ours, float("nan")
    failed = []

    def download_and_parse(url: str) -> None:
        # what newspaper4k's fetch_news does per URL, without fetching images (this machine is
        # offline, and aiwatch does not fetch them either); language fixed to English so a page its
        # detector calls Chinese does not need the optional jieba package
        try:
            art = Article(url, language="en", fetch_images=False)
            art.download()
            art.parse()
        except Exception as exc:  # noqa: BLE001 - counted, as aiwatch's failures are
            failed.append(f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    with ThreadPoolExecutor(config.fetch.concurrency) as pool:
        list(pool.map(download_and_parse, urls))
    theirs = len(urls) / (time.perf_counter() - start)
    if failed:
        print(f"peer: newspaper4k failed on {len(failed)} pages, e.g. {failed[0][:120]}")
    return ours, theirs


# -- search -----------------------------------------------------------------------------

def search_latency(work: Path, rows: int) -> float:
    """Median top-20 Store.search seconds over ``rows`` synthetic stored embeddings."""
    import numpy as np

    from aiwatch.relevance.embed import model_id
    from aiwatch.store import Store

    db = work / f"search-{rows}.duckdb"
    model = model_id()
    if not db.exists():
        start = time.perf_counter()
        with Store.open(db) as store:
            con = store.con
            per = 5
            con.execute(f"""
                INSERT INTO core.articles (article_id, url, canonical_url, feed_url, entry_id, title, text,
                                           text_source, published_at, fetched_at, outlet)
                SELECT 'a' || i, 'https://example.org/' || i, 'https://example.org/' || i, 'bench', 'e' || i,
                       'Synthetic article ' || i, '', 'feed', now() - to_hours(i % 2000), now(), 'Bench'
                FROM range({rows // per}) t(i)""")
            con.execute(f"""
                INSERT INTO core.passages
                SELECT 'a' || (i // {per}), i % {per}, 'passage ' || i, 'h' || i FROM range({rows}) t(i)""")
            for lo in range(0, rows, 200_000):
                con.execute(f"""
                    INSERT INTO core.embeddings
                    SELECT 'h' || i, ?, list_transform(range(384), lambda x: random() - 0.5)::FLOAT[384], now()
                    FROM range({lo}, {min(rows, lo + 200_000)}) t(i)""", [model])
            con.execute("CHECKPOINT")
        print(f"search: built {rows} synthetic embeddings in {time.perf_counter() - start:.0f}s")
    rng = np.random.default_rng(1)
    times = []
    with Store.open(db, read_only=True) as store:
        for _ in range(4):
            q = rng.standard_normal(384).astype(np.float32)
            start = time.perf_counter()
            store.search(q / np.linalg.norm(q), model, k=20)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


# -- main ---------------------------------------------------------------------------------

@contextmanager
def prefect_server(work: Path):
    env = dict(os.environ, PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    os.environ.update(env)
    from aiwatch.flow import prefect_api
    start = time.perf_counter()
    with socket.socket() as s:  # a free port: other benchmarks may be serving Prefect beside this one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with prefect_api(port=port) as url:
        print(f"prefect: server at {url} healthy in {time.perf_counter() - start:.1f}s")
        yield dict(env, PREFECT_API_URL=url)


def e2e(corpus: Path, n: int, work: Path, env: dict[str, str], label: str) -> dict:
    with CorpusSites(corpus, n) as sites:
        config = write_config(work, f"bench-{n}", sites.feed_urls())
        wall, rss, run = aiwatch_run(config, env)
        print_stages(f"{label} first run ({n} articles)", wall, rss, run, n)
        wall2, rss2, run2 = aiwatch_run(config, env)
        print(f"{label} no-op run: {wall2:.1f}s ({wall2 / wall:.3f} of the first), {run2['feeds_not_modified']} "
              f"feeds not modified, {run2['articles_new']} new articles, {run2['passages_embedded']} embedded")
        wall3, _, _ = aiwatch_run(config, env, "--no-prefect")  # the floor without Prefect's client and flow
        print(f"{label} no-op run without Prefect (--no-prefect): {wall3:.1f}s ({wall3 / wall:.3f} of the first)")
        return dict(n=n, wall=wall, rss=rss, run=run, noop=wall2, noop_bare=wall3, run2=run2, config=config,
                    sites=sites, urls=sites.page_urls())


def scale_table(corpus: Path, sizes: list[int], work: Path, env: dict[str, str], done: dict[int, dict]) -> float:
    """Run each size end to end (reusing runs already ``done``), printing the table after each;
    returns the largest peak RSS."""
    print("\nscale:")
    rows, rss = [], 0.0
    for size in sizes:
        r = done.get(size) or e2e(corpus, size, work, env, f"scale {size}")
        s = r["run"]["stage_seconds"]
        rows.append((size, size / r["wall"], r["rss"], 1000 * s.get("dedup", 0) / size,
                     1000 * s.get("stories", 0) / size, 1000 * s.get("store", 0) / size, r["noop"] / r["wall"]))
        rss = max(rss, r["rss"])
        print("| articles | articles/s | peak RSS MB | dedup ms/article | stories ms/article "
              "| store ms/article | no-op fraction |")
        print("|---|---|---|---|---|---|---|")
        for size_, rate, mb, dd, st, sto, nf in rows:
            print(f"| {size_} | {rate:.2f} | {mb:.0f} | {dd:.2f} | {st:.2f} | {sto:.2f} | {nf:.3f} |", flush=True)
    return rss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=2000, help="articles in the main run (default 2000)")
    ap.add_argument("--scale", nargs="?", const="1000,5000,10000", default="",
                    help="also run these sizes end to end (default with the flag: 1000,5000,10000)")
    ap.add_argument("--pages", type=Path, default=SHARED / "pages", help="folder of real .html pages")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one; the corpus is kept there)")
    ap.add_argument("--peer-pages", type=int, default=500, help="pages for the newspaper4k comparison (default 500)")
    ap.add_argument("--no-search", action="store_true", help="skip the 100k/1M search timing")
    ap.add_argument("--scale-only", action="store_true",
                    help="only the --scale sizes end to end, in the order given (no main run, components, peer or search)")
    args = ap.parse_args(argv)
    if not args.pages.is_dir():
        print(f"e2e_bench: {args.pages}: no such folder", file=sys.stderr)
        return 2
    work = (args.work or Path(tempfile.mkdtemp(prefix="aiwatch-e2e-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    scale = [int(x) for x in args.scale.split(",") if x.strip()]
    sizes = sorted({args.articles, *scale})
    corpus = build_corpus(args.pages, max(sizes), work)
    print(f"work folder: {work}; {os.cpu_count()} cores")

    with ExitStack() as stack:
        env = stack.enter_context(prefect_server(work))
        if args.scale_only:
            scale_table(corpus, scale, work, env, {})
            return 0
        main_run = e2e(corpus, args.articles, work, env, "end to end")
        n = args.articles
        texts, originals = stored_passages(main_run["config"])
        traf_s = trafilatura_alone(corpus, n)
        emb_s = embed_alone(main_run["config"], texts)
        extract_pa, embed_pa = traf_s / n, emb_s / n
        limit = 1 / (extract_pa + embed_pa)
        e2e_rate = n / main_run["wall"]
        print(f"\ncomponents alone: trafilatura {1000 * extract_pa:.1f} ms/article; embedder "
              f"{len(texts) / emb_s:.1f} passages/s, {len(texts) / n:.2f} passages/article, "
              f"{1000 * embed_pa:.1f} ms/article")
        print(f"limit {limit:.2f} articles/s; end to end {e2e_rate:.2f} articles/s = {e2e_rate / limit:.3f} of it")

        with CorpusSites(corpus, n) as sites:
            m = min(args.peer_pages, n)
            ours, theirs = peer(sites.page_urls()[:m], main_run["config"])
        peer_ratio = ours / theirs if theirs == theirs else float("nan")
        print(f"peer ({m} pages): aiwatch fetch+extract {ours:.1f} pages/s, newspaper4k {theirs:.1f} pages/s, "
              f"ratio {peer_ratio:.2f}")

        search_1m = float("nan")
        if not args.no_search:
            s100k = search_latency(work, 100_000)
            search_1m = search_latency(work, 1_000_000)
            print(f"search top-20: {s100k:.3f}s over 100k embeddings, {search_1m:.3f}s over 1M")

        def line(rss_mb: float) -> str:
            return (f"articles={n} e2e_per_s={e2e_rate:.2f} limit_per_s={limit:.2f} "
                    f"e2e_vs_limit={e2e_rate / limit:.3f} peer_ratio={peer_ratio:.2f} "
                    f"noop_fraction={main_run['noop'] / main_run['wall']:.3f} peak_rss_mb={rss_mb:.0f} "
                    f"search_1m_s={search_1m:.3f} noop_bare_fraction={main_run['noop_bare'] / main_run['wall']:.3f}")

        rss = main_run["rss"]
        if scale:
            print(f"\nbefore the scale runs: {line(rss)}", flush=True)
            rss = max(rss, scale_table(corpus, scale, work, env, {n: main_run}))

    print(f"\n{line(rss)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
