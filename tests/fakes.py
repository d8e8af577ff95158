"""Stand-ins for what no unit test can reach: a DB-API connection that records what it is asked and
answers from a script, and a recorder of every template the code renders."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from etl.render import Renderer


class FakeCursor:
    def __init__(self, conn: "FakeConn"):
        self.conn = conn
        self.rowcount = -1
        self._rows: list[tuple] = []

    def __enter__(self) -> "FakeCursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        self.conn.executed.append((sql, dict(params or {})))
        answer = self.conn.answer(sql)
        self._rows = list(answer) if answer is not None else []
        self.rowcount = self.conn.rowcount
        return self.rowcount

    def executemany(self, sql: str, rows: list[dict[str, Any]]) -> None:
        self.conn.executed.append((sql, {"rows": list(rows)}))
        self.rowcount = len(rows)

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def copy_expert(self, sql: str, reader: Any, size: int = 8192) -> None:
        data = b""
        while chunk := reader.read(size):
            data += chunk
        self.conn.executed.append((sql, {"copied": data}))


class FakeConn:
    """Records every statement; answers each query from `script`: a list of row lists, taken in order
    (a query past the end of the script gets no rows), or a function sql -> rows."""

    def __init__(self, script: list[list[tuple]] | Callable[[str], list[tuple] | None] | None = None,
                 rowcount: int = 1):
        self.executed: list[tuple[str, dict[str, Any]]] = []
        self.script = script if script is not None else []
        self.rowcount = rowcount
        self.commits = self.rollbacks = 0
        self.closed = False
        self.autocommit = False

    def answer(self, sql: str) -> list[tuple] | None:
        if callable(self.script):
            return self.script(sql)
        return self.script.pop(0) if self.script else None

    def cursor(self, *args: Any) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True

    def exec_driver_sql(self, sql: str) -> None:  # a SQLAlchemy connection's way in
        self.executed.append((sql, {}))

    @property
    def sql(self) -> list[str]:
        return [sql for sql, _ in self.executed]


@contextlib.contextmanager
def recording_renders(*, memo: bool = False) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every template rendered inside the block, with the context its caller passed: [(name, context)].
    memo: a render with the same template and context (the golden cases render the same statement for
    many examples of a table) is answered from the first one."""
    seen: list[tuple[str, dict[str, Any]]] = []
    original = Renderer.render
    done: dict[Any, Any] = {}

    def render(self, name, /, **context):
        seen.append((name, dict(context)))
        if not memo:
            return original(self, name, **context)
        try:
            key = (name, tuple(sorted(context.items())))
            hash(key)
        except TypeError:
            return original(self, name, **context)
        if key not in done:
            done[key] = original(self, name, **context)
        return done[key]

    Renderer.render = render
    try:
        yield seen
    finally:
        Renderer.render = original
