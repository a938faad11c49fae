"""Running for months: one writer, crash safety, upgrades, and the SQL surface commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import local_config
from routes import Response, page, rss

from aiwatch.cli import main
from aiwatch.demo import demo_feeds
from aiwatch.errors import MigrationError
from aiwatch.pipeline import run_pipeline
from aiwatch.store import Store, list_migrations

ROOT = Path(__file__).resolve().parents[1]
THEMES = 3
TEXT = ("Officials said the licence requirement for advanced accelerators and high-bandwidth memory "
        "bound for China would be widened to cover more chipmaking tools. ") * 5


def write_config(path: Path, db: Path, feeds: list[dict], **settings) -> Path:
    sections: dict[str, dict] = {"storage": {"database": str(db), "lock_timeout": 120},
                                 "fetch": {"allow_private_addresses": True, "host_delay": 0.0},
                                 "digest": {"dir": str(db.parent)}}
    for key, value in settings.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    for f in feeds:
        lines += ["[[feeds]]", f'url = "{f["url"]}"'] + ([f'name = "{f["name"]}"'] if f.get("name") else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn(config: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AIWATCH_")}
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "aiwatch", "run", "--no-prefect", "--config", str(config),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def slow_site(route_server, n: int, delay: float) -> str:
    items = [{"title": f"Licence rule story {i}", "link": route_server.url(f"/a{i}.html"), "guid": f"g{i}",
              "description": f"Summary {i}."} for i in range(n)]
    for i in range(n):
        route_server.add(f"/a{i}.html", Response(200, page(f"Licence rule story {i}", [TEXT, f"Detail {i}."]),
                                                 delay=delay))
    return route_server.add("/feed.xml", Response(200, rss(items)))


def check_consistent(db: Path, expected_articles: int) -> None:
    """Every article once, every passage embedded, every article scored once per theme."""
    with Store.open(db, read_only=True) as store:
        q = lambda sql: store.query(sql)[1][0][0]  # noqa: E731
        assert q("SELECT count(*) FROM articles") == expected_articles
        assert q("SELECT count(*) - count(DISTINCT canonical_url) FROM articles") == 0
        originals = q("SELECT count(*) FROM articles WHERE duplicate_of IS NULL")  # copies are not re-scored
        assert q("""SELECT count(*) FROM core.passages p JOIN articles a USING (article_id)
                    WHERE a.duplicate_of IS NULL AND NOT EXISTS
                    (SELECT 1 FROM core.embeddings e WHERE e.text_hash = p.text_hash)""") == 0
        assert q("SELECT count(*) FROM core.scores") == originals * THEMES
        assert q("SELECT count(*) - count(DISTINCT (article_id, theme)) FROM matches") == 0


def test_second_run_waits_for_the_lock_or_exits_clearly(route_server, tmp_path, embedder):
    feed = slow_site(route_server, 8, delay=0.6)
    db = tmp_path / "db.duckdb"
    cfg = write_config(tmp_path / "aiwatch.toml", db, [{"url": feed}], **{"fetch.per_host": 2})
    first = spawn(cfg)
    deadline = time.monotonic() + 60
    while sum(route_server.hits[f"/a{i}.html"] for i in range(8)) == 0:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)
    impatient = spawn(cfg, env={"AIWATCH_STORAGE_LOCK_TIMEOUT": "0.5"})
    out, err = impatient.communicate(timeout=60)
    assert impatient.returncode == 1
    assert "another aiwatch run is writing" in err and "Traceback" not in err
    patient = spawn(cfg)  # waits for the first, then finds nothing new
    assert first.wait(timeout=180) == 0
    out, err = patient.communicate(timeout=180)
    assert patient.returncode == 0, err
    assert "0 new articles" in out
    check_consistent(db, 8)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_killed_mid_fetch_then_next_run_completes(route_server, tmp_path, embedder):
    feed = slow_site(route_server, 10, delay=0.5)
    db = tmp_path / "db.duckdb"
    cfg = write_config(tmp_path / "aiwatch.toml", db, [{"url": feed}], **{"fetch.per_host": 1})
    proc = spawn(cfg)
    _kill_when(proc, lambda: sum(route_server.hits[f"/a{i}.html"] for i in range(10)) >= 3)
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT status FROM runs")[1] == [("running",)]  # shown as incomplete
        assert store.query("SELECT count(*) FROM articles")[1][0][0] < 10
    config = local_config(db, [{"url": feed}])
    result = run_pipeline(config)
    assert result.stats.articles_new == 10
    check_consistent(db, 10)
    with Store.open(db, read_only=True) as store:
        assert sorted(r[0] for r in store.query("SELECT status FROM runs")[1]) == ["ok", "running"]


def test_killed_mid_articles_on_a_feed_with_an_etag_loses_nothing(route_server, tmp_path, embedder):
    """A feed that answers 304 to its stored ETag: had the run stored the validators before its
    articles, the next run's 304 would hide the entries the killed run never stored. They are kept
    back until the articles stage is done, so the next run fetches the feed in full and completes
    the work; the run after that gets its 304."""
    items = [{"title": f"Export rule story {i}", "link": route_server.url(f"/e{i}.html"), "guid": f"e{i}",
              "description": f"Summary {i}."} for i in range(10)]
    for i in range(10):
        route_server.add(f"/e{i}.html", Response(200, page(f"Export rule story {i}", [TEXT, f"Detail {i}."]),
                                                 delay=0.5))
    body = rss(items)
    route_server.site = lambda path: (body, "application/rss+xml") if path == "/etag.xml" else None
    feed = route_server.url("/etag.xml")
    db = tmp_path / "db.duckdb"
    cfg = write_config(tmp_path / "aiwatch.toml", db, [{"url": feed}], **{"fetch.per_host": 1})
    proc = spawn(cfg)
    _kill_when(proc, lambda: sum(route_server.hits[f"/e{i}.html"] for i in range(10)) >= 3)
    with Store.open(db, read_only=True) as store:
        before = store.query("SELECT count(*) FROM articles")[1][0][0]
        assert before < 10
        assert store.query("SELECT etag FROM core.feeds")[1] == [(None,)]  # held back
    config = local_config(db, [{"url": feed}])
    result = run_pipeline(config)
    assert result.stats.feeds_ok == 1 and result.stats.articles_new == 10 - before
    check_consistent(db, 10)
    again = run_pipeline(config)
    assert again.stats.feeds_not_modified == 1 and again.stats.articles_new == 0
    check_consistent(db, 10)


def test_killed_mid_embed_then_next_run_completes(corpus_server, tmp_path, embedder):
    db = tmp_path / "db.duckdb"
    feeds = demo_feeds(corpus_server.base_url)
    # the embed stage itself (not the embedding that overlaps fetching), killed between chunks
    cfg = write_config(tmp_path / "aiwatch.toml", db, feeds, **{"embed.batch_size": 8, "embed.overlap": False})
    proc = spawn(cfg)
    lines: list[str] = []

    def embedding_started() -> bool:
        line = proc.stderr.readline()
        lines.append(line)
        return line.startswith("aiwatch: embed: ") and "/" in line  # "embed: 64/150": one batch stored

    _kill_when(proc, embedding_started)
    with Store.open(db, read_only=True) as store:
        stored = store.query("SELECT count(*) FROM core.embeddings")[1][0][0]
        passages = store.query("SELECT count(DISTINCT text_hash) FROM core.passages p JOIN core.articles a "
                               "USING (article_id) WHERE a.duplicate_of IS NULL")[1][0][0]
        assert 0 < stored < passages, lines
        assert store.query("SELECT count(*) FROM core.scores")[1][0][0] == 0
    result = run_pipeline(local_config(db, feeds))
    assert result.stats.passages_embedded == passages - stored  # nothing embedded twice
    assert result.stats.articles_new == 0  # nothing fetched twice: the 304s and the seen entries
    check_consistent(db, 40)


def test_upgrade_from_the_first_schema_keeps_every_row(tmp_path, demo_run):
    first_only = tmp_path / "sql1"
    first_only.mkdir()
    version, name, sql = list_migrations()[0]
    (first_only / name).write_text(sql)
    db = tmp_path / "old.duckdb"
    # a database as the first release made it: schema 001, with its data
    with Store.open(db, migrations=first_only) as store:
        assert store.schema_version() == 1
        store.con.execute(f"ATTACH '{demo_run['config'].database}' AS src (READ_ONLY)")
        for table in ("feeds", "articles", "url_aliases", "entries_seen", "passages", "embeddings", "themes",
                      "scores", "runs", "failures"):
            cols = [r[0] for r in store.con.execute(
                f"SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                f"AND schema_name = 'core' AND table_name = '{table}'").fetchall()]
            store.con.execute(f"INSERT INTO core.{table} ({', '.join(cols)}) "
                              f"SELECT {', '.join(cols)} FROM src.core.{table}")
        before = {t: store.query(f"SELECT count(*) FROM core.{t}")[1][0][0]
                  for t in ("articles", "passages", "embeddings", "scores", "runs", "feeds")}
        matches_before = store.query("SELECT count(*) FROM matches")[1][0][0]
    with Store.open(db) as store:  # every later migration applied
        assert store.schema_version() == list_migrations()[-1][0]
        for table, count in before.items():
            assert store.query(f"SELECT count(*) FROM core.{table}")[1][0][0] == count, table
        assert store.query("SELECT count(*) FROM matches")[1][0][0] == matches_before
        assert store.query("SELECT count(*) FROM stories")[1][0][0] > 0
        assert store.query("SELECT sum(flagged) FROM theme_daily")[1][0][0] == matches_before
    # and the upgraded database carries on: a run over the same feeds adds nothing
    config = local_config(db, demo_feeds(demo_run["base"]))
    assert run_pipeline(config).stats.articles_new == 0


def test_migrations_apply_in_order_on_a_new_database_and_fill_a_gap_in_an_old_one(tmp_path):
    every = list_migrations()
    versions = [v for v, _, _ in every]
    assert versions == sorted(set(versions)) and {11, 12} <= set(versions)  # numbered apart, both kept
    with Store.open(tmp_path / "new.duckdb") as store:
        rows = store.query("SELECT version FROM core.migrations ORDER BY applied_at, version")[1]
        assert [r[0] for r in rows] == versions
        assert store.count("core.used_links") == 0 and store.count("core.meta") == 1
    # a database made where 012 was already there but 011 not yet (main before the web app merged)
    without = tmp_path / "without-011"
    without.mkdir()
    for version, name, sql in every:
        if version != 11:
            (without / name).write_text(sql)
    db = tmp_path / "gap.duckdb"
    Store.open(db, migrations=without).close()
    with Store.open_for_reading(db) as store:  # a reader's open notices the gap and fills it
        assert {r[0] for r in store.query("SELECT version FROM core.migrations")[1]} == set(versions)
        assert store.count("core.used_links") == 0 and store.count("core.meta") == 1

def test_edited_migration_is_refused(tmp_path):
    folder = tmp_path / "sql"
    folder.mkdir()
    version, name, sql = list_migrations()[0]
    (folder / name).write_text(sql)
    Store.open(tmp_path / "db.duckdb", migrations=folder).close()
    (folder / name).write_text(sql + "\n-- an edit\n")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        Store.open(tmp_path / "db.duckdb", migrations=folder)


def test_query_formats_and_errors(demo_copy, capsys):
    cfg, _ = demo_copy
    assert main(["query", "SELECT theme, count(*) AS n FROM matches GROUP BY theme ORDER BY theme",
                 "--format", "json", "--config", str(cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["theme"] for r in rows] == ["chip_sanctions", "gov_ai_policy", "llm_pricing"]
    assert main(["query", "SELECT theme FROM matches LIMIT 2", "--format", "csv", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "theme"
    assert main(["query", "@flagged_this_week", "--config", str(cfg)]) == 0
    assert "rows)" in capsys.readouterr().out
    assert main(["query", "DELETE FROM core.articles", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "read-only" in err and len(err.strip().splitlines()) == 1
    assert main(["query", "SELEC 1", "--config", str(cfg)]) == 1
    assert "syntax error" in capsys.readouterr().err


def test_every_named_query_runs(demo_copy, capsys):
    cfg, _ = demo_copy
    names = sorted(p.stem for p in (ROOT / "sql" / "queries").glob("*.sql"))
    assert len(names) >= 5
    for name in names:
        assert main(["query", f"@{name}", "--config", str(cfg)]) == 0, name
    capsys.readouterr()


def test_search_ranks_by_meaning(demo_copy, embedder, capsys):
    cfg, _ = demo_copy
    assert main(["search", "memory stacks and lithography tools barred from Chinese buyers", "-k", "3",
                 "--format", "json", "--config", str(cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert any("HBM" in r["title"] or "chip" in r["title"].lower() for r in rows)
    assert main(["search", "free chatbot", "--theme", "llm_pricing", "-k", "50", "--format", "json",
                 "--config", str(cfg)]) == 0
    rows = json.loads(capsys.readouterr().out)
    with Store.open(cfg.parent / "copy.duckdb", read_only=True) as store:
        flagged = {r[0] for r in store.query("SELECT url FROM matches WHERE theme = 'llm_pricing'")[1]}
    assert rows and {r["url"] for r in rows} <= flagged


def test_export_parquet_partitioned_by_month(demo_copy, tmp_path, capsys):
    cfg, _ = demo_copy
    out = tmp_path / "pq"
    assert main(["export", "--parquet", str(out), "--config", str(cfg)]) == 0
    parts = list((out / "articles").glob("year=*/month=*/*.parquet"))
    assert parts
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/articles/**/*.parquet', hive_partitioning=true)"
                   ).fetchall()[0][0]
    assert n == 40
    assert (out / "runs.parquet").exists() and (out / "feed_health.parquet").exists()


def test_prune_frees_space_and_keeps_what_was_seen(demo_copy, capsys):
    cfg, db = demo_copy
    size = db.stat().st_size
    assert main(["prune", "--older-than", "0d", "--yes", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "40 articles" in out and "freed" in out
    assert db.stat().st_size < size
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM articles")[1][0][0] == 0
        assert store.query("SELECT count(*) FROM core.entries_seen")[1][0][0] == 40  # not fetched again
    assert main(["prune", "--older-than", "1y", "--config", str(cfg)]) == 2  # a bad age is a usage error
    err = capsys.readouterr().err
    assert "expected an age like 365d" in err and len(err.strip().splitlines()) == 1  # told in one line


def test_serve_starts_a_local_server_and_shows_the_schedule(tmp_path):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{tmp_path / "db.duckdb"}"\n[schedule]\ncron = "30 6 * * *"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIWATCH_", "PREFECT_API"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "aiwatch", "serve", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    seen = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if "is being served" in line:
                break
        text = "".join(seen)
        assert "is being served" in text, text
        assert "'30 6 * * *'" in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1)
    with socket.socket() as s:  # the local Prefect server was stopped with it
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_serve_refuses_a_port_something_else_answers_on(tmp_path, route_server):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{tmp_path / "db.duckdb"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIWATCH_", "PREFECT_API"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    out = subprocess.run([sys.executable, "-m", "aiwatch", "serve", "--config", str(cfg),
                          "--port", str(route_server.port)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and f"port {route_server.port} on 127.0.0.1 is already in use" in out.stderr
    assert "Traceback" not in out.stderr and route_server.hits == {}  # never spoke to it as a Prefect API


def test_a_notebooks_open_connection_is_named_when_it_keeps_a_run_out(tmp_path):
    """README, "Reading while a run writes": a long-lived read-only connection in another process
    keeps the writer out; the writer's message names that process and what to do, and a reader's
    own duckdb.connect inside a write fails at once (it does not wait), as the README says."""
    from aiwatch.errors import StoreBusy

    db = tmp_path / "a.duckdb"
    Store.open(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"con = duckdb.connect({str(db)!r}, read_only=True)\n"
                               "print('open', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreBusy) as caught:
            Store.open(db, lock_timeout=1)
        message = str(caught.value)
        assert f"PID {holder.pid}" in message and "close it, or query a copy of the file" in message
    finally:
        holder.kill()
        holder.wait()
    writer = Store.open(db)
    try:
        reader = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}, read_only=True)"],
                                capture_output=True, text=True, timeout=60)
        assert reader.returncode != 0 and "Could not set lock" in reader.stderr
    finally:
        writer.close()
