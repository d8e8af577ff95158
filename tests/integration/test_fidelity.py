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
