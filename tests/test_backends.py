"""Embedding backends (torch, onnx, onnx-int8), the throughput plumbing and run timings."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from conftest import local_config
from routes import Response, page, rss

from aiwatch.cli import main
from aiwatch.relevance.embed import get_embedder, model_id
from aiwatch.errors import AiwatchError
from aiwatch.articles.stage import interleave_hosts
from aiwatch.pipeline import run_pipeline
from aiwatch.records import FeedEntry, StoryCandidate
from aiwatch.relevance.stories import place_in_stories
from aiwatch.store import Store

TEXTS = [
    "Washington asks allies to stop shipping high-bandwidth memory to Chinese chipmakers.",
    "A cloud provider cut the price of its largest language model's API by 90 percent.",
    "The State Council set targets for putting AI into factories, hospitals and schools by 2027.",
    "The local football club signed a new goalkeeper on a three-year contract.",
    "short",
    " ".join(["A long passage about export licences for lithography tools and memory chips."] * 40),
]


def _feed(route_server, n: int = 3) -> list[dict]:
    items = []
    for i in range(n):
        path = f"/story-{i}.html"
        route_server.add(path, Response(200, page(f"Export rule {i} for memory chips",
                                                  [f"Paragraph {j} of story {i} about HBM export licences to China "
                                                   f"and what chipmakers said about rule number {i}." for j in range(6)])))
        items.append({"title": f"Export rule {i} for memory chips", "link": route_server.url(path), "guid": str(i),
                      "description": f"Story {i}."})
    return [{"url": route_server.add("/feed.xml", Response(200, rss(items))), "name": "Wire"}]


def test_onnx_backends_agree_with_torch(embedder):
    assert embedder.backend == "onnx-int8"  # the default
    torch_vecs = get_embedder("torch").embed(TEXTS)
    fp32 = get_embedder("onnx").embed(TEXTS)
    int8 = embedder.embed(TEXTS)
    for vecs in (torch_vecs, fp32, int8):
        assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert (fp32 * torch_vecs).sum(1).min() > 0.999  # the same model, exported
    cos = (int8 * torch_vecs).sum(1)
    assert cos.min() > 0.95 and cos.mean() > 0.98  # measured: mean 0.99, min 0.976 on 400 news passages
    # batching and the order of texts do not change a text's vector
    assert np.allclose(embedder.embed(TEXTS[::-1])[::-1], int8, atol=1e-5)


def test_unknown_backend_is_a_config_error(tmp_path):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text('[embed]\nbackend = "tensorflow"\n')
    assert main(["themes", "list", "--config", str(cfg)]) != 0


def test_onnx_run_never_imports_torch(route_server, tmp_path, embedder):
    """An ONNX run does its whole job (fetch, extract, embed, score, digest) without torch."""
    config = local_config(tmp_path / "db.duckdb", _feed(route_server))
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{config.database}"\n[fetch]\nallow_private_addresses = true\n'
                   f'host_delay = 0.0\n[digest]\ndir = "{tmp_path}"\n'
                   f'[[feeds]]\nurl = "{config.feeds[0].url}"\n')
    code = ("import sys; from aiwatch.cli import main; rc = main(['run', '--no-prefect', '--config', sys.argv[1]]); "
            "print('torch' in sys.modules, 'transformers' in sys.modules, 'sentence_transformers' in sys.modules); "
            "sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False False False"
    with Store.open(config.database, read_only=True) as store:
        # MiniLM's vectors by the configured backend only (the second model's are kept apart by their id)
        assert {m for m in store.embedding_models() if m.startswith("all-MiniLM")} == {model_id("onnx-int8")}
        assert store.query("SELECT count(*) FROM core.scores")[1][0][0] == 3 * len(config.themes)


def test_backends_are_never_mixed_and_reembed_switches(route_server, tmp_path, embedder, capsys):
    db = tmp_path / "db.duckdb"
    torch_config = local_config(db, _feed(route_server), **{"embed.backend": "torch"})
    run_pipeline(torch_config)
    with Store.open(db, read_only=True) as store:
        assert {m for m in store.embedding_models() if m.startswith("all-MiniLM")} == {model_id("torch")}
        flagged_torch = store.query("SELECT article_id, theme, flagged, score FROM core.scores ORDER BY 1, 2")[1]
    int8_config = local_config(db, _feed(route_server))
    with pytest.raises(AiwatchError, match=r"another embedding backend .*aiwatch reembed"):
        run_pipeline(int8_config)
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n')
    assert main(["search", "HBM export licences", "--config", str(cfg)]) != 0
    assert "reembed" in capsys.readouterr().err
    assert main(["reembed", "--config", str(cfg)]) == 0
    assert "dropped" in capsys.readouterr().out
    with Store.open(db, read_only=True) as store:
        assert {m for m in store.embedding_models() if m.startswith("all-MiniLM")} == {model_id("onnx-int8")}
        n_passages = store.query("SELECT count(DISTINCT text_hash) FROM core.passages")[1][0][0]
        n_vectors = store.query("SELECT count(*) FROM core.embeddings e JOIN (SELECT DISTINCT text_hash "
                                "FROM core.passages) USING (text_hash) WHERE e.model LIKE 'all-MiniLM%'")[1][0][0]
        assert n_vectors == n_passages  # every passage embedded again, once
        flagged_int8 = store.query("SELECT article_id, theme, flagged, score FROM core.scores ORDER BY 1, 2")[1]
        # every article-theme pair scored again from the new vectors; where both backends are clear of
        # the threshold the decisions agree (a borderline article may take a second opinion on one
        # backend and not the other)
        assert [r[:2] for r in flagged_int8] == [r[:2] for r in flagged_torch]
        clear = [(a, b) for a, b in zip(flagged_torch, flagged_int8) if abs(a[3] - 0.4) >= 0.2 and abs(b[3] - 0.4) >= 0.2]
        assert len(clear) >= len(flagged_int8) // 2 and all(a[2] == b[2] for a, b in clear)
    assert main(["search", "HBM export licences", "--config", str(cfg)]) == 0
    result = run_pipeline(int8_config)  # runs again with the new backend; nothing left to embed
    assert result.stats.passages_embedded == 0


def test_entries_take_turns_across_hosts():
    def entry(host: str, i: int) -> FeedEntry:
        return FeedEntry("f", f"{host}{i}", f"https://{host}/{i}", "t", "", "", None)
    entries = [entry("a.example", i) for i in range(3)] + [entry("b.example", i) for i in range(2)] + \
              [entry("c.example", 0)]
    order = [e.entry_id for e in interleave_hosts(entries)]
    assert order == ["a.example0", "b.example0", "c.example0", "a.example1", "b.example1", "a.example2"]
    assert sorted(order) == sorted(e.entry_id for e in entries)  # nothing lost, nothing repeated


def test_story_placement_in_blocks_matches_one_at_a_time():
    """Blocked matrix products place articles exactly as comparing them one by one would,
    including an article that joins a story started earlier in the same block."""
    rng = np.random.default_rng(7)
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    centres = rng.standard_normal((6, 384)).astype(np.float32)
    todo = []
    for i in range(40):
        v = centres[i % 6] + 0.15 * rng.standard_normal(384).astype(np.float32)
        todo.append(StoryCandidate(f"a{i:02d}", f"headline {i % 6}", base + timedelta(hours=i * 3),
                                   v / np.linalg.norm(v)))
    one_by_one = place_in_stories(todo, [], 72 * 3600, 0.85, block=1)
    blocked = place_in_stories(todo, [], 72 * 3600, 0.85, block=16)
    assert blocked == one_by_one
    stories = {p.story_id for p in blocked}
    assert 6 <= len(stories) < 40  # copies joined, and the 72 h window split the long-running ones
    late = next(p for p in blocked if p.article_id == "a39")
    assert late.story_id != "a03"  # 108 h after its centre's first article: outside the window


def test_run_records_stage_times_and_memory(route_server, tmp_path, embedder):
    config = local_config(tmp_path / "db.duckdb", _feed(route_server))
    run_pipeline(config)
    with Store.open(config.database, read_only=True) as store:
        seconds, rss_mb, embedded = store.query(
            "SELECT stage_seconds, peak_rss_mb, passages_embedded FROM runs")[1][0]
    seconds = json.loads(seconds)
    assert {"feeds", "articles", "fetch", "extract", "dedup", "store", "embed", "stories", "score",
            "digest"} <= seconds.keys()
    assert all(v >= 0 for v in seconds.values())
    assert seconds["embed_overlapped"] + 0 <= embedded and embedded > 0
    assert rss_mb > 50


def test_overlapped_embedding_never_calls_duckdb_off_the_stage_thread(route_server, tmp_path, embedder, monkeypatch):
    # The workers embed; the vectors are stored by the articles stage between batches, on its own
    # thread (two DuckDB cursors inserting from two threads can crash the process).
    import threading
    from aiwatch.articles import stage
    calls: list[str] = []
    real_save = Store.save_embeddings

    def save(self, hashes, *args, **kwargs):
        calls.append(threading.current_thread().name)
        return real_save(self, hashes, *args, **kwargs)

    monkeypatch.setattr(Store, "save_embeddings", save)
    monkeypatch.setattr(Store, "cursor", lambda self: pytest.fail("no cursor is handed to another thread"))
    monkeypatch.setattr(stage, "ARTICLE_BATCH", 2)  # several batches: vectors stored between them
    config = local_config(tmp_path / "db.duckdb", _feed(route_server, 7))
    assert config.embed.overlap  # the default
    result = run_pipeline(config)
    assert calls and not any(name.startswith("aiwatch-embed-") for name in calls)
    with Store.open(config.database, read_only=True) as store:
        missing = store.query("SELECT count(*) FROM (SELECT DISTINCT text_hash FROM core.passages) p "
                              "ANTI JOIN core.embeddings e USING (text_hash)")[1][0][0]
        seconds = json.loads(store.query("SELECT stage_seconds FROM runs")[1][0][0])
    assert missing == 0 and result.stats.articles_new == 7
    assert seconds["embed_overlapped"] > 0  # embedded while the pages were fetched
