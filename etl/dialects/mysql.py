"""MySQL / MariaDB: the source and the replica.

What is MySQL's own: connections and their session setup (every session in UTC, so TIMESTAMP values and
watermarks are exact instants, identical on the source and the replica), which of its errors are transient,
named locks (GET_LOCK), reflection of a live table, how a source column is repeated in the replica (DDL) and
the text LOAD DATA INFILE reads (``_macros/infile_text.sql.j2``, written block by block to a private file),
and its templates, ``sql_templates/mysql/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator

import pymysql
import pymysql.converters
from sqlalchemy.engine import URL

from etl.db import fetch_all, fetch_one
from etl.errors import ConnectionFailed, SchemaError, first_line
from etl.render import Ident, Statement
from etl.render import render as _render_template
from etl.schema import DATETIME_TYPES, INTEGER_TYPES, Column, TableSchema
from etl.settings import mask_url

NAME = "mysql"

#: Hosts that are this machine: connections to them never leave it.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

#: Encoders only, no decoders: data rows are read as the server's own text (or bytes for binary), so a
#: value is never reinterpreted by Python on its way through (doubles, TIME beyond 24h, zero dates).
RAW_TEXT_CONV = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}

#: Errors worth another attempt: server gone / lost connection, lock wait timeout, deadlock.
TRANSIENT_ERRORS = frozenset({2003, 2006, 2013, 1205, 1213})

#: The copy phase tracks in the replica itself (its default database): no scope to name. Run-history ids
#: come from AUTO_INCREMENT.
ASSIGNS_HISTORY_IDS = False


def render(statement: str, /, **context: Any) -> Statement:
    """``sql_templates/mysql/<statement>.sql.j2``."""
    return _render_template(f"{NAME}/{statement}", **context)


def connect(url: URL, *, role: str = "mysql", database: bool = True, local_infile: bool = False,
            raw_text: bool = False, **kwargs: Any) -> pymysql.Connection:
    """A PyMySQL connection in the ETL's session setup (mysql/session_init). raw_text: values arrive as the
    server's text (RAW_TEXT_CONV), for data paths. local_infile: allow LOAD DATA LOCAL INFILE (the
    separate-servers copy into a replica the ETL trusts: the driver sends the server whichever local file it
    asks for).

    On the loopback interface the driver's opportunistic TLS is turned off: it protects nothing there, and
    setting it up (loading the system's CA certificates) costs ~25 ms per connection, most of a small
    table's run. Elsewhere the driver's default stands (TLS when the server offers it)."""
    host = url.host or "127.0.0.1"
    if host in LOOPBACK_HOSTS:
        kwargs.setdefault("ssl_disabled", True)
    if raw_text:
        kwargs.setdefault("conv", RAW_TEXT_CONV)
    try:
        return pymysql.connect(
            host=host,
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database if database else None,
            charset="utf8mb4",
            autocommit=False,
            init_command=render("session_init").plain().strip(),
            local_infile=local_infile,
            **kwargs,
        )
    except pymysql.MySQLError as exc:
        raise ConnectionFailed(f"cannot connect to the {role} database {mask_url(url)}: {first_line(exc)}") from None


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in TRANSIENT_ERRORS


#: The server refused a packet longer than max_allowed_packet (1153, 1301), or closed the connection while
#: sending one: PyMySQL then reports InterfaceError (0, '').
PACKET_ERRORS = frozenset({1153, 1301})


def is_packet_error(exc: BaseException) -> bool:
    """A row (or statement) longer than max_allowed_packet, on either side of a row-by-row copy."""
    if isinstance(exc, pymysql.err.InterfaceError):
        return not exc.args or exc.args[0] == 0
    return isinstance(exc, pymysql.MySQLError) and bool(exc.args) and exc.args[0] in PACKET_ERRORS


def run(conn: Any, statement: str, /, **context: Any) -> None:
    """Execute one statement that takes no values (session settings, snapshots)."""
    with conn.cursor() as cur:
        cur.execute(render(statement, **context).plain())


def acquire_lock(conn: Any, name: str, timeout: float) -> bool:
    """A named lock of this session (released when the session ends); False when the wait timed out."""
    return fetch_one(conn, render("lock_acquire"), {"lock_name": name, "timeout_seconds": timeout})[0] == 1


def scope(raw_schema: str) -> dict[str, Any]:
    """Template context naming where the ETL's own tables are (the replica's copies, the copy phase's
    tracking): the connection's own database, so nothing to name."""
    return {}


