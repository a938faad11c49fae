"""The command line: help with examples, one-line errors, init, digest, and the docs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiwatch.cli import cli, main
from aiwatch.config import SETTINGS, load_config
from aiwatch.configfile import config_template

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = tuple(sorted(cli.commands))  # the CLI's own list: a new command is checked without editing this file


def aiwatch(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWATCH_")}
    return subprocess.run([sys.executable, "-m", "aiwatch", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    out = aiwatch(command, "--help")
    assert out.returncode == 0
    assert "example:" in out.stdout and f"aiwatch {command}" in out.stdout
    example = out.stdout.split("example:\n", 1)[1].splitlines()
    lines = [ln for ln in example if ln.strip().startswith("aiwatch ")]
    assert lines and len({len(ln) - len(ln.lstrip()) for ln in lines}) == 1, example  # one indent for every line


def test_every_command_and_action_takes_config():
    import click
    commands = [(name, cmd) for name, cmd in cli.commands.items()]
    commands += [(f"{name} {sub}", c) for name, cmd in cli.commands.items() if isinstance(cmd, click.Group)
                 for sub, c in cmd.commands.items()]
    assert len(commands) > len(cli.commands)
    for name, cmd in commands:
        assert any("--config" in p.opts for p in cmd.params), name


@pytest.mark.parametrize("toml, message", [
    ('[fetch]\ntimeout = "abc"\n', "config: fetch.timeout: expected a number, got 'abc'"),
    ("[fetch]\ntimout = 5\n", "config: fetch.timout: unknown setting (did you mean fetch.timeout?)"),
    ("[digest.emial]\nhost = 'x'\n", "config: digest.emial: unknown table (did you mean digest.email?)"),
    ("[storage]\ndatabase = 3\n", "config: storage.database: expected a non-empty string"),
    ('[[feeds]]\nurl = "ftp://x.example/feed"\n', "config: feeds[0].url: expected an http:// or https:// URL"),
    ('[[themes]]\nname = "t"\ndescription = "a theme to watch"\nthreshold = 2\n',
     "config: themes[0].threshold: expected a number from 0 to 1"),
    ("[fetch\n", "not valid TOML"),
    ('[schedule]\ncron = "daily"\n', "config: schedule.cron: must be a 5-field cron expression"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, toml, message):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(toml)
    out = aiwatch("run", "--config", str(cfg), "--no-prefect")
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_config_file_is_one_line(tmp_path):
    out = aiwatch("digest", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr


def test_env_overrides_a_setting():
    cfg = load_config(None, environ={"AIWATCH_FETCH_TIMEOUT": "7.5", "AIWATCH_FETCH_ARTICLES": "false"})
    assert cfg.fetch.timeout == 7.5 and cfg.fetch.articles is False


def test_a_misspelled_environment_variable_is_named_with_the_nearest_setting(tmp_path):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text("[digest.email]\npassword_env = \"AIWATCH_MY_SMTP_SECRET\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWATCH_")}
    env.update(AIWATCH_FETCH_TIMOUT="5", AIWATCH_MY_SMTP_SECRET="s3cret")
    out = subprocess.run([sys.executable, "-m", "aiwatch", "themes", "--config", str(cfg)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("environment variable AIWATCH_FETCH_TIMOUT is not an aiwatch setting "
            "(did you mean AIWATCH_FETCH_TIMEOUT?); ignored") in out.stderr
    assert "AIWATCH_MY_SMTP_SECRET" not in out.stderr  # the variable a *_env setting names is no typo


def test_unknown_run_or_theme_is_an_error_not_an_empty_report(demo_copy, tmp_path):
    cfg, db = demo_copy
    out = aiwatch("digest", "--config", str(cfg), "--run", "nosuchrun", "--out", str(tmp_path / "d"))
    assert out.returncode == 2 and "no run 'nosuchrun'" in out.stderr and "(latest: " in out.stderr
    assert not (tmp_path / "d").exists()  # no empty files written
    out = aiwatch("search", "export controls", "--theme", "nosuch", "--config", str(cfg))
    assert out.returncode == 2 and "no theme named 'nosuch'" in out.stderr
    assert "Traceback" not in out.stderr


def test_pruning_everything_asks_first(demo_copy):
    cfg, db = demo_copy
    out = aiwatch("prune", "--older-than", "0d", "--config", str(cfg))  # stdin is not a terminal: refused
    assert out.returncode == 2 and "this would delete every stored article; add --yes" in out.stderr
    from aiwatch.store import Store
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM articles")[1][0][0] > 0
    out = aiwatch("prune", "--older-than", "0d", "--yes", "--config", str(cfg))
    assert out.returncode == 0 and "pruned everything" in out.stdout
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM articles")[1][0][0] == 0


def test_init_writes_a_template_equal_to_the_defaults(tmp_path):
    path = tmp_path / "aiwatch.toml"
    assert main(["init", "--config", str(path)]) == 0
    written, defaults = load_config(path), load_config(None)
    assert dict(written.values) == dict(defaults.values)
    assert written.feeds == defaults.feeds and written.themes == defaults.themes
    assert main(["init", "--config", str(path)]) == 2  # no silent overwrite


def test_digest_rerenders_from_the_database(demo_run, tmp_path, capsys):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{demo_run["config"].database}"\n[digest]\ndir = "{tmp_path}"\n')
    first_run = demo_run["first"].stats.run_id
    assert main(["digest", "--config", str(cfg), "--run", first_run]) == 0
    md = (tmp_path / f"digest-{first_run}.md").read_text("utf-8")
    assert "Also reported by" in md and "## Chip export controls" in md
    assert main(["digest", "--config", str(cfg), "--since", "2000-01-01", "--out", str(tmp_path / "all")]) == 0
    assert any(p.suffix == ".html" for p in (tmp_path / "all").iterdir())


def test_readme_documents_every_setting_command_and_view():
    readme = (ROOT / "README.md").read_text("utf-8")
    for s in SETTINGS:
        section, key = s.key.split(".", 1)
        assert re.search(rf"`\[{section}\]` *`?{re.escape(key)}`?|`{re.escape(s.key)}`", readme), s.key
    for command in COMMANDS:
        assert f"aiwatch {command}" in readme, command
    for view in ("articles", "matches", "runs", "feed_health"):
        assert f"`{view}`" in readme, view


def test_template_documents_every_setting():
    text = config_template()
    for s in SETTINGS:
        assert f"\n{s.name} = " in text, s.key


def test_readme_example_queries_run(demo_run):
    import duckdb
    queries = [q for q in re.findall(r"```sql\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S)
               if "'export/" not in q]  # the Parquet export's query: tests/test_readme.py
    assert len(queries) >= 5
    con = duckdb.connect(str(demo_run["config"].database), read_only=True)
    try:
        for q in queries:
            assert con.execute(q).fetchall(), q
    finally:
        con.close()


def test_prefect_home_is_created_on_a_fresh_machine(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", "from aiwatch.prefect_env import configure_prefect_env as c; c()"],
                   check=True, env=env, timeout=60)
    assert (tmp_path / ".aiwatch" / "prefect").is_dir()


def test_schema_reference_documents_every_view_column(demo_run):
    doc = (ROOT / "docs" / "schema.md").read_text("utf-8")
    with duckdb_connect(demo_run["config"].database) as con:
        for view in ("articles", "matches", "stories", "theme_daily", "feed_health", "runs", "digests"):
            section = doc.split(f"## `{view}`", 1)[1].split("\n## ", 1)[0]
            for (column, *_rest) in con.execute(f"DESCRIBE {view}").fetchall():
                assert f"| `{column}` |" in section, (view, column)


def duckdb_connect(path):
    import duckdb
    return duckdb.connect(str(path), read_only=True)


def test_config_edits_write_valid_toml_and_keep_comments(tmp_path):
    """Feed titles with newlines, quotes or backslashes are written as valid TOML (the old
    hand-written quoting wrote a raw newline), and edits keep the user's comments."""
    from aiwatch.configfile import add_feeds, set_theme_thresholds
    from aiwatch.config import FeedSpec
    path = tmp_path / "aiwatch.toml"
    path.write_text('# my notes on this setup\n[fetch]\ntimeout = 9  # slow sites\n\n'
                    '[[feeds]]\nurl = "https://a.example/feed"  # the first one\n', "utf-8")
    odd = "Tech\nNews \"daily\" \\ more"
    _, added = add_feeds(path, [FeedSpec("https://b.example/feed", odd), FeedSpec("https://a.example/feed")])
    assert [f.url for f in added] == ["https://b.example/feed"]
    config = load_config(path)
    assert [f.name for f in config.feeds] == [None, odd] and config.fetch.timeout == 9
    set_theme_thresholds(path, config.themes, {"llm_pricing": 0.61})
    text = path.read_text("utf-8")
    assert "# my notes on this setup" in text and "# slow sites" in text and "# the first one" in text
    assert {t.name: t.threshold for t in load_config(path).themes}["llm_pricing"] == 0.61
