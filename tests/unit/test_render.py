"""etl/render.py: identifiers only through `ident`, dialect quoting, the two-way bind check, strictness."""

from __future__ import annotations

import re

import pytest

from etl.errors import RenderError
from etl.plan import Bound
from etl.render import Ident, Renderer, Statement, quote_ident, render


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------------------------------
# Identifiers


def test_plain_string_where_an_ident_is_expected_fails_the_render() -> None:
    with pytest.raises(RenderError, match=r"^unchecked identifier 'patient' reached the quoting filter$"):
        render("mysql/drop_table", table="patient")
    with pytest.raises(RenderError, match="unchecked identifier 'raw'"):
        render("postgres/truncate", schema="raw", table=Ident("patient"))


@pytest.mark.parametrize("dialect", ["mysql", "postgres"])
def test_quote_ident_refuses_plain_strings(dialect: str) -> None:
    with pytest.raises(RenderError, match="unchecked identifier"):
        quote_ident("patient", dialect)


def test_ident_filter_quotes_per_dialect() -> None:
    assert render("mysql/drop_table", table=Ident("patient")).text.strip() == "DROP TABLE IF EXISTS `patient`"
    assert render("postgres/truncate", schema=Ident("raw"), table=Ident("Patient")).text.strip() == \
        'TRUNCATE "raw"."Patient"'


def test_mysql_quoting_doubles_backticks() -> None:
    name = str.__new__(Ident, "a`b")  # bypasses the plain-name check: quoting alone is under test
    assert quote_ident(name, "mysql") == "`a``b`"
    assert quote_ident(str.__new__(Ident, 'a"b'), "mysql") == '`a"b`'


def test_postgres_quoting_doubles_double_quotes() -> None:
    assert quote_ident(str.__new__(Ident, 'a"b'), "postgres") == '"a""b"'
    assert quote_ident(str.__new__(Ident, "a`b"), "postgres") == '"a`b"'


@pytest.mark.parametrize("name", ["a;b", "a b", "a`b", 'a"b', "a.b", "1abc", "", "a-b", "pat'ient", "a/*x*/"])
def test_ident_rejects_names_that_are_not_plain(name: str) -> None:
    with pytest.raises(RenderError, match="is not a plain identifier"):
        Ident(name)


def test_ident_rejects_a_trailing_newline() -> None:
    with pytest.raises(RenderError):
        Ident("patient\n")


@pytest.mark.parametrize("name", ["patient", "_etl_stage", "DateTStamp", "Bal_0_30", "a1"])
def test_ident_accepts_plain_names(name: str) -> None:
    assert Ident(name) == name


# --------------------------------------------------------------------------------------------------
# Statement.to_dbapi: the two-way bind check


def test_to_dbapi_converts_named_binds_to_pyformat() -> None:
    statement = Statement("q", "SELECT a FROM t WHERE a >= :lo AND a < :hi AND b = :lo")
    sql, params = statement.to_dbapi({"lo": 1, "hi": 2})
    assert sql == "SELECT a FROM t WHERE a >= %(lo)s AND a < %(hi)s AND b = %(lo)s"
    assert params == {"lo": 1, "hi": 2}


def test_to_dbapi_raises_when_a_bind_has_no_value() -> None:
    with pytest.raises(RenderError, match=r"^q: binds without a value: hi, lo$"):
        Statement("q", "SELECT :lo, :hi").to_dbapi({})


def test_to_dbapi_raises_when_a_value_has_no_bind() -> None:
    with pytest.raises(RenderError, match=r"^q: values without a bind: extra$"):
        Statement("q", "SELECT :lo").to_dbapi({"lo": 1, "extra": 2})


def test_to_dbapi_reports_both_directions_at_once() -> None:
    with pytest.raises(RenderError, match=r"^q: binds without a value: hi; values without a bind: extra$"):
        Statement("q", "SELECT :lo, :hi").to_dbapi({"lo": 1, "extra": 2})


