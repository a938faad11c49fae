"""Evaluate theme scoring on a labelled set and choose thresholds.

    python benchmarks/eval_themes.py --labels ../shared/data/relevance-dev [--config aiwatch.toml]

The labelled folder holds items.jsonl (id, title, text, feed, ...) and labels.jsonl (id plus a
0/1/2 grade per theme). Grade 2 is positive, 0 negative, 1 left out. For each theme it prints
precision, recall and F1 at the F1-best threshold chosen in-sample, with plain 5-fold
cross-validation and with folds grouped by feed (thresholds chosen on the training folds and
measured on the held-out fold), beside a baseline: cosine to the theme description alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from aiwatch.config import load_config
from aiwatch.embed import get_embedder
from aiwatch.score import ThemeVectors, score_article, theme_texts
from aiwatch.text import passages
from aiwatch.themes import Theme


def load_labelled(folder: Path):
    items = [json.loads(line) for line in (folder / "items.jsonl").open(encoding="utf-8")]
    labels = {row["id"]: row for row in map(json.loads, (folder / "labels.jsonl").open(encoding="utf-8"))}
    return items, labels


def best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    best_t, best_f = 0.5, -1.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        fn = int((~pred & y).sum())
        f = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f > best_f:
            best_f, best_t = f, float(t)
    return best_t


def prf(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def folds(n: int, groups: list[str] | None, k: int = 5, seed: int = 13) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        return [order[i::k] for i in range(k)]
    uniq = sorted(set(groups))
    rng.shuffle(uniq)
    # greedy balance: largest groups first into the smallest fold
    sizes = {g: groups.count(g) for g in uniq}
    bins: list[list[str]] = [[] for _ in range(k)]
    for g in sorted(uniq, key=lambda g: -sizes[g]):
        min(bins, key=lambda b: sum(sizes[x] for x in b)).append(g)
    idx = np.arange(n)
    return [idx[np.isin(np.array(groups), b)] for b in bins]


def cross_validated(scores: np.ndarray, y: np.ndarray, groups: list[str] | None) -> tuple[float, float, float]:
    pred = np.zeros_like(y)
    for test in folds(len(y), groups):
        train = np.setdiff1d(np.arange(len(y)), test)
        t = best_threshold(scores[train], y[train])
        pred[test] = scores[test] >= t
    return prf(pred, y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, type=Path)
    ap.add_argument("--config")
    args = ap.parse_args(argv)
    if not (args.labels / "items.jsonl").exists():
        print(f"no items.jsonl in {args.labels}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    items, labels = load_labelled(args.labels)
    emb = get_embedder(config["embed.batch_size"])
    per_item = [passages(it.get("title", ""), it.get("text", ""), max_words=config["embed.chunk_words"],
                         max_passages=config["embed.max_chunks"]) or [it.get("title", "")] for it in items]
    flat = [p for ps in per_item for p in ps]
    vecs = emb.embed(flat)
    item_vecs, i = [], 0
    for ps in per_item:
        item_vecs.append(vecs[i:i + len(ps)])
        i += len(ps)
    tvecs = {t: v for t, v in zip(
        sorted({x for th in config.themes for x in theme_texts(th)}),
        emb.embed(sorted({x for th in config.themes for x in theme_texts(th)})))}
    feeds = [it.get("feed", "") for it in items]
    print(f"{'theme':16} {'system':12} {'n+':>3} {'n-':>4} {'thr':>5} | {'in-sample P/R/F1':>18} | "
          f"{'5-fold F1':>9} | {'grouped P/R/F1':>18}")
    macro = {"aiwatch": [], "description": []}
    for theme in config.themes:
        grades = np.array([labels[it["id"]][theme.name] for it in items])
        keep = grades != 1
        y = (grades == 2)[keep]
        tv = ThemeVectors.build(theme, tvecs, config.themes)
        desc_only = ThemeVectors.build(Theme(theme.name, theme.description, theme.threshold), tvecs)
        kept_groups = [g for g, k in zip(feeds, keep) if k]
        for name, t in (("aiwatch", tv), ("description", desc_only)):
            s = np.array([score_article(v, ps, t).score for v, ps in zip(item_vecs, per_item)])[keep]
            thr = best_threshold(s, y)
            p, r, f = prf(s >= thr, y)
            _, _, fcv = cross_validated(s, y, None)
            gp, gr, gf = cross_validated(s, y, kept_groups)
            macro[name].append((f, fcv, gf))
            configured = ""
            if name == "aiwatch":
                cp, cr, cf = prf(s >= theme.threshold, y)
                configured = f"  (configured {theme.threshold:.2f}: P {cp:.2f} R {cr:.2f} F1 {cf:.2f})"
            print(f"{theme.name:16} {name:12} {int(y.sum()):>3} {int((~y).sum()):>4} {thr:5.3f} | "
                  f"{p:.2f} {r:.2f} {f:.2f}     | {fcv:9.2f} | {gp:.2f} {gr:.2f} {gf:.2f}{configured}")
    for name, rows in macro.items():
        a = np.array(rows)
        print(f"macro F1 {name:12}: in-sample {a[:, 0].mean():.3f}  5-fold {a[:, 1].mean():.3f}  "
              f"grouped {a[:, 2].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
