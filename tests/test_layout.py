"""The house rules of the layout (docs/architecture.md), checked so they stay true.

Only ``store/`` talks to DuckDB, only ``flow.py`` imports Prefect, only ``http.py`` holds an HTTP
client, and no module grows into a crowded room again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aiwatch"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
# a string that is a SQL statement (not prose or a help example that mentions one)
SQL = re.compile(r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE|CREATE|COPY|ATTACH|DROP|ALTER|PRAGMA|SET)\s")  # as we write it


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _where(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_only_the_store_imports_duckdb_or_holds_sql():
    for path in MODULES:
        if _where(path).startswith("store/"):
            continue
        assert "duckdb" not in _imports(path), _where(path)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                node = node.values[0]  # an f-string: its opening text
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.match(node.value), (_where(path), node.value[:80])


def test_only_the_flow_imports_prefect():
    for path in MODULES:
        if _where(path) not in ("flow.py", "prefect_env.py"):
            assert not {"prefect", "prefect_dask"} & _imports(path), _where(path)


def test_only_http_holds_an_http_client():
    for path in MODULES:
        if _where(path) != "http.py":
            assert not {"httpx", "httpcore", "urllib3", "requests"} & _imports(path), _where(path)


def test_no_crowded_rooms():
    sizes = {_where(p): len(p.read_text("utf-8").splitlines()) for p in MODULES}
    assert max(sizes.values()) <= 600, max(sizes.items(), key=lambda kv: kv[1])
    assert sizes["pipeline.py"] < 250
