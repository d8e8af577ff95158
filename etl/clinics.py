"""clinics.yml -> frozen per-clinic settings, for running many clinics (`etl --clinic NAME`, etl.airflow).

A clinic is exactly the settings a single-clinic user would export: its source, replica and analytics
URLs, its raw schema, its tables.yml, plus where dbt builds its models (a schema suffix) and keeps its
state (target/ and logs/ folders of its own). :func:`clinic_environment` turns one clinic into those
variables, so `etl --clinic north copy patient` runs the very same code as `etl copy patient` with
them set by hand.

The file never holds a password: each database is named by a reference, either an environment variable
holding a URL (``{env: NORTH_SOURCE_URL}``) or an Airflow connection (``{airflow_connection: od_north}``).
This module never imports Airflow: outside Airflow a connection is read from Airflow's own environment
form of it, ``AIRFLOW_CONN_<ID>`` (a URI or JSON); inside Airflow the task resolves the connection
through Airflow (etl.airflow) and hands it to the command in that same variable.

Every problem is reported at once, one line each, naming the file, the clinic and the key
(``clinics.yml: clinic 'north': raw_schema: 'x-y' is not a plain identifier``), exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import unquote, urlsplit

import yaml
from sqlalchemy.engine import URL, make_url

from etl.config import _UniqueKeyLoader  # a key given twice is an error, as in tables.yml
from etl.errors import ConfigError
from etl.settings import mask_secrets, read_dotenv

DEFAULT_PATH = "clinics.yml"
#: A clinic's name is part of DAG ids, pool names, database and schema names: short, lower case, plain.
CLINIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SUFFIX = re.compile(r"^[A-Za-z0-9_]{0,30}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")

DEFAULT_SOURCE_POOL_SLOTS = 2      # an OpenDental server is a practice's production database: be gentle
DEFAULT_WAREHOUSE_POOL_SLOTS = 4
DEFAULT_SCHEDULE = "0 2 * * *"     # nightly
DEFAULT_VERIFY_SCHEDULE = "0 6 * * 0"  # weekly, Sunday morning, when the practice is closed
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY_MINUTES = 5.0

#: Settings a clinic defines itself; its `settings:` mapping may not set them.
OWNED_SETTINGS = ("ETL_SOURCE_URL", "ETL_REPLICA_URL", "ETL_ANALYTICS_URL", "ETL_RAW_SCHEMA", "ETL_TABLES",
                  "ETL_CLINICS", "ETL_DBT_SCHEMA_SUFFIX")
CLINIC_KEYS = ("source", "source_database", "source_server", "replica", "replica_database", "warehouse",
               "raw_schema", "dbt_schema_suffix", "tables", "schedule", "verify_schedule", "retries",
               "retry_delay_minutes", "settings")
TOP_KEYS = ("clinics", "defaults", "source_servers", "warehouses", "dbt_work_dir", "metadata")
#: Airflow connection types -> SQLAlchemy drivers the ETL uses.
CONN_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "postgres": "postgresql+psycopg2",
                "postgresql": "postgresql+psycopg2"}


@dataclass(frozen=True)
class Ref:
    """Where one database's URL comes from: an environment variable, or an Airflow connection."""

    kind: str  # "env" | "airflow_connection"
    name: str

    @property
    def variable(self) -> str:
        """The environment variable the URL is read from (Airflow's AIRFLOW_CONN_<ID> for a connection)."""
        return self.name if self.kind == "env" else airflow_conn_variable(self.name)

    def describe(self) -> str:
        return f"${self.name}" if self.kind == "env" else f"Airflow connection {self.name}"


@dataclass(frozen=True)
class SourceServer:
    """An OpenDental server (one or several clinics' databases): one Airflow pool."""

    name: str
    pool_slots: int = DEFAULT_SOURCE_POOL_SLOTS

    @property
    def pool(self) -> str:
        return f"etl_source_{self.name}"


