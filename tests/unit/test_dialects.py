"""etl/dialects: each database's own rules. PostgreSQL: the type map, COPY text kinds and the COPY feed.
MySQL: how the replica repeats a source column (DDL) and the infile text kinds. Both: which errors are
transient. No database: columns come from the vendored fact sheet as the golden-file cases build them."""

from __future__ import annotations

import dataclasses

import psycopg2
import psycopg2.errors
import pymysql
import pytest
from sqlalchemy.engine import make_url

from etl.dialects import for_url, mysql, postgres
from etl.errors import SchemaError
from etl.render import Ident, Statement
from etl.schema import Column
from tests import snapshot_cases as sc
from tests.fakes import FakeConn


def fact(column_type: str, **extra) -> Column:
    return sc.column_from_fact({"name": "c", "type": column_type, **extra})


def test_a_url_names_its_dialect() -> None:
    assert for_url(make_url("mysql+pymysql://u@h/db")) is mysql
    assert for_url(make_url("postgresql+psycopg2://u@h/db")) is postgres
    with pytest.raises(ValueError, match="sqlite"):
        for_url(make_url("sqlite:///x.db"))


@pytest.mark.parametrize("column_type, data_type, pg_type", [
    ("tinyint(4)", "tinyint", "smallint"),
    ("tinyint(3) unsigned", "tinyint", "smallint"),
    ("tinyint(1)", "tinyint", "smallint"),
    ("smallint(6)", "smallint", "smallint"),
    ("smallint(5) unsigned", "smallint", "integer"),
    ("int(11)", "int", "integer"),
    ("int(10) unsigned", "int", "bigint"),
    ("bigint(20)", "bigint", "bigint"),
    ("bigint(20) unsigned", "bigint", "numeric(20)"),
    ("double", "double", "double precision"),
    ("float", "float", "real"),
    ("decimal(10,2)", "decimal", "numeric(10,2)"),
    ("char(2)", "char", "varchar(2)"),
    ("varchar(255)", "varchar", "varchar(255)"),
    ("text", "text", "text"),
    ("date", "date", "date"),
    ("datetime", "datetime", "timestamp"),
    ("timestamp", "timestamp", "timestamp"),
    ("time", "time", "interval"),
    # Every other type MariaDB 10.11 and MySQL 8 can declare.
    ("mediumint(8) unsigned", "mediumint", "integer"),
    ("double(10,2)", "double", "double precision"),
    ("float(7,3)", "float", "real"),
    ("decimal(65,30)", "decimal", "numeric(65,30)"),
    ("char(0)", "char", "text"),
    ("varchar(0)", "varchar", "text"),
    ("year(4)", "year", "smallint"),
    ("time(6)", "time", "interval"),
    ("datetime(6)", "datetime", "timestamp"),
    ("timestamp(3)", "timestamp", "timestamp"),
    ("tinytext", "tinytext", "text"),
    ("mediumtext", "mediumtext", "text"),
    ("longtext", "longtext", "text"),
    ("enum('a','b')", "enum", "text"),
    ("set('x','y')", "set", "text"),
    ("json", "json", "jsonb"),
    ("binary(16)", "binary", "bytea"),
    ("varbinary(255)", "varbinary", "bytea"),
    ("tinyblob", "tinyblob", "bytea"),
    ("mediumblob", "mediumblob", "bytea"),
    ("longblob", "longblob", "bytea"),
    ("bit(1)", "bit", "bit(1)"),
    ("bit(5)", "bit", "bit(5)"),
    ("bit(64)", "bit", "bit(64)"),
    ("uuid", "uuid", "uuid"),
    ("inet4", "inet4", "inet"),
    ("inet6", "inet6", "inet"),
    ("geometry", "geometry", "bytea"),
    ("point", "point", "bytea"),
    ("linestring", "linestring", "bytea"),
    ("polygon", "polygon", "bytea"),
    ("multipoint", "multipoint", "bytea"),
    ("multilinestring", "multilinestring", "bytea"),
    ("multipolygon", "multipolygon", "bytea"),
    ("geometrycollection", "geometrycollection", "bytea"),
    ("geomcollection", "geomcollection", "bytea"),
    ("vector(3)", "vector", "bytea"),
])
def test_type_map(column_type: str, data_type: str, pg_type: str) -> None:
    column = fact(column_type)
    assert column.data_type == data_type and column.column_type == column_type
    assert postgres.column_type(column) == pg_type
    assert postgres.PgColumn.of(column).pg_type == pg_type  # what the templates read


