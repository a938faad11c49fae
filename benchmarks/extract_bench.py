"""Run aiwatch's extraction (both methods) and plain trafilatura over a folder of saved pages.

    python benchmarks/extract_bench.py [FOLDER]                 # default: ../shared/data/pages/readability
    python benchmarks/extract_bench.py --trafilatura-eval DIR   # trafilatura's own evaluation set

FOLDER holds one folder per case with ``source.html`` and, when known, ``expected.html``
(what Readability.js extracted, which is a second opinion rather than truth). ``--trafilatura-eval`` takes the
``tests/`` folder of trafilatura's repository (``evaldata.json`` and the pages under ``cache/``
and ``eval/``), scored as trafilatura scores itself: a 'with' passage found in the text is a true
positive, a missing one a false negative, a 'without' passage found a false positive; counts are
pooled over the pages before P, R and F1.

For every page three systems run in the same process on the same bytes, one after the other:

- aiwatch: ``aiwatch.articles.extract.extract_article`` with ``method="agree"`` (the default);
- cascade: the same with ``method="cascade"`` (aiwatch's method before agree);
- trafilatura: ``trafilatura.extract(html)`` with its default settings.

For each system it prints the time per page (median, mean and p95, ms), the number of empty
results (None or empty text) and the F1 (on FOLDER: the mean token-level F1 against the text of
expected.html, lowercase \\w+ tokens with multiplicity, pages without expected.html left out, an
empty result scoring 0). For agree it prints which extractor's text was kept and on what share of
pages newspaper4k ran. ``--verbose`` lists each page. The last line is

    pages=N aiwatch_f1=X cascade_f1=C trafilatura_f1=Y aiwatch_empty=N trafilatura_empty=N aiwatch_ms_median=X cascade_ms_median=C trafilatura_ms_median=Y extras_share=S

Targets: aiwatch_f1 >= cascade_f1 and >= trafilatura_f1 (never below plain trafilatura),
aiwatch_empty <= trafilatura_empty. The machine may be shared: compare the ms columns as ratios
within one run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import trafilatura

from aiwatch.articles.extract import EXTRAS, extract_article
from aiwatch.articles.page import decode_html
from aiwatch.http import Fetched
from aiwatch.text import html_to_text

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pages" / "readability"
SYSTEMS = ("aiwatch", "cascade", "trafilatura")
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


def folder_cases(folder: Path) -> Iterator[dict]:
    for source in sorted(folder.glob("*/source.html")):
        case = source.parent
        expected = case / "expected.html"
        yield dict(name=case.name, url=f"http://bench.invalid/{case.name}/", raw=source.read_bytes(),
                   expected=(html_to_text(expected.read_text(encoding="utf-8", errors="replace"))
                             if expected.exists() else None))


def trafilatura_cases(tests: Path) -> Iterator[dict]:
    data = json.loads((tests / "evaldata.json").read_text(encoding="utf-8"))
    for url in sorted(data):
        item = data[url]
        path = next((tests / sub / item["file"] for sub in ("cache", "eval") if (tests / sub / item["file"]).is_file()),
                    None)
        if path is not None:
            yield dict(name=item["file"], url=url, raw=path.read_bytes(), with_=item["with"], without=item["without"])


def _ws(text: str) -> str:
    return " ".join(text.split())


def passage_counts(case: dict, text: str | None) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of trafilatura's passage test."""
    t = _ws(text or "")
    tp = sum(1 for w in case["with_"] if t and _ws(w) in t)
    fp = sum(1 for w in case["without"] if t and _ws(w) in t)
    return tp, fp, len(case["with_"]) - tp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--trafilatura-eval", type=Path, metavar="DIR",
                        help="trafilatura's tests/ folder (evaldata.json, cache/, eval/) instead of FOLDER")
    parser.add_argument("--agreement", type=float, default=None, help="extract.agreement for method agree")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per page")
    args = parser.parse_args(argv)
    passages = args.trafilatura_eval is not None
    if passages:
        source = args.trafilatura_eval.resolve()
        cases = list(trafilatura_cases(source)) if (source / "evaldata.json").is_file() else []
    else:
        source = args.folder.resolve()
        cases = list(folder_cases(source)) if source.is_dir() else []
    if not cases:
        print(f"extract_bench: no pages under {source}", file=sys.stderr)
        return 2
    agree_kw = {} if args.agreement is None else {"margin": args.agreement}

    def run(system: str, case: dict):
        if system == "trafilatura":
            html = decode_html(case["raw"])
            t0 = time.perf_counter()
            return trafilatura.extract(html), None, (time.perf_counter() - t0) * 1000
        fetched = Fetched(case["url"], case["url"], 200, {"content-type": "text/html"}, case["raw"])
        t0 = time.perf_counter()
        got = extract_article(fetched, method="agree" if system == "aiwatch" else "cascade",
                              **(agree_kw if system == "aiwatch" else {}))
        return (got.text if got else None), got, (time.perf_counter() - t0) * 1000

    for system in SYSTEMS:  # warm up: imports, the language model, lxml
        run(system, cases[0])

    stats = {s: {"ms": [], "empty": 0, "f1": [], "counts": [0, 0, 0]} for s in SYSTEMS}
    kept: Counter = Counter()
    extras = 0
    for case in cases:
        line = [case["name"]]
        for system in SYSTEMS:
            text, got, ms = run(system, case)
            s = stats[system]
            s["ms"].append(ms)
            s["empty"] += not (text or "").strip()
            if passages:
                s["counts"] = [a + b for a, b in zip(s["counts"], passage_counts(case, text))]
                line.append(f"{system}: {len(text or '')} chars {ms:.0f}ms")
            elif case["expected"] is not None:
                s["f1"].append(token_f1(text, case["expected"]))
                line.append(f"{system}: {len(text or '')} chars f1={s['f1'][-1]:.2f} {ms:.0f}ms")
            if system == "aiwatch":
                kept[got.extractor if got else None] += 1
                extras += bool(got and any(n in got.ran for n in EXTRAS))
                how = (f"via {got.extractor} (agreement {got.agreement:.2f})"
                       + (f" after {'; '.join(got.rejected)}" if got.rejected else "")) if got else "None"
        if args.verbose:
            print("  ".join(line), " ", how)

    summary = {}
    for system, s in stats.items():
        if passages:
            tp, fp, fn = s["counts"]
            p, r = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            scored = f"F1 {f1:.4f} (P {p:.4f} R {r:.4f}, passages pooled over {len(cases)} pages)"
        else:
            f1 = statistics.mean(s["f1"]) if s["f1"] else 0.0
            scored = f"mean F1 {f1:.4f} over {len(s['f1'])} pages with expected.html"
        median = statistics.median(s["ms"])
        summary[system] = (f1, s["empty"], median)
        print(f"{system:12s} median {median:7.1f} ms  mean {statistics.mean(s['ms']):7.1f} ms  "
              f"p95 {percentile(s['ms'], 0.95):7.1f} ms  empty {s['empty']:3d}  {scored}")
    share = extras / len(cases)
    print(f"aiwatch kept: {dict(kept.most_common())}; the extras ({' + '.join(EXTRAS)}) ran on {extras} of {len(cases)} pages ({share:.1%})")
    a, c, t = summary["aiwatch"], summary["cascade"], summary["trafilatura"]
    print(f"ratios: f1 {a[0] / t[0] if t[0] else float('inf'):.3f} of trafilatura, "
          f"{a[0] / c[0] if c[0] else float('inf'):.3f} of cascade; ms_median {a[2] / t[2]:.2f}x trafilatura, "
          f"{a[2] / c[2]:.2f}x cascade; ms_mean {statistics.mean(stats['aiwatch']['ms']) / statistics.mean(stats['trafilatura']['ms']):.2f}x trafilatura")
    print(f"pages={len(cases)} aiwatch_f1={a[0]:.4f} cascade_f1={c[0]:.4f} trafilatura_f1={t[0]:.4f} "
          f"aiwatch_empty={a[1]} trafilatura_empty={t[1]} "
          f"aiwatch_ms_median={a[2]:.1f} cascade_ms_median={c[2]:.1f} trafilatura_ms_median={t[2]:.1f} "
          f"extras_share={share:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
