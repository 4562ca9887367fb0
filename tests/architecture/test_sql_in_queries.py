"""SQL lives in query modules: no module under app/ builds a statement outside them.

A query module is a file named queries.py or any module of a queries/ package; app/models (the tables),
app/db.py (engine and sessions) and migrations are exempt too. Anywhere else the test fails on
- importing a statement builder (select, update, text, func, and_, ...) from sqlalchemy, and
- passing an inline statement (a builder call or a raw SQL string) to execute/scalars/scalar.
Each finding is reported as `path:line`, so the list says exactly what to move.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"

BUILDERS = frozenset({
    "select", "insert", "update", "delete", "text", "func", "and_", "or_", "not_", "exists", "case",
    "literal", "literal_column", "union", "union_all", "bindparam", "column", "table", "tuple_", "null",
    "true", "false", "distinct", "desc", "asc", "nulls_first", "nulls_last",
})
RUNNERS = frozenset({"execute", "scalars", "scalar", "exec_driver_sql"})

# Modules another change is still moving SQL out of. Each entry is a debt, removed when that module's
# statements live in its feature's queries; empty now, and nothing is to be added here.
NOT_YET_MOVED: frozenset[str] = frozenset()


def _exempt(relative: str) -> bool:
    parts = relative.split("/")
    return (
        parts[-1] == "queries.py"
        or "queries" in parts[:-1]
        or "migrations" in parts
        or relative == "app/db.py"
        or relative.startswith("app/models/")
    )


def _root_call_name(node: ast.expr) -> str | None:
    """The name called at the root of a chain like `select(X).where(...).order_by(...)`, if any."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call | ast.Attribute):
            node = node.value
        else:
            break
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _inline_statement(runner: str, arg: ast.expr) -> bool:
    # A plain string is SQL only for exec_driver_sql: SQLAlchemy 2's execute refuses strings, so a string
    # given to `.execute(` goes to a DB-API cursor (the Postgres COPY export's driver-level path).
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return runner == "exec_driver_sql"
    return _root_call_name(arg) in BUILDERS


def _runs_inline_statement(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in RUNNERS
        and bool(node.args)
        and _inline_statement(node.func.attr, node.args[0])
    )


def findings(path: Path, relative: str) -> list[str]:
    """`relative:line what` for each builder import and inline statement in one module."""
    tree = ast.parse(path.read_text(), filename=relative)
    sqlalchemy_aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            names = sorted(alias.name for alias in node.names if alias.name in BUILDERS)
            if names:
                found.append(f"{relative}:{node.lineno} imports {', '.join(names)} from {node.module}")
        elif isinstance(node, ast.Import):
            sqlalchemy_aliases.update(
                alias.asname or alias.name for alias in node.names if alias.name.split(".")[0] == "sqlalchemy"
            )
        elif _runs_inline_statement(node):
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            found.append(f"{relative}:{node.lineno} runs an inline statement with .{node.func.attr}(")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in BUILDERS and isinstance(node.value, ast.Name)
                and node.value.id in sqlalchemy_aliases):
            found.append(f"{relative}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def _modules() -> list[tuple[Path, str]]:
    return [
        (path, path.relative_to(REPO).as_posix())
        for path in sorted(APP.rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


def test_no_sql_outside_query_modules() -> None:
    found = [
        line
        for path, relative in _modules()
        if not _exempt(relative) and relative not in NOT_YET_MOVED
        for line in findings(path, relative)
    ]
    assert not found, "SQL outside a queries module (move it there):\n" + "\n".join(found)


def test_the_allow_list_names_only_modules_that_still_need_it() -> None:
    stale = sorted(relative for relative in NOT_YET_MOVED if not (REPO / relative).exists()
                   or not findings(REPO / relative, relative))
    assert not stale, f"these modules hold no SQL any more; drop them from NOT_YET_MOVED: {stale}"


@pytest.mark.parametrize(
    "planted",
    [
        "from sqlalchemy import select\n",
        "from sqlalchemy.dialects.postgresql import insert\n",
        "import sqlalchemy as sa\n\n\ndef f(db):\n    return sa.func.count()\n",
        "def f(db, Model):\n    return db.scalars(select(Model).where(Model.id == 1))\n",
        "def f(conn):\n    conn.execute(text('SELECT 1'))\n",
        "def f(conn):\n    conn.exec_driver_sql('SELECT 1')\n",
    ],
    ids=["select", "dialect-insert", "module-attribute", "inline-scalars", "inline-text", "driver-sql"],
)
def test_a_planted_statement_is_found(tmp_path: Path, planted: str) -> None:
    module = tmp_path / "planted.py"
    module.write_text("from __future__ import annotations\n\n" + planted)
    assert findings(module, "app/feature/service.py")


def test_query_modules_and_models_are_exempt() -> None:
    assert _exempt("app/labeling/queries.py")
    assert _exempt("app/labeling/queries/claims.py")
    assert _exempt("app/models/labeling.py")
    assert _exempt("app/db.py")
    assert not _exempt("app/labeling/service.py")
