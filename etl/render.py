"""The one Jinja environment that turns plans into SQL text. Templates never see values.

* Templates live in ``sql_templates/<dialect>/<name>.sql.j2`` and write values as named binds
  (``:name``). :meth:`Statement.to_dbapi` turns them into the drivers' ``%(name)s`` style and checks that
  the binds used equal the parameters given, both ways.
* Identifiers are printed only through the ``ident`` filter, which accepts only :class:`Ident`
  values: names that came from live-schema reflection or from this package's own constants.
  A plain string reaching the filter is a bug and fails the render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

from etl.resources import DATA_ROOT
from etl.errors import RenderError

TEMPLATE_DIR = DATA_ROOT / "sql_templates"
DIALECTS = ("mysql", "postgres")

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
# A bind is ":name" not preceded by another colon (PostgreSQL casts: "::text") or a word character.
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


class Ident(str):
    """An identifier that was checked (against the live schema, or is one of ours) and may be quoted."""

    def __new__(cls, name: str) -> "Ident":
        if not _PLAIN.fullmatch(name or ""):
            raise RenderError(f"identifier {name!r} is not a plain identifier (letters, digits, _ only)")
        return super().__new__(cls, name)


def quote_ident(name: Any, dialect: str) -> str:
    if isinstance(name, jinja2.Undefined):
        name._fail_with_undefined_error()  # raises UndefinedError, reported with the template's name
    if not isinstance(name, Ident):
        raise RenderError(f"unchecked identifier {name!r} reached the quoting filter")
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


@jinja2.pass_context
def _ident_filter(context: jinja2.runtime.Context, name: Any) -> str:
    return quote_ident(name, context["dialect"])


@dataclass(frozen=True)
class Statement:
    """Rendered SQL with named binds (``:name``)."""

    name: str
    text: str

    @property
    def binds(self) -> frozenset[str]:
        return frozenset(_BIND.findall(self.text))

    def to_dbapi(self, params: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Return (sql, params) in pyformat style for PyMySQL/psycopg2, after the two-way bind check."""
        params = dict(params or {})
        missing = self.binds - params.keys()
        unused = params.keys() - self.binds
        if missing or unused:
            parts = []
            if missing:
                parts.append(f"binds without a value: {', '.join(sorted(missing))}")
            if unused:
                parts.append(f"values without a bind: {', '.join(sorted(unused))}")
            raise RenderError(f"{self.name}: {'; '.join(parts)}")
        sql = _BIND.sub(lambda m: f"%({m.group(1)})s", self.text.replace("%", "%%"))
        return sql, params

    def plain(self) -> str:
        """The text of a statement that has no binds (COPY, DDL), checked to have none."""
        if self.binds:
            raise RenderError(f"{self.name}: expected no binds, found {', '.join(sorted(self.binds))}")
        return self.text


class Renderer:
    def __init__(self, template_dir: Path = TEMPLATE_DIR):
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.do"],
        )
        self.env.filters["ident"] = _ident_filter

    def render(self, name: str, /, **context: Any) -> Statement:
        """Render ``sql_templates/<name>.sql.j2``; ``name`` is ``<dialect>/<statement>``."""
        dialect = name.split("/", 1)[0]
        if dialect not in DIALECTS:
            raise RenderError(f"template {name!r}: the folder must be one of {', '.join(DIALECTS)}")
        try:
            template = self.env.get_template(f"{name}.sql.j2")
            text = template.render(dialect=dialect, **context)
        except jinja2.TemplateNotFound:
            raise RenderError(f"template sql_templates/{name}.sql.j2 does not exist") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template sql_templates/{name}.sql.j2: {exc}") from None
        return Statement(name=name, text=text)


_default: Renderer | None = None


def render(name: str, /, **context: Any) -> Statement:
    global _default
    if _default is None:
        _default = Renderer()
    return _default.render(name, **context)
