"""The README's examples, run as a new user would after `aiwatch demo`, needing nothing beyond
127.0.0.1, with the output they claim checked (as sqlite-utils tests its documentation): a
false claim in the README fails CI."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
from pathlib import Path

import duckdb
import pytest

from aiwatch.cli import main
from aiwatch.cli.running import DEMO_PORT

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
# Commands of the README's command lists that this test does not run, and where they are tested.
NOT_RUN_HERE = {
    "init": "writes a new aiwatch.toml: tests/test_cli.py",
    "run": "fetches the config's feeds through Prefect: tests/test_flow.py",
    "serve": "runs until stopped: tests/test_flow.py",
    "digest --send": "needs SMTP and webhook receivers: tests/test_digest.py",
}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def commands(text: str) -> list[tuple[list[str], str]]:
    """(argv without "aiwatch", the comment) of each `aiwatch ...` line of the sh blocks."""
    out = []
    for block in blocks(text, "sh"):
        for line in block.splitlines():
            if line.startswith("aiwatch "):
                out.append((shlex.split(line, comments=True)[1:], line.partition(" #")[2].strip()))
    return out


@pytest.fixture
def demo_folder(demo_run, tmp_path, monkeypatch):
    """A copy of the demo database in the current folder, with an aiwatch.toml naming it and the
    demo's feeds (served on 127.0.0.1 for the whole session)."""
    shutil.copy(demo_run["config"].database, tmp_path / "aiwatch.duckdb")
    feeds = "".join(f'[[feeds]]\nurl = "{f.url}"\nname = "{f.name}"\n\n' for f in demo_run["config"].feeds)
    (tmp_path / "aiwatch.toml").write_text(
        f'[storage]\ndatabase = "{tmp_path / "aiwatch.duckdb"}"\n[digest]\ndir = "{tmp_path}"\n'
        f'[fetch]\nallow_private_addresses = true\nhost_delay = 0.0\n\n{feeds}')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, argv: list[str]) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, (argv, out.err[-800:])
    return out.out


@pytest.mark.parametrize("title", ["Daily use", "The digest"])
def test_commands_do_what_their_comments_say(title, demo_folder, demo_run, capsys):
    """Each section's commands on a fresh copy of the demo database, in the README's order."""
    listed = commands(section(title))
    names = {" ".join(argv[:2]) if argv[:2] == ["digest", "--send"] else argv[0] for argv, _ in listed}
    assert names >= ({"digest", "feeds", "query", "search", "export", "prune", "reextract", "reembed"}
                     if title == "Daily use" else {"digest", "digest --send"})
    db = demo_folder / "aiwatch.duckdb"

    def count(sql):
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(sql).fetchone()[0]

    articles = count("SELECT count(*) FROM articles")
    for argv, comment in listed:
        key = "digest --send" if argv[:2] == ["digest", "--send"] else argv[0]
        if key in NOT_RUN_HERE:
            continue
        if "RUN_ID" in argv:  # the latest run that flagged anything (reembed re-scores in a run of its own)
            run_id = count("SELECT run_id FROM runs WHERE flagged > 0 ORDER BY started_at DESC LIMIT 1")
            argv = [a.replace("RUN_ID", run_id) for a in argv]
        before = {p.name for p in demo_folder.glob("digest-*")}
        out = run(capsys, argv)
        new_files = {p.name for p in demo_folder.glob("digest-*")} - before
        if argv[0] == "digest" and "--run" in argv:  # "re-render what one run flagged"
            md = (demo_folder / f"digest-{run_id}.md").read_text("utf-8")
            assert "Also reported by" in md and "## Chip export controls" in md
        elif argv[0] == "digest" and "--since" in argv:  # "a report, sent before or not"
            assert new_files and any(n.endswith((".md", ".html")) for n in new_files), out
        elif argv == ["digest"]:  # "what is new since the last digest": written, listing stories or a quiet day
            assert new_files, out
        elif argv[0] == "feeds":
            for f in demo_run["config"].feeds:
                assert f.url in out
        elif argv[0] == "query" and argv[1].startswith("@"):
            assert out.splitlines()[0].count(",") >= 2  # a CSV header
        elif argv[0] == "query":
            assert "theme" in out.splitlines()[0] and "US blacklists 27 Chinese firms" in out
        elif argv[0] == "search":
            assert "-k" in argv and 1 <= len([ln for ln in out.splitlines() if ln.strip()]) - 1 <= 5 * 3, out
        elif argv[0] == "export":
            export = demo_folder / "export"
            assert list(export.glob("articles/year=*/month=*/*.parquet"))
            for name in ("passages", "digests", "runs", "feed_health", "stories", "theme_daily"):
                assert (export / f"{name}.parquet").exists(), name
        elif argv[0] == "prune":  # everything is days old: nothing older than a year to delete
            assert count("SELECT count(*) FROM articles") == articles
        elif argv[0] in ("reextract", "reembed"):
            assert count("SELECT count(*) FROM articles") == articles
            assert count("SELECT count(*) FROM matches") > 0
        else:
            pytest.fail(f"README command not checked: aiwatch {' '.join(argv)}  # {comment}")


def test_database_examples_run_on_the_demo_database_and_its_export(demo_folder, capsys):
    run(capsys, ["export", "--parquet", "export/"])
    with duckdb.connect(str(demo_folder / "aiwatch.duckdb"), read_only=True) as con:
        for sql in blocks(README, "sql"):
            assert con.execute(sql).fetchall(), sql
    (python,) = blocks(section("The database"), "python")
    scope: dict = {}
    exec(compile(python, "README.md", "exec"), scope)
    rows = scope["rows"]
    assert 1 <= len(rows) <= 5 and rows[0][1] > rows[-1][1] - 1e-6
    assert any("chip" in title.lower() or "HBM" in title for title, _ in rows[:3]), rows
    capsys.readouterr()


def test_demo_prints_what_the_readme_shows_and_a_second_run_fetches_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", DEMO_PORT)) == 0:
            pytest.skip(f"port {DEMO_PORT} is in use by something else")
    out = run(capsys, ["demo", "--no-prefect"])
    run_id = RUN_ID.search(out).group()
    sample = blocks(section("Two commands"), "text")[0]
    lines = out.splitlines()
    at = 0
    for want in sample.splitlines():
        if want.strip() == "...":
            continue
        want = RUN_ID.sub(run_id, want).replace("/home/me/news", str(tmp_path))
        assert want in lines[at:], (want, out)
        at = lines.index(want, at) + 1

    again = run(capsys, ["demo", "--no-prefect"])  # "nothing is fetched again ... a quiet day"
    assert "feeds 6 (0 ok, 5 unchanged, 0 failed, 1 backing off); 0 new articles" in again, again
    second = RUN_ID.search(again).group()
    assert "Quiet day" in (tmp_path / f"digest-{second}.md").read_text("utf-8")

    with socket.socket() as holder:  # the port the database was made with is taken: a clear stop
        holder.bind(("127.0.0.1", DEMO_PORT))
        holder.listen()
        assert main(["demo", "--no-prefect"]) == 2
        err = capsys.readouterr().err
        assert f"port {DEMO_PORT}" in err and "new --out folder" in err and err.count("\n") == 1
