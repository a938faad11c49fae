"""Shared fixtures: real HTTP servers on 127.0.0.1, real DuckDB files, the real model.

The model is loaded once per pytest run (``embedder``), and the demo pipeline runs once per
session (``demo_run``); tests that need their own state build it in ``tmp_path``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports Prefect or transformers.
_PREFECT_HOME = tempfile.mkdtemp(prefix="aiwatch-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ.pop("PREFECT_API_URL", None)
os.environ["HF_HUB_OFFLINE"] = "1"
for key in [k for k in os.environ if k.startswith("AIWATCH_") and k != "AIWATCH_UPDATE_DOCS_SCREENSHOT"]:
    del os.environ[key]

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from routes import RouteServer  # noqa: E402

from aiwatch.config import Config, FeedSpec, load_config  # noqa: E402
from aiwatch.demo import CorpusServer, demo_feeds, manifest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def embedder():
    from aiwatch.relevance.embed import get_embedder
    return get_embedder()


@pytest.fixture(scope="session")
def corpus_server():
    with CorpusServer() as server:
        yield server


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test server, started once per session (it takes 16 to 18 s)."""
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def route_server():
    with RouteServer() as server:
        yield server


def local_config(db: Path, feeds: list[dict] | list[FeedSpec], **settings) -> Config:
    """Default themes and settings, a database in a test folder, local addresses allowed."""
    base = load_config(None)
    # no retries: a test of retrying says so (pipeline tests would otherwise sleep through backoffs)
    merged = {"storage.database": str(db), "digest.dir": str(db.parent),
              "fetch.allow_private_addresses": True, "fetch.timeout": 5.0, "fetch.host_delay": 0.0,
              "fetch.retries": 0}
    merged.update(settings)
    specs = tuple(f if isinstance(f, FeedSpec) else FeedSpec(f["url"], f.get("name")) for f in feeds)
    return base.replace(**merged).with_feeds(specs)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, corpus_server, embedder):
    """The demo corpus through the whole pipeline (no Prefect), twice on one database."""
    from aiwatch.pipeline import run_pipeline
    from aiwatch.store import Store

    folder = tmp_path_factory.mktemp("demo")
    config = local_config(folder / "aiwatch.duckdb", demo_feeds(corpus_server.base_url))
    first = run_pipeline(config)
    with Store.open(config.database, read_only=True) as store:
        counts_after_first = {t: store.query(f"SELECT count(*) FROM core.{t}")[1][0][0]
                              for t in ("articles", "passages", "embeddings", "scores")}
    requests_before_second = len(corpus_server.requests)
    second = run_pipeline(config)
    second_requests = corpus_server.requests[requests_before_second:]
    return {
        "config": config, "first": first, "second": second, "counts_after_first": counts_after_first,
        "second_requests": second_requests, "manifest": manifest(), "base": corpus_server.base_url,
    }


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the demo database, with a config file pointing at it: (config, db)."""
    import shutil
    db = tmp_path / "copy.duckdb"
    shutil.copy(demo_run["config"].database, db)
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n')
    return cfg, db