def key_list(keys: list[int]) -> tuple[int, ...]:
    """A list of keys as PyMySQL binds it into ``IN :keys``."""
    return tuple(keys)


def create_database(url: URL, name: Ident, *, role: str) -> bool:
    """CREATE DATABASE (etl migrate, for the replica); False when it already existed."""
    conn = connect(url, database=False, role=role)
    try:
        with conn.cursor() as cur:
            return cur.execute(render("create_database", database=name).plain()) == 1
    finally:
        conn.close()


# ---------------------------------------------------------------- reflection

def reflect_table(conn: Any, database: str, table: str) -> TableSchema | None:
    """The live definition of `database.table`, or None when the table does not exist.

    Names found here become :class:`etl.render.Ident` values: the only identifiers templates may print."""
    params = {"schema": database, "table": table}
    rows = fetch_all(conn, render("reflect_table"), params)
    if not rows:
        return None
    _, engine, estimate = rows[0]
    columns = tuple(
        Column(
            name=Ident(r[0]), data_type=r[1].lower(), column_type=r[2].lower(), nullable=r[3] == "YES",
            default=r[4], extra=(r[5] or "").lower(), charset=r[6], collation=r[7], precision=r[8],
            scale=r[9], char_length=r[10],
        )
        for r in fetch_all(conn, render("reflect_columns"), params)
    )
    if any(c.data_type == "longtext" for c in columns) and _is_mariadb(conn):
        columns = _json_columns(conn, params, columns)
    key = tuple(Ident(r[0]) for r in fetch_all(conn, render("reflect_primary_key"), params))
    return TableSchema(schema=database, name=Ident(table), engine=engine, estimated_rows=int(estimate or 0),
                       columns=columns, primary_key=key)


_JSON_CHECK = re.compile(r"^\s*json_valid\(`((?:[^`]|``)+)`\)\s*$", re.IGNORECASE)


def _is_mariadb(conn: Any) -> bool:
    """Is the server MariaDB (its version string says so)? A connection without one (a test's fake) counts
    as MariaDB."""
    info = getattr(conn, "get_server_info", None)
    return info is None or "mariadb" in str(info()).lower()