def test_to_dbapi_leaves_postgres_casts_alone() -> None:
    statement = Statement("q", "SELECT :name::text, created::date, '{}'::jsonb")
    assert statement.binds == {"name"}
    sql, _ = statement.to_dbapi({"name": "x"})
    assert sql == "SELECT %(name)s::text, created::date, '{}'::jsonb"


def test_to_dbapi_doubles_literal_percent_signs() -> None:
    statement = Statement("q", "SELECT DATE_FORMAT(d, '%Y-%m') FROM t WHERE n LIKE 'a%' AND id = :id")
    sql, _ = statement.to_dbapi({"id": 1})
    assert sql == "SELECT DATE_FORMAT(d, '%%Y-%%m') FROM t WHERE n LIKE 'a%%' AND id = %(id)s"
    # what the driver does with the pyformat string gives back the original text
    assert sql % {"id": ":id"} == statement.text


def test_to_dbapi_without_binds_needs_no_params() -> None:
    assert Statement("q", "SELECT 1").to_dbapi() == ("SELECT 1", {})
    assert Statement("q", "SELECT 1").to_dbapi(None) == ("SELECT 1", {})


def test_plain_refuses_a_statement_with_binds() -> None:
    assert Statement("q", "TRUNCATE t").plain() == "TRUNCATE t"
    with pytest.raises(RenderError, match=r"^q: expected no binds, found a, b$"):
        Statement("q", "SELECT :b, :a").plain()


def test_time_literals_are_not_binds() -> None:
    assert Statement("q", "SELECT CONVERT_TZ(x, '+00:00', '-05:30'), '12:00:00'").binds == frozenset()


# --------------------------------------------------------------------------------------------------
# The strict environment


def _renderer(tmp_path, files: dict[str, str]) -> Renderer:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Renderer(tmp_path)


def test_missing_variable_raises_render_error_naming_the_template() -> None:
    with pytest.raises(RenderError, match=r"^template sql_templates/mysql/add_column\.sql\.j2: 'column' is undefined$"):
        render("mysql/add_column", table=Ident("patient"))


def test_missing_identifier_variable_names_the_template() -> None:
    with pytest.raises(RenderError, match=r"^template sql_templates/mysql/drop_table\.sql\.j2: 'table' is undefined$"):
        render("mysql/drop_table")


def test_missing_variable_inside_a_condition_raises_too(tmp_path) -> None:
    renderer = _renderer(tmp_path, {"postgres/x.sql.j2": "SELECT 1{% if flag %}, 2{% endif %}\n"})
    with pytest.raises(RenderError, match=r"sql_templates/postgres/x\.sql\.j2: 'flag' is undefined"):
        renderer.render("postgres/x")


def test_missing_attribute_raises_render_error(tmp_path) -> None:
    renderer = _renderer(tmp_path, {"mysql/x.sql.j2": "SELECT {{ plan.nothing }}\n"})
    with pytest.raises(RenderError, match=r"sql_templates/mysql/x\.sql\.j2: .*nothing"):
        renderer.render("mysql/x", plan=object())


def test_unknown_template_and_unknown_dialect() -> None:
    with pytest.raises(RenderError, match=r"^template sql_templates/mysql/no_such\.sql\.j2 does not exist$"):
        render("mysql/no_such")
    with pytest.raises(RenderError, match=r"^template 'sqlite/drop_table': the folder must be one of mysql, postgres$"):
        render("sqlite/drop_table", table=Ident("t"))


def test_environment_keeps_trailing_newline_and_never_escapes(tmp_path) -> None:
    renderer = _renderer(tmp_path, {"mysql/x.sql.j2": "SELECT '{{ text }}' <> '&'\n"})
    assert renderer.render("mysql/x", text="<b>&").text == "SELECT '<b>&' <> '&'\n"


def test_dialect_comes_from_the_template_folder(tmp_path) -> None:
    renderer = _renderer(tmp_path, {"mysql/x.sql.j2": "{{ t | ident }}", "postgres/x.sql.j2": "{{ t | ident }}"})
    assert renderer.render("mysql/x", t=Ident("t")).text == "`t`"
    assert renderer.render("postgres/x", t=Ident("t")).text == '"t"'