def test_every_demo_column_maps_to_postgres() -> None:
    for name in sc.demo_facts():
        for column in sc.table_schema(name).columns:
            assert postgres.column_type(column) and postgres.copy_kind(column) != "unsupported", (name, column.name)
            assert mysql.ReplicaColumn.of(column).ddl_type == column.column_type


@pytest.mark.parametrize("column_type, kind", [
    ("bigint(20)", "number"), ("double", "number"), ("float", "float"), ("date", "date"), ("datetime", "date"),
    ("time", "time"), ("varchar(10)", "text"), ("text", "text"),
    ("year(4)", "number"), ("time(6)", "time"), ("json", "text"), ("enum('a')", "text"), ("bit(5)", "bit"),
    ("double(10,2)", "float"), ("float(7,3)", "float"), ("uuid", "plain"), ("inet4", "plain"), ("inet6", "plain"), ("point", "spatial"), ("geometry", "spatial"),
    ("geomcollection", "spatial"), ("vector(3)", "binary"), ("blob", "binary"),
])
def test_copy_kind(column_type: str, kind: str) -> None:
    assert postgres.copy_kind(fact(column_type)) == kind
    assert postgres.PgColumn.of(fact(column_type)).copy_kind == kind


def test_unmapped_type_raises_naming_the_table_and_column() -> None:
    column = Column(name=Ident("Shape"), data_type="sometype", column_type="sometype", nullable=True, default=None,
                    extra="", charset=None, collation=None, precision=None, scale=None, char_length=None)
    with pytest.raises(SchemaError, match=r"^column 'Shape' has type sometype, which has no PostgreSQL mapping$"):
        postgres.column_type(column)
    assert postgres.copy_kind(column) == "unsupported"
    assert mysql.ReplicaColumn.of(column).infile_kind == "raw"  # its bytes, escaped
    schema = sc.table_schema(next(iter(sc.demo_facts())))
    schema = dataclasses.replace(schema, columns=schema.columns + (column,))
    with pytest.raises(SchemaError, match=rf"^table '{schema.name}': column 'Shape' has type sometype, which has "
                                          "no PostgreSQL mapping$"):
        postgres.map_table(schema)


@pytest.mark.parametrize("column_type, infile_kind", [
    ("bit(5)", "raw"), ("geometry", "raw"), ("point", "raw"), ("vector(3)", "raw"), ("json", "raw"),
    ("uuid", "raw"), ("inet4", "raw"), ("inet6", "raw"), ("year(4)", "plain"), ("time(6)", "plain"),
    ("double(10,2)", "plain"), ("float(7,3)", "float"), ("char(0)", "raw"),
])
def test_new_types_repeat_in_the_replica_as_declared(column_type: str, infile_kind: str) -> None:
    column = mysql.ReplicaColumn.of(fact(column_type))
    assert column.ddl_type == column_type and column.infile_kind == infile_kind
    assert not column.ddl_json_check


def test_mariadb_json_keeps_its_check_in_the_replica() -> None:
    column = dataclasses.replace(fact("longtext"), data_type="json")  # as reflect_table reports it
    replica = mysql.ReplicaColumn.of(column)
    assert replica.ddl_type == "longtext" and replica.ddl_json_check
    assert postgres.column_type(column) == "jsonb"
    assert not mysql.ReplicaColumn.of(fact("json")).ddl_json_check  # MySQL's own JSON type


@pytest.mark.parametrize("clause, column", [
    ("json_valid(`Doc`)", "Doc"), ("JSON_VALID(`a``b`)", "a`b"), ("json_valid(`x`) and 1", None), ("`x` > 0", None),
])
def test_json_check_clause(clause: str, column) -> None:
    match = mysql._JSON_CHECK.match(clause)
    assert (match.group(1).replace("``", "`") if match else None) == column


@pytest.mark.parametrize("column_type", ["int(11) default 1", "varchar(10); drop", "enum('a\\'b')"])
def test_ddl_type_refuses_odd_shapes(column_type: str) -> None:
    column = Column(name=Ident("c"), data_type="int", column_type=column_type, nullable=True, default=None, extra="",
                    charset=None, collation=None, precision=None, scale=None, char_length=None)
    with pytest.raises(SchemaError, match="cannot repeat safely"):
        mysql.ReplicaColumn.of(column).ddl_type