@dataclass(frozen=True)
class Warehouse:
    """A PostgreSQL analytics database (many clinics' raw schemas): one Airflow pool."""

    name: str
    analytics: Ref
    pool_slots: int = DEFAULT_WAREHOUSE_POOL_SLOTS

    @property
    def pool(self) -> str:
        return f"etl_warehouse_{self.name}"


@dataclass(frozen=True)
class Clinic:
    name: str
    source: Ref
    source_database: str | None       # None: the database named by the source URL / connection
    source_server: SourceServer
    replica: Ref
    replica_database: str
    warehouse: Warehouse
    raw_schema: str
    dbt_schema_suffix: str
    tables: Path
    schedule: str | None
    verify_schedule: str | None
    retries: int
    retry_delay_minutes: float
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def dag_id(self) -> str:
        return f"opendental_{self.name}"

    @property
    def verify_dag_id(self) -> str:
        return f"opendental_{self.name}_verify"

    @property
    def refs(self) -> dict[str, Ref]:
        return {"source": self.source, "replica": self.replica, "analytics": self.warehouse.analytics}


@dataclass(frozen=True)
class ClinicsConfig:
    path: Path
    clinics: dict[str, Clinic]
    dbt_work_dir: Path
    source_servers: dict[str, SourceServer] = field(default_factory=dict)
    warehouses: dict[str, Warehouse] = field(default_factory=dict)

    def clinic(self, name: str) -> Clinic:
        if name not in self.clinics:
            known = ", ".join(self.clinics) or "none"
            raise ConfigError(f"{self.path}: clinic {name!r} is not configured (clinics: {known})")
        return self.clinics[name]

    def pools(self) -> dict[str, dict[str, Any]]:
        """The Airflow pools the clinics' tasks use, in the form `airflow pools import FILE` reads."""
        pools: dict[str, dict[str, Any]] = {}
        for clinic in self.clinics.values():
            server, warehouse = clinic.source_server, clinic.warehouse
            pools[server.pool] = {"slots": server.pool_slots, "include_deferred": False,
                                  "description": f"opendental-etl: reads of OpenDental server {server.name}"}
            pools[warehouse.pool] = {"slots": warehouse.pool_slots, "include_deferred": False,
                                     "description": f"opendental-etl: writes to warehouse {warehouse.name}"}
        return dict(sorted(pools.items()))


