"""Run aiwatch's extraction cascade and plain trafilatura over a folder of saved pages.

    python benchmarks/extract_bench.py [FOLDER]   # default: ../shared/data/pages/readability

FOLDER holds one folder per case with ``source.html`` and, when known, ``expected.html`` (the
Readability.js output: a second opinion, not ground truth). For every page both systems run in
the same process on the same decoded HTML:

- aiwatch: ``aiwatch.articles.extract.extract_article`` on a ``Fetched`` record of the bytes;
- trafilatura: ``trafilatura.extract(html)`` with its default settings.

For each system it prints the time per page (median and p95, ms), the number of empty results
(None or empty text) and the mean token-level F1 against the text of expected.html (lowercase
\\w+ tokens, bag-of-words overlap with multiplicity; pages without expected.html are left out
of F1; an empty result scores 0). ``--verbose`` lists each page's figures and aiwatch's
extractor and rejections. The last line is

    pages=N aiwatch_f1=X trafilatura_f1=Y aiwatch_empty=N trafilatura_empty=N aiwatch_ms_median=X trafilatura_ms_median=Y

Targets: aiwatch_f1 >= trafilatura_f1, aiwatch_empty <= trafilatura_empty (strictly fewer when
trafilatura has any), aiwatch_ms_median <= 2 x trafilatura_ms_median.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import trafilatura

from aiwatch.articles.extract import extract_article
from aiwatch.articles.page import decode_html
from aiwatch.http import Fetched
from aiwatch.text import html_to_text

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pages" / "readability"
_TOKEN = re.compile(r"\w+")


def tokens(text: str | None) -> Counter:
    return Counter(_TOKEN.findall((text or "").lower()))


def token_f1(got: str | None, expected: str) -> float:
    g, e = tokens(got), tokens(expected)
    overlap = sum((g & e).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(g.values()), overlap / sum(e.values())
    return 2 * precision * recall / (precision + recall)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per page")
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    cases = sorted(p for p in folder.glob("*/source.html")) if folder.is_dir() else []
    if not cases:
        print(f"extract_bench: no <case>/source.html pages under {folder} (benchmarks/README.md says where to get "
              "them)", file=sys.stderr)
        return 2

    # Warm both systems up (imports, language model, lxml) so the first page is not an outlier.
    warm = cases[0].read_bytes()
    extract_article(Fetched("http://bench.invalid/", "http://bench.invalid/", 200,
                            {"content-type": "text/html"}, warm))
    trafilatura.extract(decode_html(warm))

    stats = {"aiwatch": {"ms": [], "empty": 0, "f1": []}, "trafilatura": {"ms": [], "empty": 0, "f1": []}}
    for source in cases:
        case = source.parent
        raw = source.read_bytes()
        url = f"http://bench.invalid/{case.name}/"
        expected_path = case / "expected.html"
        expected = (html_to_text(expected_path.read_text(encoding="utf-8", errors="replace"))
                    if expected_path.exists() else None)

        t0 = time.perf_counter()
        extracted = extract_article(Fetched(url, url, 200, {"content-type": "text/html"}, raw))
        ours_ms = (time.perf_counter() - t0) * 1000
        ours = extracted.text if extracted else None

        html_text = decode_html(raw)
        t0 = time.perf_counter()
        theirs = trafilatura.extract(html_text)
        theirs_ms = (time.perf_counter() - t0) * 1000

        line = [case.name]
        for name, text, ms in (("aiwatch", ours, ours_ms), ("trafilatura", theirs, theirs_ms)):
            s = stats[name]
            s["ms"].append(ms)
            s["empty"] += not (text or "").strip()
            if expected is not None:
                s["f1"].append(token_f1(text, expected))
                line.append(f"{name}: {len(text or '')} chars f1={s['f1'][-1]:.2f} {ms:.0f}ms")
            else:
                line.append(f"{name}: {len(text or '')} chars {ms:.0f}ms")
        if args.verbose:
            how = (f"via {extracted.extractor}" + (f" after {'; '.join(extracted.rejected)}"
                                                  if extracted.rejected else "")) if extracted else "None"
            print("  ".join(line), " ", how)

    summary = {}
    for name, s in stats.items():
        f1 = statistics.mean(s["f1"]) if s["f1"] else 0.0
        median = statistics.median(s["ms"])
        summary[name] = (f1, s["empty"], median)
        print(f"{name:12s} median {median:7.1f} ms  p95 {percentile(s['ms'], 0.95):7.1f} ms  "
              f"empty {s['empty']:3d}  mean F1 {f1:.4f} over {len(s['f1'])} pages with expected.html")
    a, t = summary["aiwatch"], summary["trafilatura"]
    print(f"ratios: f1 {a[0] / t[0] if t[0] else float('inf'):.3f}  "
          f"ms_median {a[2] / t[2] if t[2] else float('inf'):.2f}x")
    print(f"pages={len(cases)} aiwatch_f1={a[0]:.4f} trafilatura_f1={t[0]:.4f} "
          f"aiwatch_empty={a[1]} trafilatura_empty={t[1]} "
          f"aiwatch_ms_median={a[2]:.1f} trafilatura_ms_median={t[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