@pytest.mark.parametrize("default, kept", [
    ("NULL", "NULL"), ("0", "0"), ("-1.5", "-1.5"), ("''", "''"), ("'0001-01-01'", "'0001-01-01'"),
    ("current_timestamp()", "current_timestamp()"), ("1; DROP TABLE t", None), ("'a\\'b'", None), (None, None),
])
def test_ddl_default_keeps_only_plain_literals(default, kept) -> None:
    assert mysql.ReplicaColumn.of(fact("int(11)", default=default)).ddl_default == kept


@pytest.mark.parametrize("column_type, kind", [
    ("bigint(20)", "plain"), ("decimal(10,2)", "plain"), ("double", "plain"), ("date", "plain"),
    ("datetime", "plain"), ("timestamp", "plain"), ("time", "plain"), ("year", "plain"), ("float", "float"),
    ("varchar(10)", "raw"), ("text", "raw"), ("blob", "raw"), ("json", "raw"),
])
def test_infile_kind(column_type: str, kind: str) -> None:
    assert mysql.ReplicaColumn.of(fact(column_type)).infile_kind == kind


@pytest.mark.parametrize("expected, actual, same", [
    ("timestamp", "timestamp without time zone", True), ("varchar(20)", "character varying(20)", True),
    ("bigint", "bigint", True), ("varchar(20)", "character varying(30)", False), ("integer", "bigint", False),
])
def test_schema_drift_compares_the_type_map_with_format_type(expected: str, actual: str, same: bool) -> None:
    assert postgres.same_type(expected, actual) is same


# ---------------------------------------------------------------- transient errors (the runner retries them)

@pytest.mark.parametrize("exc, transient", [
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
    (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
    (pymysql.err.OperationalError(2003, "Can't connect"), True),
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
    (pymysql.err.OperationalError(1213, "Deadlock found"), True),
    (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), False),
    (pymysql.err.OperationalError(1045, "Access denied"), False),
    (pymysql.err.InternalError(), False),
    (RuntimeError("2013"), False),
])
def test_mysql_transient_errors(exc: BaseException, transient: bool) -> None:
    assert mysql.is_transient(exc) is transient
    assert postgres.is_transient(exc) is False


@pytest.mark.parametrize("exc, packet", [
    (pymysql.err.InterfaceError(0, ""), True),        # the server closed the connection mid-packet
    (pymysql.err.OperationalError(1153, "Got a packet bigger than 'max_allowed_packet' bytes"), True),
    (pymysql.err.OperationalError(1301, "Result of concat() was larger than max_allowed_packet"), True),
    (pymysql.err.OperationalError(2013, "Lost connection"), False),  # transient: retried
    (RuntimeError("1153"), False),
])
def test_mysql_packet_errors(exc: BaseException, packet: bool) -> None:
    assert mysql.is_packet_error(exc) is packet


@pytest.mark.parametrize("exc, transient", [
    (psycopg2.errors.DeadlockDetected(), True),
    (psycopg2.errors.SerializationFailure(), True),
    (psycopg2.OperationalError("server closed the connection unexpectedly"), True),
    (psycopg2.errors.LockNotAvailable(), False),  # a lock wait that timed out: another run holds it
    (psycopg2.errors.UndefinedTable(), False),
    (psycopg2.errors.UniqueViolation(), False),
])
def test_postgres_transient_errors(exc: BaseException, transient: bool) -> None:
    assert postgres.is_transient(exc) is transient
    assert mysql.is_transient(exc) is False


# ---------------------------------------------------------------- the COPY feed

def test_chunk_reader_hands_over_each_chunk_whole_and_skips_empty_ones() -> None:
    reader = postgres.ChunkReader(iter([b"a\tb", b"", b"\n", b"c" * 10]))
    assert reader.read(1) == b"a\tb"          # whatever size is asked for
    assert reader.readline() == b"\n"         # the empty chunk is skipped
    assert reader.read() == b"c" * 10
    assert reader.read() == b"" and reader.read(5) == b""  # the end, every time


def test_chunk_reader_pulls_lazily() -> None:
    pulled = []

    def chunks():
        for chunk in (b"1", b"2"):
            pulled.append(chunk)
            yield chunk

    reader = postgres.ChunkReader(chunks())
    assert pulled == []
    assert reader.read() == b"1" and pulled == [b"1"]


def test_copy_in_streams_every_chunk_into_copy_from_stdin() -> None:
    conn = FakeConn()
    with conn.cursor() as cur:
        postgres.copy_in(cur, Statement("postgres/copy_from_stdin", 'COPY "t" ("a") FROM STDIN'), iter([b"1\n", b"2\n"]))
    assert conn.executed == [('COPY "t" ("a") FROM STDIN', {"copied": b"1\n2\n"})]
    with pytest.raises(Exception, match="expected no binds"):
        postgres.copy_in(FakeConn().cursor(), Statement("x", "COPY t FROM STDIN WHERE :x"), iter([]))


