"""Big values (scanned documents as base64 text, images in blobs): copied and loaded byte for byte on every
path, whatever their size up to what the server can hold; never NULL, never cut."""

from __future__ import annotations

import contextlib
import hashlib
import random

import pytest

import etl.phases.copy
from etl.config import load_config
from etl.runner import run_phases
from tests.conftest import _mysql_admin
from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

KIB, MIB = 1 << 10, 1 << 20
DDL = """
CREATE TABLE document (
  DocNum bigint(20) NOT NULL,
  Description varchar(255) NOT NULL DEFAULT '',
  RawBase64 longtext,
  Thumbnail longblob,
  DateTStamp datetime NOT NULL,
  PRIMARY KEY (DocNum)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb3
"""
CONFIG = {"incremental_columns": ["DateTStamp"], "primary_incremental_column": "DateTStamp",
          "primary_key": "DocNum", "extraction_strategy": "incremental", "batch_size": 50}
STAMP = "2024-05-01 10:00:00"


def mime_text(size: int, seed: int) -> str:
    """MIME-style text: lines of 76 characters and CRLF, with tabs, backslashes and a non-ASCII letter
    mixed in (every character the COPY and LOAD DATA texts escape, except NUL, which raw cannot hold)."""
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    line = "".join(rng.choice(alphabet) for _ in range(70)) + "\t\\é\\"
    body = (line + "\r\n") * (size // (len(line) + 2) + 1)
    return body[:size]


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@contextlib.contextmanager
def max_allowed_packet(size: int):
    """The server's global max_allowed_packet (a session cannot change its own), restored afterwards; new
    connections see it."""
    admin = _mysql_admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.max_allowed_packet")
            before = int(cur.fetchone()[0])
            cur.execute("SET GLOBAL max_allowed_packet = %s", (max(size, before),))
        try:
            yield before
        finally:
            with admin.cursor() as cur:
                cur.execute("SET GLOBAL max_allowed_packet = %s", (before,))
    finally:
        admin.close()


def server_packet() -> int:
    admin = _mysql_admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.max_allowed_packet")
            return int(cur.fetchone()[0])
    finally:
        admin.close()


def _digest(value) -> tuple | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else bytes(value)
    return len(data), hashlib.sha256(data).hexdigest()


def source_rows(p: Pipeline, db: str = "source"):
    fetch = p.source if db == "source" else p.replica
    return [(r[0], r[1], _digest(r[2]), _digest(r[3]))
            for r in fetch("SELECT DocNum, Description, RawBase64, Thumbnail FROM document ORDER BY DocNum")]


def raw_rows(p: Pipeline):
    return [(r[0], r[1], _digest(r[2]), _digest(r[3])) for r in p.raw(
        'SELECT "DocNum", "Description", "RawBase64", "Thumbnail" FROM raw.document ORDER BY "DocNum"')]


def insert(p: Pipeline, num: int, text: str | None, data: bytes | None, stamp: str = STAMP):
    p.source("INSERT INTO document (DocNum, Description, RawBase64, Thumbnail, DateTStamp) VALUES (%s, %s, %s, %s, %s)",
             (num, f"doc {num}", text, data, stamp))


PATHS = ["same-server", "separate-servers", "row-by-row"]


def _settings(p: Pipeline, path: str, monkeypatch):
    if path == "row-by-row":
        monkeypatch.setattr(etl.phases.copy, "infile_enabled", lambda replica: False)
    return p.settings if path == "same-server" else p.separate_servers()


@pytest.mark.parametrize("path", PATHS)
def test_big_values_arrive_byte_for_byte(settings, path, monkeypatch):
    """1 KiB, 1 MiB, 9 MiB and 20 MiB of text and binary, in one table with small and NULL rows, through
    the copy path under test and the load; the expected values are computed here, not read back."""
    p = Pipeline(settings, {"document": CONFIG})
    p.source(DDL)
    sizes = [KIB, MIB, 9 * MIB, 20 * MIB]
    expected = []
    with max_allowed_packet(64 * MIB):
        insert(p, 1, "small", b"\x00\x01")
        insert(p, 2, None, None)
        for i, size in enumerate(sizes, start=3):
            text, data = mime_text(size, i), blob(size, i)
            insert(p, i, text, data)
            expected.append((i, f"doc {i}", _digest(text), _digest(data)))
        insert(p, 9, "", b"")
    expected = ([(1, "doc 1", _digest("small"), _digest(b"\x00\x01")), (2, "doc 2", None, None)] + expected
                + [(9, "doc 9", _digest(""), _digest(b""))])
    # The block paths and the load run at the server's own setting (16 MiB by default: below the 20 MiB
    # values). The row-by-row copy writes with statements, and the server builds no value longer than its
    # max_allowed_packet from a statement: 32 MiB holds each value, not the 40 MiB row (read and written in
    # parts).
    with max_allowed_packet(32 * MIB if path == "row-by-row" else 0):
        p.run(settings=_settings(p, path, monkeypatch))
    assert source_rows(p) == expected
    assert source_rows(p, "replica") == expected
    assert raw_rows(p) == expected
    # verify hashes rows on the servers, at the server's own max_allowed_packet (below the 20 MiB values):
    # a long value enters the row hash as its MD5, since its HEX or the row's CONCAT would come back NULL
    # and hash like a NULL. One byte changed in raw's 20 MiB text is found.
    from etl.verify import verify

    config = load_config(p.settings.tables_path)
    report = verify(p.settings, config)
    assert report["ok"] and report["differing_rows"] == 0, report["tables"][0]["pairs"]
    p.raw('UPDATE raw.document SET "RawBase64" = overlay("RawBase64" placing \'#\' from 10000000) '
          'WHERE "DocNum" = 6')
    report = verify(p.settings, config)
    assert not report["ok"] and report["differing_rows"] == 1, report["tables"][0]["pairs"]


@pytest.mark.parametrize("path", PATHS)
def test_a_value_longer_than_max_allowed_packet_arrives_or_fails_naming_the_setting(settings, path, monkeypatch):
    """A value written while the server allowed it, read after max_allowed_packet was lowered below it: the
    block paths and the load read it in parts; the row-by-row copy, which writes with statements (the server
    builds no longer value from one), rejects the row naming the value and the setting (never a NULL), moves
    the rest of the table, and moves the row once the setting is raised."""
    p = Pipeline(settings, {"document": CONFIG})
    p.source(DDL)
    limit = server_packet()
    size = limit + MIB
    text, data = mime_text(size, 1), blob(size // 2, 2)
    with max_allowed_packet(size * 3):
        insert(p, 1, text, data)
    insert(p, 2, "after", b"x", stamp="2024-05-02 00:00:00")
    run_settings = _settings(p, path, monkeypatch)
    expected = [(1, "doc 1", _digest(text), _digest(data)), (2, "doc 2", _digest("after"), _digest(b"x"))]
    if path == "row-by-row":
        results = run_phases(run_settings, load_config(run_settings.tables_path), ["copy", "load"])
        copy = next(r for r in results if r.phase == "copy")
        assert copy.ok and len(copy.rejected) == 1 and "key ['1']" in copy.rejected[0]
        assert "raise max_allowed_packet on the replica" in copy.rejected[0]
        assert p.replica("SELECT DocNum FROM document") == ((2,),)
        with max_allowed_packet(size * 3):
            p.run(settings=run_settings)
    else:
        p.run(settings=run_settings)
    assert raw_rows(p) == expected
    with max_allowed_packet(size * 3):
        assert source_rows(p, "replica") == expected


def test_the_row_by_row_copy_moves_a_row_longer_than_max_allowed_packet_in_parts(settings, monkeypatch):
    """Separate servers without LOAD DATA LOCAL: a row of two values, each below max_allowed_packet, the row
    well above it (both servers' setting, lowered after the row was written), is read with its long values
    held back and in parts, written empty and then appended in parts: exit 0, byte for byte in the replica
    and in raw; an unrelated later edit of the table arrives on the next run."""
    p = Pipeline(settings, {"document": CONFIG})
    p.source(DDL)
    limit = server_packet()
    text, data = mime_text(limit * 7 // 10, 1), blob(limit * 7 // 10, 2)
    with max_allowed_packet(limit * 3):
        insert(p, 1, text, data)
    insert(p, 2, "after", b"x", stamp="2024-05-02 00:00:00")
    run_settings = _settings(p, "row-by-row", monkeypatch)
    expected = [(1, "doc 1", _digest(text), _digest(data)), (2, "doc 2", _digest("after"), _digest(b"x"))]
    p.run(settings=run_settings)
    assert raw_rows(p) == expected
    with max_allowed_packet(limit * 3):
        assert source_rows(p) == expected
        assert source_rows(p, "replica") == expected
    p.source("UPDATE document SET Description = 'edited', DateTStamp = '2024-05-03 00:00:00' WHERE DocNum = 2")
    p.run(settings=run_settings)
    expected[1] = (2, "edited", _digest("after"), _digest(b"x"))
    assert raw_rows(p) == expected
    with max_allowed_packet(limit * 3):
        assert source_rows(p, "replica") == expected


def _cli_env(p: Pipeline, settings, monkeypatch) -> None:
    for name, url in (("ETL_SOURCE_URL", settings.source_url), ("ETL_REPLICA_URL", settings.replica_url),
                      ("ETL_ANALYTICS_URL", settings.analytics_url)):
        monkeypatch.setenv(name, url.render_as_string(hide_password=False))
    monkeypatch.setenv("ETL_TABLES", str(settings.tables_path))
    monkeypatch.setenv("ETL_RAW_SCHEMA", settings.raw_schema)


def test_a_row_the_replica_cannot_build_is_rejected_retried_and_moves_once_the_setting_is_raised(
        settings, monkeypatch, capsys):
    """The row-by-row copy and a value longer than the replica's max_allowed_packet: the row is recorded in
    etl_copy_rejects (key, column, size, the setting), the rest of the table and a later unrelated edit
    arrive, `etl copy` exits 1 naming it, `etl status` and `etl verify` show it; every run retries it, and
    the first run after the setting is raised moves it byte for byte, forgets it and exits 0."""
    from etl.cli import main

    p = Pipeline(settings, {"document": CONFIG})
    p.source(DDL)
    limit = server_packet()
    size = limit + MIB
    text, data = mime_text(size, 1), blob(KIB, 2)
    with max_allowed_packet(size * 3):
        insert(p, 1, text, data)
    insert(p, 2, "before", b"y", stamp="2024-04-30 00:00:00")
    insert(p, 3, "after", b"x", stamp="2024-05-02 00:00:00")
    run_settings = _settings(p, "row-by-row", monkeypatch)
    _cli_env(p, run_settings, monkeypatch)
    others = [(2, "doc 2", _digest("before"), _digest(b"y")), (3, "doc 3", _digest("after"), _digest(b"x"))]
    stored = len(text.encode())  # bytes: é takes two
    line = (f"copy document: the row with key ['1'] was not copied: its value of RawBase64 holds {stored:,} bytes; "
            f"raise max_allowed_packet on the replica ({limit:,} bytes) above it (retried on every run)")

    def rejects():
        return p.replica("SELECT table_name, key_value, column_name, size_bytes, setting, first_seen, last_tried "
                         "FROM etl_copy_rejects")

    capsys.readouterr()
    assert main(["copy"]) == 1
    assert line in capsys.readouterr().out
    assert main(["load"]) == 0
    (first,) = rejects()
    assert first[:5] == ("document", '["1"]', "RawBase64", stored,
                         f"max_allowed_packet on the replica ({limit:,} bytes)")
    assert source_rows(p, "replica") == others
    assert raw_rows(p) == others
    assert [r for r in source_rows(p) if r[0] != 1] == others

    # An unrelated later edit arrives although the rejected row is still there; the row is tried again.
    p.source("UPDATE document SET Description = 'edited', DateTStamp = '2024-05-03 00:00:00' WHERE DocNum = 3")
    assert main(["copy"]) == 1
    assert main(["load"]) == 0
    others[1] = (3, "edited", _digest("after"), _digest(b"x"))
    (again,) = rejects()
    assert again[5] == first[5] and again[6] > first[6]          # first seen kept, tried again
    assert source_rows(p, "replica") == others
    assert raw_rows(p) == others
    assert [r for r in source_rows(p) if r[0] != 1] == others
    capsys.readouterr()
    assert main(["status"]) == 0
    assert f"document: 1 row(s) rejected by the copy; {line}" in capsys.readouterr().out

    with max_allowed_packet(size * 3):
        # verify hashes rows on the server: a value above max_allowed_packet needs the setting raised there
        assert main(["verify"]) == 1
        assert "1 rejected by the copy: " + line in capsys.readouterr().out
        assert main(["copy"]) == 0
        assert main(["load"]) == 0
        assert rejects() == ()
        expected = [(1, "doc 1", _digest(text), _digest(data))] + others
        assert source_rows(p) == expected
        assert source_rows(p, "replica") == expected
    assert raw_rows(p) == expected