def airflow_conn_variable(conn_id: str) -> str:
    """Airflow's environment form of a connection: AIRFLOW_CONN_<CONN_ID upper-cased>."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def clinics_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """ETL_CLINICS (environment, then .env), default clinics.yml, relative to the working directory."""
    cwd = cwd or Path.cwd()
    environ = os.environ if environ is None else environ
    value = environ.get("ETL_CLINICS") or read_dotenv(cwd / ".env").get("ETL_CLINICS") or DEFAULT_PATH
    path = Path(value).expanduser()
    return path if path.is_absolute() else cwd / path


def load_clinics(path: Path | None = None) -> ClinicsConfig:
    path = Path(path) if path is not None else clinics_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set ETL_CLINICS to the clinics.yml to use)") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    return parse_clinics(document, path)


def parse_clinics(document: Any, path: Path) -> ClinicsConfig:
    errors: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("clinics"), dict) or not document["clinics"]:
        raise ConfigError(f"{path}: expected a top-level 'clinics:' mapping of clinic name to settings")
    unknown = [str(k) for k in document if k not in TOP_KEYS and not str(k).startswith("x_")]
    if unknown:
        errors.append(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected "
                      f"{', '.join(TOP_KEYS)} (or an x_ prefix for your own notes)")

    servers = _parse_section(document, "source_servers", path, errors, _parse_server)
    warehouses = _parse_section(document, "warehouses", path, errors, _parse_warehouse)
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        errors.append(f"{path}: defaults: expected a mapping of clinic settings, got {type(defaults).__name__}")
        defaults = {}
    for key in defaults:
        if key not in CLINIC_KEYS and not str(key).startswith("x_"):
            errors.append(f"{path}: defaults: unknown key {key!r}; expected one of {', '.join(CLINIC_KEYS)}")

    work = document.get("dbt_work_dir")
    if work is not None and not isinstance(work, str):
        errors.append(f"{path}: dbt_work_dir: expected a folder, got {work!r}")
        work = None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    dbt_work_dir = _relative(path, work) if work else cache / "opendental-etl" / "dbt"

    clinics: dict[str, Clinic] = {}
    for name, raw in document["clinics"].items():
        where = f"{path}: clinic {name!r}"
        before = len(errors)
        if not isinstance(name, str) or not CLINIC_NAME.fullmatch(name):
            errors.append(f"{where}: the name must be lower case letters, digits and _ (up to 40, starting "
                          "with a letter): it becomes part of DAG ids, pools, database and schema names")
            continue
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            errors.append(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
            continue
        clinic = _parse_clinic(name, defaults, raw, where, path, servers, warehouses, errors)
        if clinic is not None and len(errors) == before:
            clinics[name] = clinic

    _check_isolation(clinics, path, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return ClinicsConfig(path=path, clinics=clinics, dbt_work_dir=dbt_work_dir, source_servers=servers,
                         warehouses=warehouses)


def _relative(path: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else path.parent / p


def _parse_section(document, key, path, errors, parse_one) -> dict:
    raw = document.get(key) or {}
    if not isinstance(raw, dict):
        errors.append(f"{path}: {key}: expected a mapping of name to settings, got {type(raw).__name__}")
        return {}
    parsed = {}
    for name, settings in raw.items():
        where = f"{path}: {key}: {name!r}"
        if not isinstance(name, str) or not CLINIC_NAME.fullmatch(name):
            errors.append(f"{where}: the name must be lower case letters, digits and _ (it names an Airflow pool)")
            continue
        settings = settings or {}
        if not isinstance(settings, dict):
            errors.append(f"{where}: expected a mapping of settings, got {type(settings).__name__}")
            continue
        item = parse_one(name, settings, where, errors)
        if item is not None:
            parsed[name] = item
    return parsed


def _pool_slots(raw: dict, default: int, where: str, errors: list[str]) -> int:
    slots = raw.get("pool_slots", default)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots <= 0:
        errors.append(f"{where}: pool_slots: expected a positive integer, got {slots!r}")
        return default
    return slots


def _unknown_keys(raw: dict, allowed: tuple[str, ...], where: str, errors: list[str]) -> None:
    for key in raw:
        if key not in allowed and not str(key).startswith("x_"):
            errors.append(f"{where}: unknown key {key!r}; expected one of {', '.join(allowed)}")


def _parse_server(name: str, raw: dict, where: str, errors: list[str]) -> SourceServer:
    _unknown_keys(raw, ("pool_slots",), where, errors)
    return SourceServer(name, _pool_slots(raw, DEFAULT_SOURCE_POOL_SLOTS, where, errors))


def _parse_warehouse(name: str, raw: dict, where: str, errors: list[str]) -> Warehouse | None:
    _unknown_keys(raw, ("analytics", "pool_slots"), where, errors)
    analytics = _parse_ref(raw.get("analytics"), where, "analytics", errors)
    slots = _pool_slots(raw, DEFAULT_WAREHOUSE_POOL_SLOTS, where, errors)
    return Warehouse(name, analytics, slots) if analytics is not None else None


def _parse_ref(raw: Any, where: str, key: str, errors: list[str]) -> Ref | None:
    hint = "expected {env: VARIABLE} or {airflow_connection: CONN_ID} (never a URL or password here)"
    if raw is None:
        errors.append(f"{where}: {key}: missing; {hint}")
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        # a string may be a URL with its password: never echo it
        errors.append(f"{where}: {key}: {hint}, got " + ("a text" if isinstance(raw, str) else repr(raw)))
        return None
    (kind, name), = raw.items()
    if kind == "env" and isinstance(name, str) and _ENV_NAME.fullmatch(name):
        return Ref("env", name)
    if kind == "airflow_connection" and isinstance(name, str) and _CONN_ID.fullmatch(name):
        return Ref("airflow_connection", name)
    errors.append(f"{where}: {key}: {hint}, got {mask_secrets(repr(raw))}")
    return None


def _identifier(value: Any, default: str, where: str, key: str, errors: list[str]) -> str:
    value = default if value is None else value
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        errors.append(f"{where}: {key}: {value!r} is not a plain identifier (letters, digits and _, up to 64)")
        return default
    return value


def _parse_clinic(name: str, defaults: dict, own: dict, where: str, path: Path,
                  servers: dict[str, SourceServer], warehouses: dict[str, Warehouse],
                  errors: list[str]) -> Clinic | None:
    _unknown_keys(own, CLINIC_KEYS, where, errors)
    raw = {k: v for k, v in defaults.items() if k in CLINIC_KEYS}
    raw.update({k: v for k, v in own.items() if k in CLINIC_KEYS})
    shared, mine = defaults.get("settings"), own.get("settings")
    if isinstance(shared, dict) and isinstance(mine, dict):  # settings merge key by key
        raw["settings"] = {**shared, **mine}

    source = _parse_ref(raw.get("source"), where, "source", errors)
    replica = _parse_ref(raw.get("replica"), where, "replica", errors)
    source_database = raw.get("source_database")
    if source_database is not None:
        source_database = _identifier(source_database, "", where, "source_database", errors) or None

    server_name = raw.get("source_server")
    if server_name is None:  # the common case: every practice has its own server
        server = servers.get(name, SourceServer(name))
    elif server_name in servers:
        server = servers[server_name]
    else:
        errors.append(f"{where}: source_server: {server_name!r} is not declared under source_servers "
                      f"(declared: {', '.join(servers) or 'none'})")
        server = SourceServer(name)

    warehouse_name = raw.get("warehouse")
    if warehouse_name is None and len(warehouses) == 1:
        warehouse_name = next(iter(warehouses))
    warehouse = warehouses.get(warehouse_name) if isinstance(warehouse_name, str) else None
    if warehouse is None:
        errors.append(f"{where}: warehouse: {warehouse_name!r} is not declared under warehouses "
                      f"(declared: {', '.join(warehouses) or 'none'})")

    replica_database = _identifier(raw.get("replica_database"), f"opendental_replication_{name}", where,
                                   "replica_database", errors)
    raw_schema = _identifier(raw.get("raw_schema"), f"raw_{name}", where, "raw_schema", errors)
    suffix = raw.get("dbt_schema_suffix", f"_{name}")
    if suffix is None:
        suffix = ""
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        errors.append(f"{where}: dbt_schema_suffix: expected letters, digits and _ (up to 30), got {suffix!r}")
        suffix = f"_{name}"

    tables = raw.get("tables")
    if not isinstance(tables, str) or not tables.strip():
        errors.append(f"{where}: tables: expected the path of the clinic's tables.yml, got {tables!r}")
        tables = "tables.yml"

    schedules = {}
    for key, default in (("schedule", DEFAULT_SCHEDULE), ("verify_schedule", DEFAULT_VERIFY_SCHEDULE)):
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            errors.append(f"{where}: {key}: expected a cron expression, a preset such as @daily, or null "
                          f"(triggered by hand only), got {value!r}")
            value = default
        schedules[key] = value

    retries = raw.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        errors.append(f"{where}: retries: expected a whole number >= 0, got {retries!r}")
        retries = DEFAULT_RETRIES
    delay = raw.get("retry_delay_minutes", DEFAULT_RETRY_DELAY_MINUTES)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        errors.append(f"{where}: retry_delay_minutes: expected a number >= 0, got {delay!r}")
        delay = DEFAULT_RETRY_DELAY_MINUTES

    settings = _parse_settings(raw.get("settings"), where, errors)
    if source is None or replica is None or warehouse is None:
        return None
    return Clinic(
        name=name, source=source, source_database=source_database, source_server=server, replica=replica,
        replica_database=replica_database, warehouse=warehouse, raw_schema=raw_schema, dbt_schema_suffix=suffix,
        tables=_relative(path, tables), schedule=schedules["schedule"],
        verify_schedule=schedules["verify_schedule"], retries=retries, retry_delay_minutes=float(delay),
        settings=settings,
    )


def _parse_settings(raw: Any, where: str, errors: list[str]) -> tuple[tuple[str, str], ...]:
    """Extra ETL_* settings of the clinic (ETL_LOCK_TIMEOUT, ETL_RETRIES, ETL_DBT_PROJECT_DIR...)."""
    if raw is None or raw == {}:
        return ()
    if not isinstance(raw, dict):
        errors.append(f"{where}: settings: expected a mapping of ETL_* setting to value, got {type(raw).__name__}")
        return ()
    items = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key.startswith("ETL_") or not _ENV_NAME.fullmatch(key):
            errors.append(f"{where}: settings: {key!r} is not an ETL_* setting")
        elif key in OWNED_SETTINGS:
            errors.append(f"{where}: settings: {key} is set by the clinic itself (source, replica, warehouse, "
                          "raw_schema, tables, dbt_schema_suffix), not here")
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            errors.append(f"{where}: settings: {key}: expected a text or a number, got {value!r}")
        else:
            items.append((key, str(value)))
    return tuple(items)


def _check_isolation(clinics: dict[str, Clinic], path: Path, errors: list[str]) -> None:
    """Two clinics never share a replica database, a raw schema or dbt's model schemas."""
    seen: dict[tuple, str] = {}
    for clinic in clinics.values():
        claims = {
            ("replica", clinic.replica, clinic.replica_database):
                f"replica_database: {clinic.replica_database!r} on {clinic.replica.describe()}",
            ("raw", clinic.warehouse.name, clinic.raw_schema):
                f"raw_schema: {clinic.raw_schema!r} in warehouse {clinic.warehouse.name!r}",
            ("dbt", clinic.warehouse.name, clinic.dbt_schema_suffix):
                f"dbt_schema_suffix: {clinic.dbt_schema_suffix!r} in warehouse {clinic.warehouse.name!r}",
        }
        for claim, text in claims.items():
            if claim in seen:
                errors.append(f"{path}: clinic {clinic.name!r}: {text} is also clinic {seen[claim]!r}'s: "
                              "two clinics never share tracking, watermarks or locks")
            else:
                seen[claim] = clinic.name