def test_block_files_are_private_and_removed(tmp_path) -> None:
    import os

    with mysql.block_files() as write:
        path = write(b"1\tx")
        assert open(path, "rb").read() == b"1\tx\n"   # the last line's newline is added
        assert write(b"2") == path and open(path, "rb").read() == b"2\n"
        folder = os.path.dirname(path)
    assert not os.path.exists(folder)


def test_keys_are_bound_as_each_driver_expands_them() -> None:
    assert mysql.key_list([3, 1]) == (3, 1)     # IN :keys
    assert postgres.key_list([3, 1]) == [3, 1]  # = ANY(:keys)
    assert mysql.scope("raw") == {} and postgres.scope("raw") == {"schema": Ident("raw")}


# ---------------------------------------------------------------- a column retyped upstream

@pytest.mark.parametrize("old, new, change", [
    ("varchar(10)", "varchar(200)", "wider"), ("varchar(200)", "varchar(10)", "narrower"),
    ("char(5)", "varchar(5)", "wider"), ("varchar(5)", "char(5)", "narrower"), ("varchar(200)", "text", "wider"),
    ("varchar(20000)", "text", "narrower"), ("text", "mediumtext", "wider"), ("longtext", "text", "narrower"),
    ("tinyint(4)", "smallint(6)", "wider"), ("smallint(6)", "tinyint(4)", "narrower"), ("int(11)", "int", "same"),
    ("tinyint(3) unsigned", "smallint(6)", "wider"), ("tinyint(4)", "tinyint(3) unsigned", "wider"),
    ("smallint(5) unsigned", "smallint(6)", "narrower"), ("int(11)", "smallint(5) unsigned", "narrower"),
    ("int(10) unsigned", "bigint(20)", "wider"), ("int(11)", "bigint(20) unsigned", "wider"),
    ("decimal(10,2)", "decimal(12,2)", "wider"), ("decimal(10,2)", "decimal(10,3)", "narrower"),
    ("decimal(10,2)", "decimal(12,4)", "wider"), ("int(11)", "decimal(12,0)", "wider"),
    ("int(11)", "decimal(9,0)", "narrower"), ("float", "double", "wider"), ("double", "float", "narrower"),
    ("varbinary(10)", "varbinary(20)", "wider"), ("varbinary(20)", "varbinary(10)", "narrower"),
    ("blob", "longblob", "wider"), ("varbinary(10)", "blob", "wider"),
    ("enum('a','b')", "enum('a','b','c')", "wider"), ("enum('a','b')", "enum('b','a')", "narrower"),
    ("datetime", "datetime(3)", "wider"), ("datetime(6)", "datetime", "narrower"),
    ("varchar(10)", "int(11)", "narrower"),
    ("bigint(20)", "varchar(30)", "narrower"), ("date", "datetime", "narrower"),
])
def test_a_mysql_type_change_is_same_wider_or_narrower(old: str, new: str, change: str) -> None:
    assert mysql.type_change(fact(old), fact(new)) == change


def test_a_charset_change_widens_only_to_a_superset() -> None:
    def text(collation: str) -> Column:
        return fact("varchar(10)", collate=collation)

    assert mysql.type_change(text("utf8mb3_general_ci"), text("utf8mb4_general_ci")) == "wider"
    assert mysql.type_change(text("utf8mb4_general_ci"), text("latin1_swedish_ci")) == "narrower"


@pytest.mark.parametrize("expected, actual, change", [
    ("varchar(200)", "character varying(10)", "wider"), ("varchar(10)", "character varying(200)", "narrower"),
    ("text", "character varying(10)", "wider"), ("varchar(10)", "text", "narrower"), ("integer", "smallint", "wider"),
    ("smallint", "integer", "narrower"), ("numeric(20)", "bigint", "wider"), ("numeric(20)", "numeric(20,0)", "same"),
    ("numeric(12,2)", "numeric(10,2)", "wider"), ("numeric(10,3)", "numeric(10,2)", "narrower"),
    ("double precision", "real", "wider"), ("bytea", "text", "narrower"), ("smallint", "smallint", "same"),
    ("timestamp", "timestamp without time zone", "same"), ("date", "timestamp without time zone", "narrower"),
])
def test_a_raw_type_change_is_same_wider_or_narrower(expected: str, actual: str, change: str) -> None:
    assert postgres.type_change(expected, actual) == change
