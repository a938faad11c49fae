"""The articles stage in shards: 1 and 2 Dask worker processes against the single-process run.

    python benchmarks/shards_bench.py [--articles N] [--pages DIR] [--work DIR] [--shard-entries K]

The corpus, feeds and local sites are e2e_bench's (N unique pages made from real ones, 20 feeds
on 20 loopback hosts). Each configuration is one ``aiwatch run`` in a subprocess into a fresh
DuckDB file, through the real Prefect flow against a Prefect server this script starts:

1. **single**: the defaults (the whole stage in the writing process).
2. **shards, 1 worker**: ``storage.shards`` set, ``prefect.task_runner = "dask"`` and
   ``prefect.dask_address`` naming a ``dask scheduler`` this script starts with one ``dask
   worker`` process (one shard at a time, the model on every core).
3. **shards, 2 workers**: the same with two worker processes of one thread each (the model on
   one core each, as a nanny sets it).

The corpus lists 100 articles per site, and a site's entries stay in one shard when they fit,
so shards of the default 100 entries would hold one site each, fetched at most
``fetch.per_host`` pages at a time: a worker would wait on politeness, not work. Shards of 500
(``--shard-entries``) hold five sites each, as a real day's shards hold many small ones.

Workers and scheduler are separate processes on 127.0.0.1, as on several machines; on one
2-core machine they share its cores with the writer, so the ratios here show the cost of the
shard path, not the gain of a second machine. Per configuration it prints wall time, articles
per second and the ratio to the single-process run. From the sharded runs' stage times it
prints what bounds a single writer:

- ``build_per_s_per_worker``: articles over the summed seconds workers spent building shards
  (fetch, extract, embed and writing Parquet), i.e. what one worker process delivers;
- ``merge_per_s``: articles over the seconds the writer spent merging shards (reading Parquet,
  dedup, upserts, vectors);
- ``writer_keeps_up_with``: their ratio, the number of such workers one writer can merge for
  before it becomes the bottleneck;
- ``writer_all_per_s``: articles over everything the writer does alone after the feeds (the
  merge, story grouping and the score stage), and ``writer_all_keeps_up_with`` its ratio to
  one worker's rate: the bound once the workers are many.

The last line:

    articles=N single_per_s=A w1_per_s=B w1_vs_single=R1 w2_per_s=C w2_vs_single=R2 build_per_s_per_worker=D merge_per_s=E writer_keeps_up_with=W writer_all_per_s=F writer_all_keeps_up_with=V
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_bench import SHARED, CorpusSites, aiwatch_run, build_corpus, prefect_server, write_config  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(work: Path, workers: int, threads_per_worker_model: int):
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes, as a user starts them
    (without a nanny, so the worker keeps the OMP_NUM_THREADS given here for its model)."""
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads_per_worker_model),
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = []
    try:
        logs = work / "dask-logs"
        logs.mkdir(exist_ok=True)

        def start(argv: list[str], name: str) -> None:
            with open(logs / f"{name}-{workers}.log", "wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))
        start([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
              "scheduler")
        for i in range(workers):
            start([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                   "--name", f"w{i}"], f"worker{i}")
        from distributed import Client
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(workers, timeout=90)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def report(label: str, wall: float, run: dict, n: int, base: float | None) -> None:
    s = run["stage_seconds"]
    ratio = f", {(n / wall) / base:.3f} of the single-process rate" if base else ""
    print(f"\n{label}: {wall:.1f}s wall, {n / wall:.2f} articles/s{ratio}; status {run['status']}, "
          f"{run['articles_new']} new articles, {run['passages_embedded']} passages embedded, {run['flagged']} flagged")
    print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(s.items()) if isinstance(v, (int, float))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=2000, help="articles per run (default 2000)")
    ap.add_argument("--pages", type=Path, default=SHARED / "pages", help="folder of real .html pages")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one; the corpus is kept there)")
    ap.add_argument("--shard-entries", type=int, default=500,
                    help="storage.shard_entries (default 500: five of the corpus's sites per shard)")
    args = ap.parse_args(argv)
    if not args.pages.is_dir():
        print(f"shards_bench: {args.pages}: no such folder", file=sys.stderr)
        return 2
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        print(f"shards_bench: {exc.name} is missing: pip install 'aiwatch[dask]'", file=sys.stderr)
        return 2
    n = args.articles
    work = (args.work or Path(tempfile.mkdtemp(prefix="aiwatch-shards-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(args.pages, n, work)
    cores = os.cpu_count() or 1
    print(f"work folder: {work}; {cores} cores; {n} articles; shards of {args.shard_entries}")

    rates: dict[str, float] = {}
    merged = built = alone = 0.0
    with ExitStack() as stack:
        env = stack.enter_context(prefect_server(work))
        with CorpusSites(corpus, n) as sites:
            config = write_config(work, "single", sites.feed_urls())
            wall, _, run = aiwatch_run(config, env)
            rates["single"] = n / wall
            report("single process", wall, run, n, None)
        for workers in (1, 2):
            with CorpusSites(corpus, n) as sites, dask_cluster(work, workers, max(1, cores // workers)) as address:
                name = f"w{workers}"
                config = write_config(work, name, sites.feed_urls())
                # write_config puts [storage] first: append the shard settings as their own tables
                text = config.read_text("utf-8").replace(
                    "[storage]\n", f'[storage]\nshards = "{work / "shards"}"\nshard_entries = {args.shard_entries}\n', 1)
                text += f'\n[prefect]\ntask_runner = "dask"\ndask_address = "{address}"\n'
                config.write_text(text, "utf-8")
                wall, _, run = aiwatch_run(config, env)
                rates[name] = n / wall
                report(f"shards, {workers} worker process{'es' if workers > 1 else ''}", wall, run, n, rates["single"])
                s = run["stage_seconds"]
                merged += s.get("merge", 0.0)
                built += s.get("shard", 0.0)
                alone += s.get("merge", 0.0) + s.get("stories", 0.0) + s.get("score", 0.0)
    build_rate = 2 * n / built if built else float("nan")  # two sharded runs of n articles each
    merge_rate = 2 * n / merged if merged else float("nan")
    alone_rate = 2 * n / alone if alone else float("nan")
    print(f"\nwriter: merged {merge_rate:.1f} articles/s; one worker process built {build_rate:.2f} articles/s; "
          f"one writer keeps up with about {merge_rate / build_rate:.0f} such workers; with stories and scores, "
          f"{alone_rate:.1f} articles/s, about {alone_rate / build_rate:.1f} workers")
    print(f"\narticles={n} single_per_s={rates['single']:.2f} w1_per_s={rates['w1']:.2f} "
          f"w1_vs_single={rates['w1'] / rates['single']:.3f} w2_per_s={rates['w2']:.2f} "
          f"w2_vs_single={rates['w2'] / rates['single']:.3f} build_per_s_per_worker={build_rate:.2f} "
          f"merge_per_s={merge_rate:.1f} writer_keeps_up_with={merge_rate / build_rate:.1f} "
          f"writer_all_per_s={alone_rate:.1f} writer_all_keeps_up_with={alone_rate / build_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