def _json_columns(conn: Any, params: dict[str, str], columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """MariaDB's JSON is a longtext with CHECK (json_valid(`c`)): such a column is reflected with data_type
    'json' (its column_type stays longtext), so raw gets jsonb as for MySQL's own JSON."""
    checked = set()
    for (clause,) in fetch_all(conn, render("reflect_json_checks"), params):
        match = _JSON_CHECK.match(clause or "")
        if match:
            checked.add(match.group(1).replace("``", "`"))
    return tuple(replace(c, data_type="json") if c.data_type == "longtext" and c.name in checked else c
                 for c in columns)


def row_estimate(conn: Any, database: str, table: str) -> int | None:
    """The server's row estimate of a table (information_schema TABLE_ROWS): progress, small lookups."""
    row = fetch_one(conn, render("reflect_table"), {"schema": database, "table": table})
    return int(row[2]) if row and row[2] is not None else None


# ---------------------------------------------------------------- a source column in the replica

_WORD = re.compile(r"^[A-Za-z0-9_]+$")
_DDL_TYPE = re.compile(
    r"^([a-z][a-z0-9]*(\(\d+(,\d+)?\))?( unsigned)?( zerofill)?|(enum|set)\('([^'\\]|'')*'(,'([^'\\]|'')*')*\))$"
)
_DEFAULT_LITERAL = re.compile(
    r"^(NULL|-?\d+(\.\d+)?([eE][-+]?\d+)?|'[^'\\]*'|current_timestamp(\(\d?\))?)$", re.IGNORECASE
)
#: Values LOAD DATA reads as the server printed them (numbers, dates and times, zero dates included).
#: Everything else -- text, binary, bit, spatial (the server's internal bytes), uuid and inet addresses (a
#: binary-charset value is their binary form, which CAST(... AS BINARY) gives), vector -- travels as its
#: raw bytes.
_PLAIN_TEXT = INTEGER_TYPES + DATETIME_TYPES + ("decimal", "numeric", "year", "double", "real", "date", "time")


@dataclass(frozen=True)
class ReplicaColumn(Column):
    """A source column as the replica repeats it (the same declared type) and as the copy moves it."""

    @classmethod
    def of(cls, column: Column) -> "ReplicaColumn":
        return cls(**{f.name: getattr(column, f.name) for f in fields(Column)})

    @property
    def infile_kind(self) -> str:
        """How _macros/infile_text.sql.j2 writes the value: 'plain' (the server's own text), 'float'
        (through DOUBLE: the server prints FLOAT with 6 digits only) or 'raw' (its bytes, escaped)."""
        if self.data_type == "float":
            return "float"
        return "plain" if self.data_type in _PLAIN_TEXT else "raw"

    @property
    def in_parts(self) -> bool:
        """A value that may be longer than max_allowed_packet (medium and long text and blobs): the row-by-row
        copy reads and writes it in parts in a long row. Not JSON: a CHECK (json_valid) or MySQL's JSON type
        refuses the partial value."""
        return self.data_type in ("mediumtext", "longtext", "mediumblob", "longblob")

    @property
    def ddl_type(self) -> str:
        """The declared type, checked to be of a plain shape before it is repeated in replica DDL."""
        if not _DDL_TYPE.match(self.column_type):
            raise SchemaError(f"column {self.name!r} has a type this tool cannot repeat safely: {self.column_type}")
        return self.column_type

    @property
    def ddl_json_check(self) -> bool:
        """MariaDB's JSON (a longtext with CHECK (json_valid(...))) keeps its check in the replica, so the
        replica's column reflects as JSON too (the load maps what the replica holds)."""
        return self.data_type == "json" and self.column_type != "json"

    @property
    def ddl_charset(self) -> str | None:
        return self.charset if self.charset and _WORD.match(self.charset) else None

    @property
    def ddl_collation(self) -> str:
        if not self.collation or not _WORD.match(self.collation):
            raise SchemaError(f"column {self.name!r} has an unexpected collation {self.collation!r}")
        return self.collation

    @property
    def ddl_default(self) -> str | None:
        """A column default safe to repeat in replica DDL, or None to leave it out.

        Defaults cannot be binds in DDL, so only literals of a few strict shapes are repeated; anything
        else is dropped (the replica always receives explicit values from the source)."""
        if self.default is None:
            return None
        literal = self.default.strip()
        return literal if _DEFAULT_LITERAL.match(literal) else None


def map_table(schema: TableSchema) -> TableSchema:
    """The source table as the copy phase sees it: columns that know their replica DDL and infile text."""
    return replace(schema, columns=tuple(ReplicaColumn.of(c) for c in schema.columns))


# ---------------------------------------------------------------- a source column that changed type

#: The values each integer type holds: (type, unsigned?) -> (least, greatest).
_INTEGER_RANGE = {
    (t, unsigned): ((0, 2 ** bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    for t, bits in (("tinyint", 8), ("smallint", 16), ("mediumint", 24), ("int", 32), ("integer", 32),
                    ("bigint", 64))
    for unsigned in (False, True)
}
#: Bytes a value of each text and blob type may hold.
_TEXT_BYTES = {"tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295}
_BLOB_BYTES = {"tinyblob": 255, "blob": 65535, "mediumblob": 16777215, "longblob": 4294967295}
#: A character takes at most this many bytes (utf8mb4; a narrower charset only makes a value shorter).
_MAX_CHAR_BYTES = 4
#: Charset changes that keep every character: the old charset is a subset of the new one.
_CHARSET_WIDENS = {("utf8", "utf8mb4"), ("utf8mb3", "utf8mb4"), ("ascii", "utf8mb4"), ("ascii", "utf8mb3"),
                   ("ascii", "utf8"), ("ascii", "latin1")}
_FSP = re.compile(r"\((\d+)\)")


def type_change(old: Column, new: Column) -> str:
    """How a column's declared type changed between the replica (`old`) and the source (`new`): 'same',
    'wider' (every value of the old type fits the new one unchanged: the replica column is altered in
    place) or 'narrower' (some value could be cut or converted: never applied in place; a full refresh
    rebuilds the table). Judged from the declared types alone."""
    if old.column_type == new.column_type and (old.charset or "") == (new.charset or ""):
        return "same"
    if old.data_type in INTEGER_TYPES and new.data_type in INTEGER_TYPES:
        before, after = _INTEGER_RANGE[(old.data_type, old.unsigned)], _INTEGER_RANGE[(new.data_type, new.unsigned)]
        if before == after and "zerofill" not in old.column_type + new.column_type:
            return "same"  # a display width (int(11) vs int) changes no value
        # signed -> unsigned counts as wider when the new type holds the old maximum: the source holds no
        # negative value then (its own ALTER refused or zeroed them), and in the replica's strict session
        # a negative value left behind fails the ALTER instead of being clamped
        return "wider" if before[1] <= after[1] and (after[0] <= before[0] or new.unsigned) else "narrower"
    if (old.charset or "") != (new.charset or "") and (old.charset, new.charset) not in _CHARSET_WIDENS:
        return "narrower"
    t0, t1 = old.data_type, new.data_type
    # reflection may hand sizes over as text (a raw-text session)
    p0, s0, p1, s1 = (int(v or 0) for v in (old.precision, old.scale, new.precision, new.scale))
    if t0 in ("decimal", "numeric") and t1 in ("decimal", "numeric"):
        sign = old.unsigned or not new.unsigned
        return "wider" if p1 - s1 >= p0 - s0 and s1 >= s0 and sign else "narrower"
    if t0 in INTEGER_TYPES and t1 in ("decimal", "numeric"):
        least, greatest = _INTEGER_RANGE[(t0, old.unsigned)]
        digits = len(str(max(abs(least), greatest)))
        return "wider" if p1 - s1 >= digits and (least >= 0 or not new.unsigned) else "narrower"
    if (t0, t1) in (("float", "double"), ("float", "float"), ("double", "double")):
        return "wider" if old.unsigned or not new.unsigned else "narrower"
    # char strips trailing spaces, varchar keeps them: char -> varchar keeps every value, not the reverse
    if t0 in ("char", "varchar") and t1 in ("varchar",) or (t0, t1) == ("char", "char"):
        return "wider" if _length(new) >= _length(old) else "narrower"
    if t0 in ("char", "varchar", *_TEXT_BYTES) and t1 in _TEXT_BYTES:
        before = _TEXT_BYTES.get(t0) or _length(old) * _MAX_CHAR_BYTES
        return "wider" if _TEXT_BYTES[t1] >= before else "narrower"
    if (t0, t1) == ("varbinary", "varbinary"):
        return "wider" if _length(new) >= _length(old) else "narrower"
    if t0 in ("varbinary", *_BLOB_BYTES) and t1 in _BLOB_BYTES:
        return "wider" if _BLOB_BYTES[t1] >= (_BLOB_BYTES.get(t0) or _length(old)) else "narrower"
    if t0 == t1 and t0 in ("enum", "set"):  # members added at the end: every stored value keeps its meaning
        return "wider" if new.column_type.startswith(old.column_type[:-1] + ",") else "narrower"
    if t0 == t1 and t0 in ("datetime", "timestamp", "time"):  # more fractional digits
        return "wider" if _fsp(new.column_type) >= _fsp(old.column_type) else "narrower"
    return "narrower"


def _length(column: Column) -> int:
    """The declared length of a char/varchar/varbinary column (reflection's, else the declared type's)."""
    if column.char_length:
        return int(column.char_length)
    found = _FSP.search(column.column_type)
    return int(found.group(1)) if found else 0


def _fsp(column_type: str) -> int:
    found = _FSP.search(column_type)
    return int(found.group(1)) if found else 0


# ---------------------------------------------------------------- LOAD DATA infile text, block by block

#: Block folders are named etl-copy-<pid>-<random> in the system's temporary directory, so that a later
#: run can tell the folders of a process that died (SIGKILL, a power cut) from those of a live run.
BLOCK_FOLDER_PREFIX = "etl-copy-"


@contextlib.contextmanager
def block_files() -> Iterator[Callable[[bytes], str]]:
    """A private folder for the blocks LOAD DATA LOCAL INFILE reads; yields write(data) -> path. A block is
    its rows joined by newlines (mysql/copy_select): the last line's newline is added here.

    The blocks hold patient data: the folder is 0700 and the file 0600 (whatever the umask), and both
    are removed on every way out of the with-block; a process killed outright leaves them to
    :func:`sweep_block_folders` of the next run."""
    folder = tempfile.mkdtemp(prefix=f"{BLOCK_FOLDER_PREFIX}{os.getpid()}-")  # mkdtemp: mode 0700
    path = os.path.join(folder, "block.txt")

    def write(data: bytes) -> str:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.write(b"\n")
        return path

    try:
        yield write
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def kill_query(conn: Any) -> None:
    """End the statement `conn` is running, from a connection of its own (a clean stop, etl/stop.py)."""
    from etl.db import execute

    killer = pymysql.connect(host=conn.host, port=conn.port, user=conn.user, password=conn.password,
                             connect_timeout=5, autocommit=True)
    try:
        with killer.cursor() as cur:
            execute(cur, render("kill_query"), {"thread_id": conn.thread_id()})
    finally:
        killer.close()


class StatementProgress:
    """Rows a long statement on `conn` has written so far (its InnoDB transaction's count), polled from a
    connection of its own that opens on the first poll; None when the server will not say."""

    def __init__(self, conn: Any):
        self.conn, self.watcher, self.failed = conn, None, False

    def __call__(self) -> int | None:
        from etl.db import fetch_one

        if self.failed:
            return None
        try:
            if self.watcher is None:
                self.watcher = pymysql.connect(host=self.conn.host, port=self.conn.port, user=self.conn.user,
                                               password=self.conn.password, connect_timeout=5, autocommit=True)
            row = fetch_one(self.watcher, render("statement_progress"), {"thread_id": self.conn.thread_id()})
            return int(row[0]) if row and row[0] is not None else None
        except Exception:  # progress is not worth failing for: shown as time elapsed instead
            self.failed = True
            return None

    def close(self) -> None:
        if self.watcher is not None:
            try:
                self.watcher.close()
            except Exception:
                pass


def sweep_block_folders(directory: str | None = None) -> list[str]:
    """Remove the block folders left by runs of this user whose process is gone; returns their paths."""
    directory = directory or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(BLOCK_FOLDER_PREFIX):
            continue
        pid_text = entry.name[len(BLOCK_FOLDER_PREFIX):].split("-", 1)[0]
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that number: not ours to judge
        return True
    return True
