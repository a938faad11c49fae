"""Extraction in worker processes (articles/workers.py): real forkserver workers, really killed.

A worker killed mid-page (as a native crash in a parser would end it) costs nothing: the page is
extracted again in a fresh pool. A page that stops its worker every time is recorded as one
failure, the page that was merely in flight beside it is not, and the run goes on."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import local_config
from routes import Response, rss

from aiwatch.articles import workers
from aiwatch.articles.build import page_text
from aiwatch.http import Fetched
from aiwatch.pipeline import run_pipeline
from aiwatch.store import Store

WORDS = ("export licence memory wafer lithography ministry tariff quota model pricing subsidy "
         "cloud token inference startup province regulator foundry packaging shipment").split()


def big_page(paragraphs: int = 4000) -> bytes:
    """An article long enough that extracting it takes over a second (4,000 paragraphs; 12,000
    about three): time to kill its worker."""
    body = "".join(f"<p>{' '.join(WORDS[(i + k) % len(WORDS)] for k in range(40))} number {i}.</p>"
                   for i in range(paragraphs))
    return (f"<!DOCTYPE html><html lang='en'><head><title>A long report</title></head><body>"
            f"<nav><a href='/'>Home</a></nav><article><h1>A long report</h1>{body}</article></body></html>").encode()


def fetched(content: bytes, url: str = "http://127.0.0.1:9/long") -> Fetched:
    return Fetched(url, url, 200, {"content-type": "text/html; charset=utf-8"}, content)


def worker_pids() -> set[int]:
    pool = workers._pool
    return set((pool._processes or {}).keys()) if pool is not None else set()


def kill_workers(stop: threading.Event, rounds: int | None) -> list[int]:
    """SIGKILL the pool's workers as they appear, for ``rounds`` pools (None: until ``stop``)."""
    killed: list[int] = []
    seen_pools: list[object] = []
    while not stop.is_set() and (rounds is None or len(seen_pools) < rounds):
        pool, pids = workers._pool, worker_pids()
        if pool is not None and pids and pool not in seen_pools:
            time.sleep(0.3)  # the page is being extracted
            for pid in worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            seen_pools.append(pool)
        time.sleep(0.02)
    return killed


def kill_long_extractions(stop: threading.Event, cpu_seconds: float = 1.0) -> None:
    """SIGKILL every extraction worker (a child of the fork server) once it has used more than
    ``cpu_seconds`` of CPU: the long page's workers die, a short page's worker never gets there
    (CPU time, not age, so a loaded machine changes nothing)."""
    from multiprocessing import forkserver
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        server = forkserver._forkserver._forkserver_pid
        for entry in Path("/proc").iterdir():
            if server is None or not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # after the command: state ppid ... utime stime are the 2nd and the 12th and 13th
            if int(fields[1]) == server and (int(fields[11]) + int(fields[12])) / tick > cpu_seconds:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.02)


@pytest.fixture
def fresh_pool():
    workers.shutdown()
    yield
    workers.shutdown()


def test_a_page_extracted_in_a_worker_equals_the_page_extracted_here(tmp_path, fresh_pool):
    config = local_config(tmp_path / "a.duckdb", [])
    page = fetched(big_page(200))
    here = page_text(config.extract, page, "A long report", "")
    there, cpu = workers.extract_page(config, page, "A long report", "")
    assert workers.process_count(config) == (os.cpu_count() or 1) and worker_pids()
    assert there == here and there.text and cpu > 0
    inline = config.replace(**{"extract.processes": -1})
    assert workers.process_count(inline) == 0
    assert workers.extract_page(inline, page, "A long report", "")[0] == here


def test_a_worker_killed_mid_page_costs_nothing(tmp_path, fresh_pool):
    config = local_config(tmp_path / "a.duckdb", [])
    page = fetched(big_page())
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(kill_workers(stop, rounds=1)))
    killer.start()
    result, _ = workers.extract_page(config, page, "A long report", "")
    stop.set()
    killer.join()
    assert killed, "no worker was killed: the page was extracted before the kill"
    assert result == page_text(config.extract, page, "A long report", "")


def test_a_page_that_stops_its_worker_every_time_is_one_recorded_failure(tmp_path, route_server, fresh_pool):
    """Through a whole run: the page whose worker is killed each time fails with a one-line
    reason; the other page, in flight beside it when the shared worker died, is extracted on its
    own the second time and stored; a rerun does not duplicate anything."""
    short = ("<html><head><title>Short note</title></head><body><article><h1>Short note</h1>"
             + "<p>Export licences for memory chips bound for China were widened again this week. </p>" * 12
             + "</article></body></html>").encode()
    items = [{"title": "Short note", "link": route_server.add("/short", Response(200, short)), "guid": "s",
              "description": "A short note on chip export licences."},
             {"title": "A long report", "link": route_server.add("/long", Response(200, big_page(12000))), "guid": "l",
              "description": "A long report on memory export rules."}]
    feed_url = route_server.add("/feed.xml", Response(200, rss(items)))
    db = tmp_path / "run.duckdb"
    config = local_config(db, [{"url": feed_url, "name": "Killer"}], **{"extract.processes": 1})
    stop = threading.Event()
    killer = threading.Thread(target=kill_long_extractions, args=(stop,))
    killer.start()
    try:
        result = run_pipeline(config, with_digest=False)
    finally:
        stop.set()
        killer.join()
    assert result.stats.articles_new == 2 and result.stats.articles_failed == 1
    with Store.open(db, read_only=True) as store:
        failures = store.con.execute("SELECT url, error FROM core.failures").fetchall()
        texts = dict(store.con.execute("SELECT url, text_source FROM core.articles").fetchall())
    assert [(url, "\n" in error) for url, error in failures] == [(route_server.url("/long"), False)]
    assert "worker process stopped on this page twice, the second time extracting it alone" in failures[0][1]
    assert texts == {route_server.url("/short"): "page", route_server.url("/long"): "feed"}  # nothing lost
    assert run_pipeline(config, with_digest=False).stats.articles_new == 0  # and nothing twice


def test_the_workers_of_a_killed_run_leave_with_it(tmp_path):
    """A run killed outright (SIGKILL, or a native crash in the run's own process) leaves no
    extraction worker or fork server behind."""
    import subprocess
    import sys
    script = (
        "import os, sys, time\n"
        "from multiprocessing import forkserver\n"
        "from aiwatch.config import load_config\n"
        "from aiwatch.articles import workers\n"
        "from aiwatch.http import Fetched\n"
        "page = b'<html><body><article><p>' + b'Chip export rules changed again. ' * 60 + b'</p></article></body></html>'\n"
        "workers.extract_page(load_config(None), Fetched('http://x/', 'http://x/', 200, {}, page), '', '')\n"
        "print(forkserver._forkserver._forkserver_pid, *workers._pool._processes, flush=True)\n"
        "time.sleep(600)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        pids = [int(p) for p in run.stdout.readline().split()]
        assert len(pids) >= 2, pids  # the fork server and at least one worker
    finally:
        run.kill()
        run.wait()
    left = set(pids)
    for _ in range(300):  # they notice within a second or two; allow a slow, loaded machine
        left = {pid for pid in left if workers._alive(pid)}
        if not left:
            break
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind by the killed run: {sorted(left)}"
