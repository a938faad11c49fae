"""aiwatch in the tools its users already have: DuckDB 1.x, pandas-style readers, Prefect."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A Python with DuckDB 1.x, made by .ci/run (python3 -m venv .venv-duckdb1 && pip install 'duckdb<2').
DUCKDB1 = Path(os.environ.get("DUCKDB1_PYTHON", ROOT / ".venv-duckdb1" / "bin" / "python"))


@pytest.mark.skipif(not DUCKDB1.exists(), reason="no DuckDB 1.x side environment (.venv-duckdb1)")
def test_duckdb_1x_opens_the_database_and_runs_the_readme_queries(demo_run):
    queries = [q for q in re.findall(r"```sql\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S)
               if "'export/" not in q]  # the Parquet export's query: tests/test_readme.py
    assert len(queries) >= 5
    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "out = {'version': duckdb.__version__, 'rows': [len(con.execute(q).fetchall()) for q in json.loads(sys.argv[2])]}\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([str(DUCKDB1), "-c", script, str(demo_run["config"].database), json.dumps(queries)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    result = json.loads(done.stdout)
    assert result["version"].startswith("1.") and all(n > 0 for n in result["rows"]), result
