"""The Prefect flow end to end under prefect_test_harness (one harness per session)."""

from __future__ import annotations

import pytest
from conftest import local_config

from aiwatch.demo import demo_feeds
from aiwatch.store import Store

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_daily_flow_runs_end_to_end(prefect_harness, corpus_server, embedder, tmp_path):
    from aiwatch.flow import daily

    db = tmp_path / "flow.duckdb"
    settings = dict(local_config(db, []).values)
    settings = {k: v for k, v in settings.items()
                if k in ("storage.database", "digest.dir", "fetch.allow_private_addresses")}
    state = daily(settings=settings, feeds=demo_feeds(corpus_server.base_url), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result.stats.articles_new == 40 and result.stats.feeds_failed == 1
    themes = {t for t, _, _ in result.flagged}
    assert themes == {"chip_sanctions", "llm_pricing", "gov_ai_policy"}
    assert all(p.exists() for p in result.digest_files)
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT status FROM runs")[1] == [("partial",)]
        assert store.query("SELECT count(*) FROM matches")[1][0][0] == len(result.flagged)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["aiwatch-run-summary"])))
        assert artifacts and f"aiwatch run {result.stats.run_id}" in artifacts[-1].data
        assert "| broken" not in artifacts[-1].data and "## Failures" in artifacts[-1].data
        runs = client.read_flow_runs()
        names = {client.read_flow(r.flow_id).name for r in runs}
    assert {"aiwatch-daily", "aiwatch-digest"} <= names  # the digest is a chained subflow
