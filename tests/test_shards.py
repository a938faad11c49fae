"""The articles stage in shards: built away from the database, merged by the one writer.

In-process shards first (the same database as the single-process run, a shard merged twice,
shards left by a dead writer), then real processes: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1 that the flow submits to, and one of them killed while it builds a shard.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import local_config

from aiwatch.articles import shards as shards_mod
from aiwatch.articles.shards import build_shard, merge_shard, plan_shards, shard_folder
from aiwatch.clock import utcnow
from aiwatch.demo import demo_feeds
from aiwatch.pipeline import run_pipeline
from aiwatch.store import Store


def snapshot(db: Path):
    """What a user reads: articles (with which are originals), passages, embeddings, scores, matches."""
    with Store.open(db, read_only=True) as store:
        q = lambda sql: set(store.query(sql)[1])  # noqa: E731
        return {
            "articles": q("SELECT canonical_url, title, text, text_source, extractor, duplicate_of IS NULL "
                          "FROM core.articles"),
            "passages": q("SELECT a.canonical_url, p.passage_no, p.text_hash FROM core.passages p "
                          "JOIN core.articles a USING (article_id)"),
            "embeddings": q("SELECT text_hash FROM core.embeddings"),
            "scores": {(u, t): sc for u, t, sc in store.query(
                "SELECT a.canonical_url, s.theme, s.score FROM core.scores s JOIN core.articles a "
                "USING (article_id)")[1]},
            "matches": q("SELECT url, theme FROM matches"),
            "seen": q("SELECT feed_url, entry_id FROM core.entries_seen"),
        }


def same(a: dict, b: dict) -> bool:
    """Two snapshots agree: every part equal, scores within 0.05. The default int8 model
    quantizes its activations per batch, so a passage embedded beside other passages (a shard
    batches by shard, the single process by arrival) gets a slightly different vector: measured
    on the demo corpus, cosine distance 0.004 on average and 0.017 at most, scores up to 0.025
    apart. The flags (matches) must still be the same."""
    sa, sb = a["scores"], b["scores"]
    assert {k: v for k, v in a.items() if k != "scores"} == {k: v for k, v in b.items() if k != "scores"}
    assert sa.keys() == sb.keys() and max((abs(sa[k] - sb[k]) for k in sa), default=0) < 0.05
    return True


def counts(db: Path) -> dict[str, int]:
    with Store.open(db, read_only=True) as store:
        return {t: store.query(f"SELECT count(*) FROM core.{t}")[1][0][0]
                for t in ("articles", "passages", "embeddings", "scores", "entries_seen", "url_aliases")}


def test_plan_keeps_a_site_together_and_splits_only_what_does_not_fit():
    from aiwatch.records import FeedEntry

    def entries(host, n):
        return [FeedEntry(f"https://{host}/feed", f"{host}-{i}", f"https://{host}/a{i}", "t", "", "", None)
                for i in range(n)]
    big, small1, small2 = entries("big.example", 25), entries("one.example", 4), entries("two.example", 3)
    shards = plan_shards(small1 + big + small2, 10)
    assert [len(s) for s in shards] == [10, 10, 5, 7]
    assert {e.link.split("/")[2] for e in shards[3]} == {"one.example", "two.example"}  # small sites share
    assert sorted(e.entry_id for s in shards for e in s) == sorted(e.entry_id for e in small1 + big + small2)


def test_sharded_run_equals_the_single_process_run(demo_run, tmp_path):
    """In-process shards (the default task runner): same articles, passages, vectors, scores and
    matches as the single-process run, the shard folder empty afterwards, a rerun a no-op."""
    db = tmp_path / "sharded.duckdb"
    config = local_config(db, demo_feeds(demo_run["base"]), **{"storage.shards": str(tmp_path / "shards"),
                                                               "storage.shard_entries": 12})
    result = run_pipeline(config)
    assert result.status == demo_run["first"].status  # the demo's broken feed and missing page
    assert result.stats.articles_failed == demo_run["first"].stats.articles_failed
    assert result.stats.articles_new == demo_run["first"].stats.articles_new == 40
    assert same(snapshot(db), snapshot(demo_run["config"].database))
    assert os.listdir(shard_folder(config)) == []  # every shard merged and removed
    again = run_pipeline(config)
    assert again.stats.articles_new == 0 and again.stats.passages_embedded == 0
    assert counts(db) == counts(demo_run["config"].database)


def test_a_shard_merged_twice_adds_nothing(demo_run, tmp_path):
    db = tmp_path / "twice.duckdb"
    config = local_config(db, demo_feeds(demo_run["base"]), **{"storage.shards": str(tmp_path / "shards")})
    from aiwatch.ingest.stage import fetch_feeds
    from aiwatch.pipeline import start_run

    run_id = start_run(config)
    feeds = fetch_feeds(config, run_id)
    folder = shard_folder(config)
    os.makedirs(folder)
    plan = shards_mod.write_plan(folder, run_id, 0, feeds.new_entries, ["outlet"] * len(feeds.new_entries))
    built = build_shard(config, plan, utcnow())
    assert built["articles"] == len(feeds.new_entries) and built["passages"] > 0
    keep = tmp_path / "kept"
    shutil.copytree(folder, keep)
    with Store.open(db) as store:
        first = merge_shard(config, store, plan, run_id, utcnow())
    assert first.stored == len(feeds.new_entries) and first.embedded > 0
    after_one = counts(db)
    for name in os.listdir(keep):  # the same files again, as after a writer died before deleting them
        shutil.copy(keep / name, folder)
    with Store.open(db) as store:
        second = merge_shard(config, store, plan, run_id, utcnow())
    assert (second.stored, second.embedded, second.skipped) == (0, 0, len(feeds.new_entries))
    assert counts(db) == after_one


def test_shards_left_by_a_dead_writer_are_finished_by_the_next_run(demo_run, tmp_path):
    """A writer that died after planning: one shard was built but not merged, one never built.
    The next run merges the first and builds the second, and ends equal to a clean run."""
    db = tmp_path / "dead.duckdb"
    config = local_config(db, demo_feeds(demo_run["base"]), **{"storage.shards": str(tmp_path / "shards"),
                                                               "storage.shard_entries": 20})
    from aiwatch.ingest.stage import fetch_feeds
    from aiwatch.pipeline import start_run

    run_id = start_run(config)
    feeds = fetch_feeds(config, run_id)  # validators held back until the articles are stored
    folder = shard_folder(config)
    os.makedirs(folder)
    parts = plan_shards(feeds.new_entries, 20)
    assert len(parts) == 2
    plans = [shards_mod.write_plan(folder, run_id, n, p, [p[0].feed_url] * len(p)) for n, p in enumerate(parts)]
    build_shard(config, plans[0], utcnow())  # ... and the writer died here
    assert counts(db)["articles"] == 0
    result = run_pipeline(config)
    assert result.stats.feeds_ok == 5  # fetched in full again: the dead run never stored their validators
    assert counts(db)["articles"] == 40  # each entry once: planned again or merged from the finished shard
    assert os.listdir(folder) == []
    assert snapshot(db)["passages"] == snapshot(demo_run["config"].database)["passages"]
    assert snapshot(db)["matches"] == snapshot(demo_run["config"].database)["matches"]


# -- real processes: a dask.distributed scheduler and two workers ----------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, as a user starts them."""

    def __init__(self, folder: Path, workers: int = 2):
        pytest.importorskip("distributed")
        pytest.importorskip("prefect_dask")
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.folder = folder
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        bin_dir = Path(sys.executable).parent
        self.scheduler = self._start([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--no-dashboard"], "scheduler")
        # --no-nanny: the worker is the process we kill (a nanny would restart it at once)
        self.workers = [self._start([str(bin_dir / "dask"), "worker", self.address, "--nthreads", "1",
                                     "--no-nanny", "--no-dashboard", "--name", f"w{i}"], f"worker{i}")
                        for i in range(workers)]
        self.client = None
        from distributed import Client
        deadline = time.monotonic() + 90
        while True:
            try:
                self.client = Client(self.address, timeout=5)
                self.client.wait_for_workers(workers, timeout=60)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def dask_cluster(tmp_path):
    cluster = DaskCluster(tmp_path)
    yield cluster
    cluster.close()


@pytest.mark.prefect
def test_two_dask_workers_give_the_single_process_database(prefect_harness, demo_run, dask_cluster, tmp_path):
    """The demo corpus through a real scheduler and two worker processes: the database equals
    the single-process run's, and both workers built shards."""
    from aiwatch.flow import daily

    db = tmp_path / "two-workers.duckdb"
    result = daily(settings=dask_settings(db, tmp_path, dask_cluster), feeds=demo_feeds(demo_run["base"]))
    assert result.status == demo_run["first"].status and result.stats.articles_new == 40
    assert same(snapshot(db), snapshot(demo_run["config"].database))
    executed = dask_cluster.client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed
    assert os.listdir(tmp_path / "shards" / db.stem) == []


def dask_settings(db: Path, tmp_path: Path, cluster: DaskCluster, **more) -> dict:
    return {"storage.database": str(db), "digest.dir": str(tmp_path), "fetch.allow_private_addresses": True,
            "fetch.host_delay": 0.0, "fetch.retries": 0, "prefect.task_runner": "dask",
            "prefect.dask_address": cluster.address, "storage.shards": str(tmp_path / "shards"),
            "storage.shard_entries": 10, **more}


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an open TCP connection to 127.0.0.1:``port`` (read from
    /proc: its socket inodes, matched against the kernel's connection table)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1] for fd in os.listdir(f"/proc/{pid}/fd")
                  if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    except OSError:
        return False
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
            return True
    return False


@pytest.mark.prefect
def test_a_worker_killed_mid_shard_loses_nothing(prefect_harness, demo_run, dask_cluster, route_server, tmp_path):
    """One page answers only after 30 s the first time it is asked for; the worker waiting on
    it (the process holding a connection to that server) is killed with SIGKILL. Dask builds that
    shard again on the other worker: the run ends with every article, equal to a single-process
    run, and a rerun adds nothing."""
    from routes import Response, page, rss

    from aiwatch.flow import daily

    items = []
    for i in range(6):
        path = f"/k{i}.html"
        text = [f"Story {i} of a site that is slow today: a ministry published draft rules for cloud services.",
                f"Detail {i}: the consultation runs for thirty days and covers data held abroad."]
        first = Response(200, page(f"Slow site story {i}", text), {"Content-Type": "text/html"},
                         delay=30.0 if i == 0 else 0.0)
        route_server.add(path, first, Response(200, page(f"Slow site story {i}", text), {"Content-Type": "text/html"}))
        items.append({"title": f"Slow site story {i}", "link": route_server.url(path), "guid": f"k{i}",
                      "description": f"Summary {i}."})
    feeds = [*demo_feeds(demo_run["base"]), {"url": route_server.add("/slow.xml", Response(200, rss(items)))}]
    killed: list[str] = []

    def kill_the_waiting_worker() -> None:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            if route_server.hits["/k0.html"]:
                pids = dask_cluster.worker_pids()
                waiting = [addr for addr, pid in pids.items() if connected_to(pid, route_server.port)]
                if waiting:
                    os.kill(pids[waiting[0]], signal.SIGKILL)
                    killed.append(waiting[0])
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_waiting_worker, daemon=True)
    killer.start()
    db = tmp_path / "killed.duckdb"
    settings = dask_settings(db, tmp_path, dask_cluster, **{"fetch.timeout": 90.0})
    result = daily(settings=settings, feeds=feeds)
    killer.join(5)
    assert killed, "no worker was killed"
    assert route_server.hits["/k0.html"] == 2  # asked by the killed worker, then by the other one
    single = tmp_path / "single.duckdb"
    run_pipeline(local_config(single, feeds))
    assert result.stats.articles_new == counts(single)["articles"] == 46
    assert snapshot(db)["articles"] == snapshot(single)["articles"]
    assert snapshot(db)["matches"] == snapshot(single)["matches"]
    again = daily(settings=settings, feeds=feeds)
    assert again.stats.articles_new == 0 and counts(db) == counts(single)
    assert os.listdir(tmp_path / "shards" / db.stem) == []


# -- real processes: a Prefect server, the shard deployment, a work-pool worker ---------------

@pytest.mark.prefect
def test_a_work_pool_worker_builds_the_shards_of_the_prefect_yaml_deployment(demo_run, tmp_path):
    """prefect.yaml's ``shard`` deployment, deployed with ``prefect deploy`` against a real
    Prefect server, and a ``prefect worker start`` process polling its pool: the writer hands
    each shard to the pool as a flow run and merges what comes back; the database equals the
    single-process run's."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from aiwatch.flow import prefect_api

    project = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AIWATCH_PROJECT_DIR": str(project),
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    logs: list[Path] = []

    def prefect_cli(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=project,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    worker = None
    with prefect_api(port=_free_port()) as url:
        env["PREFECT_API_URL"] = url
        try:
            prefect_cli("work-pool", "create", "aiwatch-shards", "--type", "process")
            prefect_cli("--no-prompt", "deploy", "--name", "shard")
            logs.append(tmp_path / "worker.log")
            with open(logs[0], "wb") as log:
                worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                           "aiwatch-shards"], env=env, cwd=tmp_path, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            db = tmp_path / "pool.duckdb"
            config = local_config(db, demo_feeds(demo_run["base"]), **{
                "storage.shards": str(tmp_path / "shards"), "storage.shard_entries": 20,
                "prefect.shard_deployment": "aiwatch-shard/shard", "prefect.shard_timeout": 600.0})
            with temporary_settings(updates={PREFECT_API_URL: url}):
                result = run_pipeline(config)
                with get_client(sync_client=True) as client:
                    runs = [r for r in client.read_flow_runs() if r.name and r.parameters.get("plan")]
            assert result.stats.articles_new == 40, logs[0].read_text("utf-8", "replace")[-3000:]
            assert len(runs) == 2 and all(r.state.is_completed() for r in runs)  # 40 entries, 20 a shard
            assert same(snapshot(db), snapshot(demo_run["config"].database))
            assert os.listdir(shard_folder(config)) == []
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)


@pytest.mark.prefect
def test_a_missing_shard_deployment_is_named(prefect_harness, demo_run, tmp_path):
    """prefect.shard_deployment naming a deployment the server lacks, or set without a shard
    folder (refused when the config is read, before any run): a one-line error naming the
    setting (and the command that makes the deployment)."""
    from aiwatch.errors import ConfigError

    feeds = demo_feeds(demo_run["base"])
    config = local_config(tmp_path / "nowhere.duckdb", feeds, **{
        "storage.shards": str(tmp_path / "shards"), "prefect.shard_deployment": "aiwatch-shard/nowhere"})
    with pytest.raises(ConfigError, match=r"prefect\.shard_deployment: aiwatch-shard/nowhere: no such deployment "
                                          r"at http\S+; deploy it from aiwatch's folder: prefect deploy --name shard"):
        run_pipeline(config)
    with pytest.raises(ConfigError, match=r"prefect\.shard_deployment: needs storage\.shards"):  # refused on load
        local_config(tmp_path / "no-folder.duckdb", feeds, **{"prefect.shard_deployment": "aiwatch-shard/shard"})
    with pytest.raises(ConfigError, match=r"prefect\.dask_address: needs storage\.shards"):
        local_config(tmp_path / "no-folder.duckdb", feeds, **{"prefect.dask_address": "tcp://127.0.0.1:8786"})