# --------------------------------------------------------------------------------------------------
# Macros, with plain Jinja through the project's environment (dbt-style: load, call, collapse, compare)


@pytest.fixture(params=["mysql", "postgres"])
def predicates(request):
    module = Renderer().env.get_template("_macros/predicates.sql.j2").make_module({"dialect": request.param})
    return request.param, module


def q(name: str, dialect: str) -> str:
    return quote_ident(Ident(name), dialect)


def test_after_key_one_column(predicates) -> None:
    dialect, p = predicates
    assert collapse(p.after_key([Ident("a")])) == f"(({q('a', dialect)} > :k0))"


def test_after_key_two_columns(predicates) -> None:
    dialect, p = predicates
    a, b = q("a", dialect), q("b", dialect)
    assert collapse(p.after_key([Ident("a"), Ident("b")])) == f"(({a} > :k0) OR ({a} = :k0 AND {b} > :k1))"


def test_after_key_three_columns_and_prefix(predicates) -> None:
    dialect, p = predicates
    a, b, c = (q(n, dialect) for n in "abc")
    assert collapse(p.after_key([Ident("a"), Ident("b"), Ident("c")])) == (
        f"(({a} > :k0) OR ({a} = :k0 AND {b} > :k1) OR ({a} = :k0 AND {b} = :k1 AND {c} > :k2))")
    assert collapse(p.after_key([Ident("a"), Ident("b")], "p")) == f"(({a} > :p0) OR ({a} = :p0 AND {b} > :p1))"


def test_after_key_refuses_unchecked_names(predicates) -> None:
    _, p = predicates
    with pytest.raises(RenderError, match="unchecked identifier 'a'"):
        p.after_key(["a"])


@pytest.mark.parametrize("lower, upper, inclusive, expected", [
    (1, 9, True, "({c} >= :w0_lo AND {c} <= :w0_hi)"),
    (1, 9, False, "({c} >= :w0_lo AND {c} < :w0_hi)"),
    (None, 9, True, "({c} <= :w0_hi)"),
    (None, 9, False, "({c} < :w0_hi)"),
    (1, None, False, "({c} >= :w0_lo)"),
    (None, None, False, "TRUE"),
])
def test_window(predicates, lower, upper, inclusive, expected) -> None:
    dialect, p = predicates
    bound = Bound(column=Ident("c"), kind="integer", lower=lower, upper=upper, upper_inclusive=inclusive)
    assert collapse(p.window(bound, "w0")) == expected.format(c=q("c", dialect))


def test_window_prefix_names_the_binds(predicates) -> None:
    _, p = predicates
    bound = Bound(column=Ident("c"), kind="integer", lower=0, upper=5, upper_inclusive=True)
    assert re.findall(r":(\w+)", p.window(bound, "w3")) == ["w3_lo", "w3_hi"]


def test_column_list(predicates) -> None:
    dialect, p = predicates
    a, b = q("a", dialect), q("b", dialect)
    assert collapse(p.column_list([Ident("a"), Ident("b")])) == f"{a}, {b}"
    assert collapse(p.column_list([Ident("a"), Ident("b")], "t.")) == f"t.{a}, t.{b}"
    assert collapse(p.column_list([])) == ""