# ---------------------------------------------------------------- one clinic -> its settings

def resolve_url(ref: Ref, environ: Mapping[str, str], where: str) -> URL:
    """The URL a reference names, from the environment (Airflow connections: AIRFLOW_CONN_<ID>)."""
    value = environ.get(ref.variable)
    if not value:
        if ref.kind == "env":
            raise ConfigError(f"{where}: environment variable {ref.name} is not set")
        raise ConfigError(f"{where}: Airflow connection {ref.name!r} is not in this environment: set "
                          f"{ref.variable} (the URI or JSON form of the connection) to run it by hand; "
                          "inside Airflow the task passes it")
    if ref.kind == "env":
        try:
            return make_url(value)
        except Exception:
            raise ConfigError(f"{where}: ${ref.name} is not a database URL") from None
    return connection_url(value, f"{where}: {ref.variable}")


def connection_url(value: str, where: str) -> URL:
    """An Airflow connection in its environment form (JSON or URI) -> the SQLAlchemy URL the ETL uses."""
    value = value.strip()
    try:
        if value.startswith("{"):
            conn = json.loads(value)
            if not isinstance(conn, dict):
                raise ValueError
            conn_type, host, port = conn.get("conn_type"), conn.get("host"), conn.get("port")
            login, password, schema = conn.get("login"), conn.get("password"), conn.get("schema")
        else:
            parts = urlsplit(value)
            conn_type = parts.scheme.replace("-", "_")
            host, port = unquote(parts.hostname or "") or None, parts.port
            login = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password else None
            schema = unquote(parts.path.lstrip("/")) or None
    except ValueError:
        raise ConfigError(f"{where}: not an Airflow connection (JSON or URI)") from None
    driver = CONN_DRIVERS.get(str(conn_type or "").lower())
    if driver is None:
        raise ConfigError(f"{where}: connection type {conn_type!r} is not one of {', '.join(CONN_DRIVERS)}")
    return URL.create(driver, username=login or None, password=password or None, host=host or None,
                      port=int(port) if port not in (None, "") else None, database=schema or None)


