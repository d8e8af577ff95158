"""Round-trip fidelity of every type in the map, at its edges: source -> replica (both copy paths) -> raw."""

from __future__ import annotations

import datetime as dt
import random
import struct
from decimal import Decimal

import pytest

from tests.integration.engine_helpers import Pipeline

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE typezoo (
  id int NOT NULL,
  ti tinyint(4), tiu tinyint(3) unsigned, bool1 tinyint(1), si smallint, siu smallint unsigned,
  mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
  dec1 decimal(10,2), dec2 decimal(30,10), dbl double, flt float,
  d date, dtm datetime, dtm6 datetime(6), ts timestamp NULL DEFAULT NULL, tm time, tm3 time(3), yr year,
  ch char(3), vc varchar(20), tx text, mtx mediumtext, ltx longtext,
  bin binary(4), vbin varbinary(16), bl blob, en enum('a','b','it''s'), st set('x','y'),
  stamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00',
  PRIMARY KEY (id)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4
"""
COLUMNS = ["id", "ti", "tiu", "bool1", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "dec1", "dec2", "dbl",
           "flt", "d", "dtm", "dtm6", "ts", "tm", "tm3", "yr", "ch", "vc", "tx", "mtx", "ltx", "bin", "vbin", "bl",
           "en", "st"]

EDGE_ROWS = [
    (1, -128, 255, 1, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
     18446744073709551615, Decimal("-99999999.99"), Decimal("12345678901234567890.0123456789"),
     1.7976931348623157e308, 3.4028234663852886e38, "0001-01-01", "0001-01-01 00:00:00",
     "9999-12-31 23:59:59.999999", "2038-01-19 03:14:07", "838:59:59", "-838:59:59.000", 2155,
     "abc", "emoji \U0001F9B7 ok", "tab\there\nnew\\line\r", "x" * 70000, "é" * 10, b"\x00\x01\xfe\xff",
     b"\x00" * 16, bytes(range(256)), "it's", "x,y"),
    (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Decimal("0.00"), Decimal("0E-10"), 5e-324, 1.17549435e-38,
     "0000-00-00", "0000-00-00 00:00:00", "2022-11-00 10:00:00", None, "-01:00:00", "00:00:00.5", 1901,
     "", "", "", "", "", b"\x00\x00\x00\x00", b"", b"", "a", ""),
    (3, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None,
     None, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
    (4, 127, 128, 0, 1, 1, 1, 1, 1, 1, 9223372036854775807, 9223372036854775808, Decimal("0.10"),
     Decimal("-0.0000000001"), -0.1, 0.1, "2024-02-29", "2024-02-29 23:59:59", "1970-01-01 00:00:00.000001",
     "1970-01-01 00:00:01", "12:34:56", "-00:00:00.001", 2024, "a\\b", "null \\N text", "NUL\x00inside", None,
     "\\", None, None, None, None, None),
]


def _random_doubles(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    values = []
    while len(values) < n:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value and abs(value) != float("inf"):
            values.append(value)
    return values


@pytest.fixture
def zoo(settings):
    p = Pipeline(settings, {"typezoo": {"primary_incremental_column": "stamp", "incremental_columns": ["stamp"],
                                        "primary_key": "id", "batch_size": 7}})
    p.source(DDL)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    for row in EDGE_ROWS:
        p.source(f"INSERT INTO typezoo ({', '.join(COLUMNS)}) VALUES ({placeholders})", row)
    for i, value in enumerate(_random_doubles(7, 200), start=100):
        p.source("INSERT INTO typezoo (id, dbl, flt) VALUES (%s, %s, %s)", (i, value, value / 1e300 if abs(value) > 1e30 else value))
    return p


def _source_rows(p: Pipeline, where: str = ""):
    cols = ", ".join(f"CAST({c} AS DOUBLE)" if c == "flt" else c for c in COLUMNS)
    return p.source(f"SELECT {cols} FROM typezoo {where} ORDER BY id")


@pytest.mark.parametrize("streaming", [False, True], ids=["same-server", "separate-servers"])
def test_replica_is_an_exact_copy(zoo, streaming):
    zoo.run(["copy"], settings=zoo.separate_servers() if streaming else zoo.settings)
    cols = ", ".join(f"CAST({c} AS DOUBLE)" if c == "flt" else c for c in COLUMNS)
    assert zoo.replica(f"SELECT {cols} FROM typezoo ORDER BY id") == _source_rows(zoo)
    engine = zoo.replica("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                         "AND TABLE_NAME = 'typezoo'")
    assert engine == (("InnoDB",),)


def test_raw_types_follow_the_map(zoo):
    zoo.run()
    types = dict(zoo.raw("SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
                         "JOIN pg_attribute a ON a.attrelid = 'raw.typezoo'::regclass AND a.attname = c.column_name "
                         "WHERE table_schema = 'raw' AND table_name = 'typezoo'"))
    assert types == {
        "id": "integer", "ti": "smallint", "tiu": "smallint", "bool1": "smallint", "si": "smallint",
        "siu": "integer", "mi": "integer", "miu": "integer", "i": "integer", "iu": "bigint", "bi": "bigint",
        "biu": "numeric(20,0)", "dec1": "numeric(10,2)", "dec2": "numeric(30,10)", "dbl": "double precision",
        "flt": "real", "d": "date", "dtm": "timestamp without time zone", "dtm6": "timestamp without time zone",
        "ts": "timestamp without time zone", "tm": "interval", "tm3": "interval", "yr": "smallint",
        "ch": "character varying(3)", "vc": "character varying(20)", "tx": "text", "mtx": "text", "ltx": "text",
        "bin": "bytea", "vbin": "bytea", "bl": "bytea", "en": "text", "st": "text",
        "stamp": "timestamp without time zone", "_etl_load_id": "bigint",
        "_etl_loaded_at": "timestamp without time zone",
    }


def test_values_arrive_in_raw_exactly(zoo):
    zoo.run()
    raw = {r[0]: r for r in zoo.raw(f"SELECT {', '.join(chr(34) + c + chr(34) for c in COLUMNS)} FROM raw.typezoo")}
    edge = raw[1]
    assert edge[1:12] == (-128, 255, 1, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
                          -9223372036854775808, Decimal(18446744073709551615))
    assert edge[12:14] == (Decimal("-99999999.99"), Decimal("12345678901234567890.0123456789"))
    assert edge[14] == 1.7976931348623157e308
    assert edge[16:19] == (dt.date(1, 1, 1), dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
    assert edge[20] == dt.timedelta(hours=838, minutes=59, seconds=59)
    assert edge[21] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert edge[23:26] == ("abc", "emoji \U0001F9B7 ok", "tab\there\nnew\\line\r")
    assert edge[26] == "x" * 70000
    assert bytes(edge[28]) == b"\x00\x01\xfe\xff" and bytes(edge[30]) == bytes(range(256))
    assert edge[31:33] == ("it's", "x,y")

    zero = raw[2]
    assert zero[16:19] == (None, None, None)  # zero and partial dates become NULL
    assert zero[20] == -dt.timedelta(hours=1) and zero[21] == dt.timedelta(milliseconds=500)
    assert zero[14] == 5e-324
    assert zero[23:28] == ("", "", "", "", "")  # empty strings stay empty strings

    assert all(v is None for v in raw[3][1:])
    assert raw[4][25] == "NULinside"  # NUL removed (documented rule), counted below
    assert raw[4][24] == "null \\N text" and raw[4][23] == "a\\b" and raw[4][27] == "\\"

    adjusted = zoo.raw("SELECT values_adjusted FROM raw.etl_run_history WHERE phase = 'load'")[0][0]
    assert adjusted == 4  # three zero/partial dates of row 2, one NUL of row 4

    # Doubles bit-exact; FLOAT exact to its 4-byte value.
    source = {r[0]: r for r in zoo.source("SELECT id, dbl, CAST(flt AS DOUBLE) FROM typezoo WHERE id >= 100")}
    raw_d = {r[0]: r for r in zoo.raw('SELECT "id", "dbl", "flt"::float8 FROM raw.typezoo WHERE "id" >= 100')}
    for key, (_, dbl, flt) in source.items():
        assert struct.pack("<d", raw_d[key][1]) == struct.pack("<d", dbl), key
        assert raw_d[key][2] == flt, key


# ---------------------------------------------------------------- the rest of the MariaDB / MySQL types

MORE_DDL = """
CREATE TABLE typezoo2 (
  id int NOT NULL,
  b1 bit(1), b5 bit(5), b64 bit(64), u uuid, i4 inet4, i6 inet6,
  g geometry, p point, ls linestring, pg polygon, mp multipoint, mls multilinestring, mpg multipolygon,
  gc geometrycollection, j json, c0 char(0), d2 double(10,2), f2 float(7,3), tm6 time(6), yr year,
  stamp timestamp NOT NULL DEFAULT '2024-01-01 00:00:00',
  PRIMARY KEY (id)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4
"""
SPATIAL = ["g", "p", "ls", "pg", "mp", "mls", "mpg", "gc"]
MORE_COLUMNS = ["id", "b1", "b5", "b64", "u", "i4", "i6", *SPATIAL, "j", "c0", "d2", "f2", "tm6", "yr"]
WKT = ["POINT(1 2)", "POINT(1.5 -2.25)", "LINESTRING(0 0,1 1,2 3)", "POLYGON((0 0,10 0,10 10,0 10,0 0),(1 1,2 1,2 2,1 1))",
       "MULTIPOINT(1 1,2 2)", "MULTILINESTRING((0 0,1 1),(2 2,3 3))", "MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))",
       "GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1))"]
WKT2 = ["MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))", "POINT(-180 90)", "LINESTRING(1e10 -1e-10,0.1 0.2)",
        "POLYGON((0 0,1 0,0 1,0 0))", "MULTIPOINT(0 0)", "MULTILINESTRING((1 2,3 4))", "MULTIPOLYGON(((0 0,2 0,0 2,0 0)))",
        "GEOMETRYCOLLECTION EMPTY"]
MORE_ROWS = [
    # id, b1, b5, b64, u, i4, i6, (spatial as WKT), j, c0, d2, f2, tm6, yr
    (1, 1, 21, 18446744073709551615, "123e4567-e89b-12d3-a456-426614174000", "192.0.2.1", "2001:db8:0:1:1:1:1:1",
     *WKT, '{"a": [1, 2.50, "x\\ty"], "b": {"c": null}}', "", 12.345, 1.2345, "-838:59:59.999999", 0),
    (2, 0, 0, 0, "00000000-0000-0000-0000-000000000000", "0.0.0.0", "::",
     *["GEOMETRYCOLLECTION EMPTY"] + [None] * 7, "[]", "", -0.01, -3.5, "00:00:00.000001", 1901),
    (3, None, None, None, None, None, None, *[None] * 8, None, None, None, None, None, None),
    (4, 1, 31, 9223372036854775808, "ffffffff-ffff-ffff-ffff-ffffffffffff", "255.255.255.255", "::ffff:192.0.2.1",
     *WKT2, '"just a string with \\u00e9"', None, 99999999.99, 9999.999, "838:59:59.5", 2155),
    (5, 0, 1, 1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "10.0.0.1", "fe80:0:0:1:0:0:0:1",
     *[None] * 8, '{"emoji": "\U0001F9B7", "nested": [[], {}], "n": 1e400}', "", 0, 0, "12:34:56.789012", 2024),
]


@pytest.fixture
def zoo2(settings):
    p = Pipeline(settings, {"typezoo2": {"primary_incremental_column": "stamp", "incremental_columns": ["stamp"],
                                         "primary_key": "id", "batch_size": 2}})
    p.source(MORE_DDL)
    values = ", ".join("ST_GeomFromText(%s)" if c in SPATIAL else "%s" for c in MORE_COLUMNS)
    for row in MORE_ROWS:
        p.source(f"INSERT INTO typezoo2 ({', '.join(MORE_COLUMNS)}) VALUES ({values})", row)
    return p


def _exact(column: str) -> str:
    """A column as bytes or text that hides nothing: bit and spatial values by their stored bytes, FLOAT as
    DOUBLE (the server prints FLOAT with 6 digits), uuid and inet addresses as the server's text."""
    if column in ("f2", "d2"):
        return f"CAST({column} AS DOUBLE)"
    if column in ("b1", "b5", "b64", *SPATIAL):
        return f"HEX(CAST({column} AS BINARY))"
    return column


@pytest.mark.parametrize("streaming", [False, True], ids=["same-server", "separate-servers"])
def test_replica_is_an_exact_copy_of_every_other_type(zoo2, streaming, monkeypatch):
    zoo2.run(["copy"], settings=zoo2.separate_servers() if streaming else zoo2.settings)
    select = f"SELECT {', '.join(_exact(c) for c in MORE_COLUMNS)} FROM typezoo2 ORDER BY id"
    source, replica = zoo2.source(select), zoo2.replica(select)
    assert len(source) == len(MORE_ROWS)
    for s, r in zip(source, replica):
        for column, a, b in zip(MORE_COLUMNS, s, r):
            assert a == b, (s[0], column, a, b)
    # The replica's JSON column is JSON too (its check kept): the load reads the replica's definition.
    checks = zoo2.replica("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                          "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'typezoo2'")
    assert checks == (("json_valid(`j`)",),)


def test_replica_row_by_row_copy_of_every_other_type(zoo2, monkeypatch):
    from etl.phases import copy
    monkeypatch.setattr(copy, "infile_enabled", lambda replica: False)  # a replica with local_infile=OFF
    zoo2.run(["copy"], settings=zoo2.separate_servers())
    select = f"SELECT {', '.join(_exact(c) for c in MORE_COLUMNS)} FROM typezoo2 ORDER BY id"
    assert zoo2.replica(select) == zoo2.source(select)


def test_raw_types_of_every_other_type(zoo2):
    zoo2.run()
    types = dict(zoo2.raw("SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
                          "JOIN pg_attribute a ON a.attrelid = 'raw.typezoo2'::regclass AND a.attname = c.column_name "
                          "WHERE table_schema = 'raw' AND table_name = 'typezoo2' AND column_name NOT LIKE '\\_etl%%'"))
    assert types == {
        "id": "integer", "b1": "bit(1)", "b5": "bit(5)", "b64": "bit(64)", "u": "uuid", "i4": "inet", "i6": "inet",
        **{c: "bytea" for c in SPATIAL}, "j": "jsonb", "c0": "text", "d2": "double precision", "f2": "real",
        "tm6": "interval", "yr": "smallint", "stamp": "timestamp without time zone",
    }


def test_every_other_type_arrives_in_raw_exactly(zoo2):
    import ipaddress
    import json
    import uuid

    zoo2.run()
    source = {r[0]: r for r in zoo2.source(
        "SELECT id, " + ", ".join(
            f"BIN({c} + 0)" if c.startswith("b") else
            f"ST_AsBinary({c})" if c in SPATIAL else
            f"CAST({c} AS DOUBLE)" if c in ("f2", "d2") else
            "yr + 0" if c == "yr" else c
            for c in MORE_COLUMNS[1:]) + " FROM typezoo2")}
    raw = {r[0]: r for r in zoo2.raw(
        "SELECT " + ", ".join("f2::float8" if c == "f2" else "j::text" if c == "j" else f'"{c}"'
                              for c in MORE_COLUMNS) + " FROM raw.typezoo2")}
    assert sorted(raw) == sorted(source)
    widths = {"b1": 1, "b5": 5, "b64": 64}
    for key, s in source.items():
        for column, a, b in zip(MORE_COLUMNS, s, raw[key]):
            where = (key, column, a, b)
            if a is None:
                assert b is None, where
            elif column in widths:
                assert b == a.zfill(widths[column]), where           # the same bits, every one
            elif column == "u":
                assert uuid.UUID(b) == uuid.UUID(a) and str(b) == a, where
            elif column in ("i4", "i6"):
                assert ipaddress.ip_address(b) == ipaddress.ip_address(a), where
            elif column in SPATIAL:
                assert bytes(b) == bytes(a), where                    # WKB, byte for byte
            elif column == "j":
                assert json.loads(b, parse_float=Decimal) == json.loads(a, parse_float=Decimal), where
            elif column == "tm6":
                assert b == _duration(a), where
            else:
                assert b == a, where
    # Values written out, independently of either server.
    assert raw[1][1:4] == ("1", "10101", "1" * 64) and raw[4][3] == "1" + "0" * 63
    assert bytes(raw[1][8]) == bytes.fromhex("0101000000000000000000F83F00000000000002C0")  # POINT(1.5 -2.25)
    assert raw[1][-4:] == (12.35, 1.2339999675750732, -dt.timedelta(hours=838, minutes=59, seconds=59,
                                                                     microseconds=999999), 0)
    assert raw[5][-3] == 0 and raw[4][-1] == 2155 and raw[2][MORE_COLUMNS.index("c0")] == ""
    assert raw[2][MORE_COLUMNS.index("d2")] == -0.010000000000000009  # the double MariaDB stored for -0.01


def _duration(value) -> dt.timedelta:
    """PyMySQL's TIME value (a timedelta) or its text."""
    return value if isinstance(value, dt.timedelta) else dt.timedelta(0)


def test_verify_agrees_on_every_other_type(zoo2):
    from etl.config import load_config
    from etl.verify import verify

    zoo2.run()
    report = verify(zoo2.settings, load_config(zoo2.settings.tables_path))
    assert report["ok"] and report["differing_rows"] == 0, report["tables"][0]["pairs"]
