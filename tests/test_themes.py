"""Theme scoring on small texts written by the project, and the theme commands on a stored database."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aiwatch.cli import main
from aiwatch.config import load_config
from aiwatch.relevance.scoring import score_articles
from aiwatch.relevance.score import ThemeVectors, reads_as_english, score_article, theme_texts
from aiwatch.store import Store
from aiwatch.text import passages
from aiwatch.relevance.themes import Theme

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def themes():
    return load_config(None).themes


@pytest.fixture(scope="module")
def score(embedder, themes):
    texts = sorted({t for th in themes for t in theme_texts(th)})
    vectors = dict(zip(texts, embedder.embed(texts)))
    tvs = {tv.theme.name: tv for tv in ThemeVectors.build_all(themes, vectors)}

    def run(theme: str, title: str, text: str = "") -> float:
        ps = passages(title, text)
        return score_article(embedder.embed(ps), ps, tvs[theme]).score
    return run


def test_chip_rule_beats_chip_earnings(score):
    rule = score("chip_sanctions", "Washington bars shipments of AI accelerators and memory stacks to Chinese buyers",
                 "The new licence rule covers high-bandwidth memory and chipmaking tools bound for China.")
    earnings = score("chip_sanctions", "Chipmaker posts record quarter on data-centre demand",
                     "Revenue rose 40 percent as cloud customers bought more accelerators; margins widened.")
    assert rule >= 0.48 > earnings


def test_non_ai_api_price_is_not_llm_pricing(score):
    social = score("llm_pricing", "Photo-sharing app raises the price of its developer API",
                   "Third-party clients will pay $500 a month for access to posts and images.")
    model = score("llm_pricing", "Model maker cuts what developers pay for its chatbot by 80 percent",
                  "The new rate for its large language model is a fraction of last year's price.")
    assert model >= 0.40 > social


def test_ai_launch_without_a_price_is_held_back(score):
    launch = score("llm_pricing", "Lab unveils a chatbot that reasons through long documents",
                   "The model reads whole reports and answers questions about them, the company said.")
    assert launch < 0.40


def test_scoring_is_order_independent(embedder, themes, score):
    title, text = "Ministry sets AI plan", "The cabinet approved a national plan to fund computing power for AI."
    ps = passages(title, text)
    vecs = embedder.embed(ps)
    tv = ThemeVectors.build_all(themes, dict(zip(
        sorted({t for th in themes for t in theme_texts(th)}),
        embedder.embed(sorted({t for th in themes for t in theme_texts(th)})))))[2]
    forward = score_article(vecs, ps, tv).score
    reversed_ = score_article(vecs[::-1], ps[::-1], tv).score
    assert forward == pytest.approx(reversed_)


def test_other_languages_use_the_theme_terms(score):
    assert not reads_as_english("美国商务部宣布新的出口管制措施")
    zh = score("chip_sanctions", "美国将多家中国芯片企业列入实体清单", "新规限制高带宽内存和光刻机对华出口。")
    assert zh >= 0.48
    zh_off = score("chip_sanctions", "国内芯片企业发布财报", "公司营收同比增长，利润创新高。")
    assert zh_off < 0.48


def test_must_have_and_must_not_terms(embedder):
    base = Theme("t", "Prices of AI chatbots and model subscriptions", 0.4, ("A chatbot cuts its monthly price",))
    gated = replace(base, must_have=("chatbot",), must_not=("crypto",))
    texts = [base.description, *base.positive_examples]
    vectors = dict(zip(texts, embedder.embed(texts)))
    plain, strict = ThemeVectors.build(base, vectors), ThemeVectors.build(gated, vectors)
    ps = passages("Assistant app halves its monthly price", "The assistant now costs $10 a month.")
    v = embedder.embed(ps)
    assert score_article(v, ps, strict).score == pytest.approx(score_article(v, ps, plain).score * 0.5)
    ps2 = passages("Chatbot halves its monthly price", "The chatbot now costs $10 a month, or 10 crypto tokens.")
    r = score_article(embedder.embed(ps2), ps2, strict)
    assert r.score == pytest.approx(r.semantic * 0.5) and "chatbot" in r.terms


def test_theme_edit_changes_version_and_rescore_updates_matches(demo_copy, embedder, capsys):
    cfg, db = demo_copy
    assert main(["themes", "calibrate", "--labels", str(ROOT / "tests" / "data" / "challenge"),
                 "--precision", "llm_pricing=0.99", "--config", str(cfg)]) == 0
    config = load_config(cfg)
    llm = next(t for t in config.themes if t.name == "llm_pricing")
    default = next(t for t in load_config(None).themes if t.name == "llm_pricing")
    assert llm.threshold != default.threshold and llm.version != default.version
    with Store.open(db, read_only=True) as store:
        before = store.query("SELECT count(*) FROM matches WHERE theme = 'llm_pricing'")[1][0][0]
        embedded = store.query("SELECT count(*) FROM core.embeddings WHERE model LIKE 'all-MiniLM%'")[1][0][0]
    assert before > 0
    capsys.readouterr()
    assert main(["rescore", "--theme", "llm_pricing", "--config", str(cfg)]) == 0
    assert "re-scored 39" in capsys.readouterr().out
    with Store.open(db, read_only=True) as store:
        after = store.query("SELECT count(*) FROM matches WHERE theme = 'llm_pricing'")[1][0][0]
        versions = {r[0] for r in store.query("SELECT theme_version FROM matches WHERE theme = 'llm_pricing'")[1]}
        assert store.query("SELECT count(*) FROM core.embeddings WHERE model LIKE 'all-MiniLM%'")[1][0][0] == embedded  # nothing re-embedded
    assert versions <= {llm.version} and after <= before


def test_new_theme_backfills_over_stored_articles(demo_copy, embedder, capsys, tmp_path):
    cfg, db = demo_copy
    example = tmp_path / "example.txt"
    example.write_text("Memory makers told to halt HBM shipments to China\n"
                       "Regulators ordered memory makers to stop shipping high-bandwidth memory stacks to Chinese "
                       "buyers of AI servers, widening curbs on chips and chipmaking tools.\n")
    assert main(["themes", "add", "hbm_curbs", "--from-file", str(example), "--config", str(cfg)]) == 0
    config = load_config(cfg)
    new = next(t for t in config.themes if t.name == "hbm_curbs")
    assert new.positive_examples and new.key_terms and len(config.themes) == 4
    result = score_articles(config, "backfill")
    assert result.scored == 39  # only the new theme had work: every stored article scored against it
    with Store.open(db, read_only=True) as store:
        flagged = [r[0] for r in store.query("SELECT title FROM matches WHERE theme = 'hbm_curbs'")[1]]
    assert any("HBM" in t for t in flagged)


def test_feedback_no_stops_an_article_being_flagged(demo_copy, embedder, capsys):
    cfg, db = demo_copy
    with Store.open(db, read_only=True) as store:
        url, title = store.query("SELECT url, title FROM matches WHERE theme = 'chip_sanctions' "
                                 "ORDER BY score DESC LIMIT 1")[1][0]
    assert main(["feedback", url, "chip_sanctions", "--no", "--config", str(cfg)]) == 0
    with Store.open(db, read_only=True) as store:
        assert not store.query("SELECT * FROM matches WHERE url = ? AND theme = 'chip_sanctions'", [url])[1]
    assert main(["rescore", "--config", str(cfg)]) == 0  # stays unflagged when scored again
    with Store.open(db, read_only=True) as store:
        assert not store.query("SELECT * FROM matches WHERE url = ? AND theme = 'chip_sanctions'", [url])[1]
        assert store.query("SELECT relevant FROM core.feedback")[1] == [(False,)]
    assert main(["feedback", "https://nowhere.example/x", "chip_sanctions", "--yes", "--config", str(cfg)]) == 1
    assert "no stored article" in capsys.readouterr().err


def test_themes_eval_prints_every_system_on_each_split(demo_copy, embedder, capsys):
    cfg, _ = demo_copy
    assert main(["themes", "eval", "--labels", str(ROOT / "tests" / "data" / "challenge"),
                 "--time-cutoff", "2025-06-01", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    for system in ("aiwatch", "prototype", "keywords", "description"):
        assert system in out
    assert "grouped split (5 folds grouped by feed)" in out and "time split (trained on" in out
    assert "source split: needs items from at least two sources" in out  # the challenge set is one source
    macro = [line for line in out.splitlines() if line.strip().startswith("macro F1")]
    assert len(macro) == 2 and all(float(v) > 0 for line in macro for v in line.split()[2:])


def test_bad_labels_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "items.jsonl").write_text('{"id": "a", "title": "x", "text": "y"}\n')
    (tmp_path / "labels.jsonl").write_text("{not json\n")
    assert main(["themes", "eval", "--labels", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "labels.jsonl:1: not JSON" in err and "Traceback" not in err


def test_theme_vectors_add_feedback(embedder, themes):
    texts = sorted({t for th in themes for t in theme_texts(th)})
    tv = ThemeVectors.build_all(themes, dict(zip(texts, embedder.embed(texts))))[0]
    more = tv.with_feedback([np.ones(384, dtype=np.float32) / np.sqrt(384)], [])
    assert len(more.prototypes) == len(tv.prototypes) + 1 and len(more.negatives) == len(tv.negatives)