def test_copy_text_macros() -> None:
    from etl.dialects.postgres import PgColumn

    t = Renderer().env.get_template("_macros/copy_text.sql.j2").make_module({"dialect": "mysql"})

    def col(name, data_type, column_type=None):
        return PgColumn(name=Ident(name), data_type=data_type, column_type=column_type or data_type, nullable=True,
                        default=None, extra="", charset=None, collation=None, precision=None, scale=None,
                        char_length=None)

    assert collapse(t.field(col("n", "bigint"))) == r"IFNULL(`n`, '\\N')"
    assert collapse(t.field(col("f", "float"))) == r"IFNULL(CAST(`f` AS DOUBLE), '\\N')"
    assert collapse(t.field(col("b", "blob"))) == r"IFNULL(CONCAT('\\\\x', HEX(`b`)), '\\N')"
    assert collapse(t.field(col("d", "date"))) == r"IF(TO_DAYS(`d`) >= 366, `d`, '\\N')"
    text = collapse(t.field(col("s", "varchar", "varchar(10)")))
    assert text.startswith("IFNULL(REPLACE(") and "CONVERT(`s` USING utf8mb4)" in text and text.endswith(r"'\\N')")
    # A row without special characters skips the escaping (the plain line).
    assert collapse(t.field(col("s", "varchar", "varchar(10)"), True)) == r"IFNULL(CONVERT(`s` USING utf8mb4), '\\N')"
    assert collapse(t.adjusted([col("n", "bigint"), col("x", "double")])) == "0"
    escape = r"CONCAT_WS('', CONVERT(`s` USING utf8mb4)) REGEXP '[\\\\\\t\\n\\r\\x00]'"
    oversize = rf"((IFNULL(LENGTH(`s`), 0)) > :long_row OR ((IFNULL(LENGTH(`s`), 0)) > :long_escaped AND {escape}))"
    assert collapse(t.oversize([col("n", "bigint"), col("s", "text")])) == oversize
    # A long row's NUL bytes are counted by the reader that escapes it (etl/blocks.py), not here.
    assert collapse(t.adjusted([col("d", "date"), col("s", "text")])) == (
        rf"(IFNULL(TO_DAYS(`d`), 0) < 366) - (`d` IS NULL) + IF({oversize} OR NOT {escape}, 0, "
        r"(IFNULL(LOCATE(CHAR(0 USING utf8mb4), `s`), 0) > 0))")
    line = collapse(t.line([col("n", "bigint"), col("s", "text")], "0", [Ident("n")]))
    # a long row is a marker (NUL, then its key in hex), else the escaped or the plain line
    assert line.startswith(f"IF({oversize}, CAST(CONCAT(CHAR(0), CONCAT_WS(CHAR(9), HEX(CAST(`n` AS BINARY)))) AS BINARY), "
                           f"IF({escape}, ")
    assert line.count("CONCAT_WS(CHAR(9)") == 3
    # without a key (a tool's own statement) every row is rendered
    assert collapse(t.line([col("n", "bigint"), col("s", "text")], "0")).startswith(f"IF({escape}, ")
    # a row read alone holds its long values back: an empty field, or \N
    assert collapse(t.field(col("s", "text"), False, True)) == r"IF(`s` IS NULL, '\\N', '')"
    assert collapse(t.field(col("b", "blob"), False, True)) == r"IF(`b` IS NULL, '\\N', '')"
    assert collapse(t.field(col("n", "bigint"), False, True)) == r"IFNULL(`n`, '\\N')"


def test_ddl_column_macro() -> None:
    from etl.dialects.mysql import ReplicaColumn as Column

    d = Renderer().env.get_template("_macros/ddl.sql.j2").make_module({"dialect": "mysql"})
    name = Column(name=Ident("LName"), data_type="varchar", column_type="varchar(100)", nullable=True,
                  default="''", extra="", charset="utf8mb4", collation="utf8mb4_general_ci", precision=None,
                  scale=None, char_length=100)
    assert collapse(d.mysql_column(name)) == (
        "`LName` varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL DEFAULT ''")
    num = Column(name=Ident("PatNum"), data_type="bigint", column_type="bigint(20)", nullable=False,
                 default=None, extra="auto_increment", charset=None, collation=None, precision=19, scale=0,
                 char_length=None)
    assert collapse(d.mysql_column(num)) == "`PatNum` bigint(20) NOT NULL"
    # a default that is not a plain literal is left out rather than repeated in DDL
    odd = Column(name=Ident("x"), data_type="int", column_type="int(11)", nullable=True, default="1; DROP TABLE t",
                 extra="", charset=None, collation=None, precision=10, scale=0, char_length=None)
    assert collapse(d.mysql_column(odd)) == "`x` int(11) NULL"
