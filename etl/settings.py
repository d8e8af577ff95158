"""Settings from the environment (and a `.env` file in the working directory), with local defaults.

Every URL is printed only through :func:`mask_url` / :func:`mask_secrets`, so a password never
reaches a log line or an error message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from etl.errors import ConfigError, mask_secrets

DEFAULTS = {
    "ETL_SOURCE_URL": "mysql+pymysql://root@127.0.0.1:3306/opendental",
    "ETL_REPLICA_URL": "mysql+pymysql://root@127.0.0.1:3306/opendental_replication",
    "ETL_ANALYTICS_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/opendental_analytics",
    "ETL_RAW_SCHEMA": "raw",
    "ETL_TABLES": "tables.yml",
    "ETL_LOCK_TIMEOUT": "60",
    "ETL_RETRIES": "3",
    "ETL_CHUNK_SECONDS": "0.25",
}

PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
def mask_url(url: URL | str) -> str:
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return mask_secrets(url)


#: An inline comment of an unquoted value: a # after whitespace (a # inside a value, as in a password, stays).
_INLINE_COMMENT = re.compile(r"\s+#.*$")


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; blank lines and # comments are skipped, quotes around values removed, and
    an unquoted value ends before " #" (an inline comment)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] in "'\"" and value[0] in value[1:]:
            value = value[1:value.index(value[0], 1)]  # quoted: everything up to the closing quote
        else:
            value = _INLINE_COMMENT.sub("", value)  # KEY=value  # a comment
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class Settings:
    source_url: URL
    replica_url: URL
    analytics_url: URL
    raw_schema: str
    tables_path: Path
    lock_timeout: float = 60.0   # seconds a run waits for another run of the same phase and table
    retries: int = 3             # attempts after a transient fault (connection lost, deadlock, lock wait)
    chunk_seconds: float = 0.25  # how long one statement reading the source aims to take (etl/blocks.resize)

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, cwd: Path | None = None) -> "Settings":
        cwd = cwd or Path.cwd()
        env = dict(DEFAULTS)
        env.update({k: v for k, v in read_dotenv(cwd / ".env").items() if k.startswith("ETL_")})
        env.update({k: v for k, v in (os.environ if environ is None else environ).items() if k.startswith("ETL_")})
        urls = {}
        for key, driver_prefix in (
            ("ETL_SOURCE_URL", "mysql"),
            ("ETL_REPLICA_URL", "mysql"),
            ("ETL_ANALYTICS_URL", "postgresql"),
        ):
            try:
                url = make_url(env[key])
            except Exception:  # never echoed: a value that does not parse cannot be masked reliably
                raise ConfigError(f"setting {key}: not a database URL of the form "
                                  f"{driver_prefix}...://user:password@host:port/database (the value is not "
                                  f"shown: it may hold a password)") from None
            if not url.drivername.startswith(driver_prefix) or not url.database:
                raise ConfigError(
                    f"setting {key}: expected a {driver_prefix} URL with a database name, got {mask_url(url)}"
                )
            urls[key] = url
        schema = env["ETL_RAW_SCHEMA"]
        if not PLAIN_IDENTIFIER.fullmatch(schema):
            raise ConfigError(f"setting ETL_RAW_SCHEMA: {schema!r} is not a plain identifier")
        tables = Path(env["ETL_TABLES"])
        numbers = {}
        for key, kind in (("ETL_LOCK_TIMEOUT", float), ("ETL_RETRIES", int)):
            try:
                numbers[key] = kind(env[key])
                if numbers[key] < 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"setting {key}: expected a non-negative number, got {env[key]!r}") from None
        try:
            # A MyISAM source table is locked against its writers while one statement reads it: this bounds
            # how long a front-desk edit waits behind the ETL (README, Performance).
            numbers["ETL_CHUNK_SECONDS"] = float(env["ETL_CHUNK_SECONDS"])
            if not 0.01 <= numbers["ETL_CHUNK_SECONDS"] <= 60:
                raise ValueError
        except ValueError:
            raise ConfigError("setting ETL_CHUNK_SECONDS: expected seconds between 0.01 and 60, "
                              f"got {env['ETL_CHUNK_SECONDS']!r}") from None
        return cls(
            source_url=urls["ETL_SOURCE_URL"],
            replica_url=urls["ETL_REPLICA_URL"],
            analytics_url=urls["ETL_ANALYTICS_URL"],
            raw_schema=schema,
            tables_path=tables if tables.is_absolute() else cwd / tables,
            lock_timeout=numbers["ETL_LOCK_TIMEOUT"],
            retries=numbers["ETL_RETRIES"],
            chunk_seconds=numbers["ETL_CHUNK_SECONDS"],
        )

    def same_mysql_server(self) -> bool:
        """True when source and replica live on one server, so copy can run server-side."""
        s, r = self.source_url, self.replica_url
        return (s.host or "localhost", s.port or 3306) == (r.host or "localhost", r.port or 3306)