def clinic_environment(config: ClinicsConfig, name: str, environ: Mapping[str, str] | None = None,
                       cwd: Path | None = None) -> dict[str, str]:
    """The settings (environment variables) that make the ETL run for one clinic.

    References are read from `environ` (default: os.environ), then the .env file of the working directory."""
    clinic = config.clinic(name)
    cwd = cwd or Path.cwd()
    env = {**read_dotenv(cwd / ".env"), **(os.environ if environ is None else environ)}
    where = f"{config.path}: clinic {name!r}"
    source = resolve_url(clinic.source, env, f"{where}: source")
    if clinic.source_database:
        source = source.set(database=clinic.source_database)
    if not source.database:
        raise ConfigError(f"{where}: source: {clinic.source.describe()} names no database; "
                          "set source_database")
    replica = resolve_url(clinic.replica, env, f"{where}: replica").set(database=clinic.replica_database)
    analytics = resolve_url(clinic.warehouse.analytics, env, f"{where}: warehouse {clinic.warehouse.name}")
    if not analytics.database:
        raise ConfigError(f"{where}: warehouse {clinic.warehouse.name}: {clinic.warehouse.analytics.describe()} "
                          "names no database")
    state = config.dbt_work_dir / name
    return {
        **dict(clinic.settings),
        "ETL_SOURCE_URL": source.render_as_string(hide_password=False),
        "ETL_REPLICA_URL": replica.render_as_string(hide_password=False),
        "ETL_ANALYTICS_URL": analytics.render_as_string(hide_password=False),
        "ETL_RAW_SCHEMA": clinic.raw_schema,
        "ETL_TABLES": str(clinic.tables),
        "ETL_DBT_SCHEMA_SUFFIX": clinic.dbt_schema_suffix,
        # dbt keeps its parse state and logs per clinic: two clinics' runs never share (or race on) them.
        "DBT_TARGET_PATH": str(state / "target"),
        "DBT_LOG_PATH": str(state / "logs"),
    }


@contextlib.contextmanager
def clinic_applied(name: str, path: Path | None = None) -> Iterator[Clinic]:
    """`etl --clinic NAME`: the clinic's settings in os.environ for the command, restored afterwards."""
    config = load_clinics(path)
    values = clinic_environment(config, name)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield config.clinic(name)
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def describe_clinics(config: ClinicsConfig) -> list[dict[str, Any]]:
    """What `etl clinics` prints: where each clinic's settings come from (never a URL or password)."""
    rows = []
    for c in config.clinics.values():
        rows.append({
            "clinic": c.name, "dag_id": c.dag_id, "verify_dag_id": c.verify_dag_id,
            "source": c.source.describe() + (f" (database {c.source_database})" if c.source_database else ""),
            "source_pool": c.source_server.pool, "replica": c.replica.describe(),
            "replica_database": c.replica_database, "warehouse": c.warehouse.name,
            "analytics": c.warehouse.analytics.describe(), "warehouse_pool": c.warehouse.pool,
            "raw_schema": c.raw_schema, "dbt_schema_suffix": c.dbt_schema_suffix, "tables": str(c.tables),
            "schedule": c.schedule, "verify_schedule": c.verify_schedule,
        })
    return rows
