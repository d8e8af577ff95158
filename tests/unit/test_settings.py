"""etl/settings.py: environment + .env + defaults; passwords never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from etl.errors import ConfigError
from etl.settings import DEFAULTS, Settings, mask_secrets, mask_url, read_dotenv


def test_mask_secrets_hides_the_password_of_one_url() -> None:
    assert mask_secrets("mysql+pymysql://u:s3cret@h/db") == "mysql+pymysql://u:***@h/db"


def test_mask_secrets_hides_every_password_in_a_longer_message() -> None:
    message = ("copy failed: cannot reach mysql+pymysql://etl:s3cret@10.0.0.5:3306/opendental, then tried "
               "postgresql+psycopg2://loader:pa55-w0rd!@pg.local:5432/analytics (timeout)")
    masked = mask_secrets(message)
    assert masked == ("copy failed: cannot reach mysql+pymysql://etl:***@10.0.0.5:3306/opendental, then tried "
                      "postgresql+psycopg2://loader:***@pg.local:5432/analytics (timeout)")
    assert "s3cret" not in masked and "pa55-w0rd" not in masked


def test_mask_secrets_leaves_urls_without_password_and_other_text_alone() -> None:
    text = "mysql+pymysql://root@127.0.0.1:3306/opendental at 12:30:00, ratio 3:1"
    assert mask_secrets(text) == text


def test_mask_url() -> None:
    url = make_url("mysql+pymysql://u:s3cret@h:3306/db")
    assert "s3cret" not in mask_url(url) and mask_url(url) == "mysql+pymysql://u:***@h:3306/db"
    assert mask_url("mysql+pymysql://u:s3cret@h/db") == "mysql+pymysql://u:***@h/db"


def test_defaults_when_no_environment(tmp_path) -> None:
    settings = Settings.load(environ={}, cwd=tmp_path)
    assert settings.source_url == make_url(DEFAULTS["ETL_SOURCE_URL"])
    assert settings.source_url.database == "opendental"
    assert settings.replica_url.database == "opendental_replication"
    assert settings.analytics_url.database == "opendental_analytics"
    assert settings.raw_schema == "raw"
    assert settings.tables_path == tmp_path / "tables.yml"
    assert settings.same_mysql_server()


def test_os_environ_is_used_when_no_mapping_is_given(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ETL_RAW_SCHEMA", "raw_test")
    monkeypatch.delenv("ETL_TABLES", raising=False)
    assert Settings.load(cwd=tmp_path).raw_schema == "raw_test"


def test_environment_overrides(tmp_path) -> None:
    settings = Settings.load(environ={
        "ETL_SOURCE_URL": "mysql+pymysql://etl:pw@src.example:3307/od",
        "ETL_TABLES": "/etc/etl/tables.yml",
        "OTHER": "ignored",
    }, cwd=tmp_path)
    assert settings.source_url.host == "src.example" and settings.source_url.port == 3307
    assert settings.tables_path == Path("/etc/etl/tables.yml")
    assert not settings.same_mysql_server()


@pytest.mark.parametrize("schema", ["raw;drop", "raw schema", 'ra"w', "1raw", "", "r" * 65])
def test_raw_schema_must_be_a_plain_identifier(tmp_path, schema: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={"ETL_RAW_SCHEMA": schema}, cwd=tmp_path)
    assert str(info.value) == f"setting ETL_RAW_SCHEMA: {schema!r} is not a plain identifier"
    assert info.value.exit_code == 2


def test_raw_schema_with_trailing_newline_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError):
        Settings.load(environ={"ETL_RAW_SCHEMA": "raw\n"}, cwd=tmp_path)


def test_dotenv_in_cwd_is_read(tmp_path) -> None:
    (tmp_path / ".env").write_text(
        "# local settings\n"
        "\n"
        "ETL_RAW_SCHEMA=staging\n"
        "export ETL_REPLICA_URL=\"mysql+pymysql://rep:pw@replica.example:3310/replica_db\"\n"
        "ETL_TABLES='conf/tables.yml'\n"
        "NOT_ETL=whatever\n",
        encoding="utf-8",
    )
    settings = Settings.load(environ={}, cwd=tmp_path)
    assert settings.raw_schema == "staging"
    assert settings.replica_url.host == "replica.example" and settings.replica_url.database == "replica_db"
    assert settings.tables_path == tmp_path / "conf" / "tables.yml"
    assert not settings.same_mysql_server()


def test_environment_beats_dotenv(tmp_path) -> None:
    (tmp_path / ".env").write_text("ETL_RAW_SCHEMA=from_file\n", encoding="utf-8")
    assert Settings.load(environ={"ETL_RAW_SCHEMA": "from_env"}, cwd=tmp_path).raw_schema == "from_env"


def test_malformed_dotenv_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / ".env"
    path.write_text("ETL_RAW_SCHEMA=raw\nthis is not a setting\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_dotenv(path)
    assert str(info.value) == f"{path}:2: expected KEY=VALUE"


def test_missing_dotenv_is_empty(tmp_path) -> None:
    assert read_dotenv(tmp_path / ".env") == {}


def test_wrong_url_kind_is_reported_masked(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={"ETL_SOURCE_URL": "postgresql://u:s3cret@h/db"}, cwd=tmp_path)
    assert str(info.value) == "setting ETL_SOURCE_URL: expected a mysql URL with a database name, got postgresql://u:***@h/db"
    assert "s3cret" not in str(info.value)


def test_url_without_database_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^setting ETL_ANALYTICS_URL: expected a postgresql URL with a database name"):
        Settings.load(environ={"ETL_ANALYTICS_URL": "postgresql+psycopg2://u@h:5432"}, cwd=tmp_path)


def test_unparsable_url_is_reported_masked(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={"ETL_REPLICA_URL": "not a url with s3cret"}, cwd=tmp_path)
    assert str(info.value).startswith("setting ETL_REPLICA_URL: not a database URL")


def _settings(source: str, replica: str) -> Settings:
    return Settings(source_url=make_url(source), replica_url=make_url(replica),
                    analytics_url=make_url("postgresql+psycopg2://p@h/a"), raw_schema="raw",
                    tables_path=Path("tables.yml"))


@pytest.mark.parametrize("source, replica, same", [
    ("mysql+pymysql://u@db:3306/a", "mysql+pymysql://u@db:3306/b", True),
    ("mysql+pymysql://u@db/a", "mysql+pymysql://other@db:3306/b", True),       # default port, other user
    ("mysql+pymysql:///a", "mysql+pymysql://u@localhost:3306/b", True),         # no host means localhost
    ("mysql+pymysql://u@db:3306/a", "mysql+pymysql://u@db:3307/b", False),
    ("mysql+pymysql://u@db1:3306/a", "mysql+pymysql://u@db2:3306/b", False),
])
def test_same_mysql_server(source: str, replica: str, same: bool) -> None:
    assert _settings(source, replica).same_mysql_server() is same


def test_dotenv_inline_comments_are_stripped_but_a_hash_inside_a_value_stays(tmp_path) -> None:
    path = tmp_path / ".env"
    path.write_text("ETL_RETRIES=5   # more patience at night\n"
                    "ETL_RAW_SCHEMA='raw_north' # quoted, then a comment\n"
                    "ETL_TABLES=tables#1.yml\n"
                    'ETL_SOURCE_URL="mysql+pymysql://etl:pa # ss@db/opendental"\n')
    values = read_dotenv(path)
    assert values["ETL_RETRIES"] == "5" and values["ETL_RAW_SCHEMA"] == "raw_north"
    assert values["ETL_TABLES"] == "tables#1.yml"
    assert values["ETL_SOURCE_URL"] == "mysql+pymysql://etl:pa # ss@db/opendental"


@pytest.mark.parametrize("url", ["mysql+pymysql://root:p@ss word@host:notaport/db", "mysql://u:s3cr3t@h:x/db"])
def test_a_url_that_does_not_parse_is_never_echoed(tmp_path, url) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load({"ETL_SOURCE_URL": url}, cwd=tmp_path)
    assert "ETL_SOURCE_URL" in str(caught.value) and "ss word" not in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and url not in str(caught.value)


def test_chunk_seconds_default_and_override(tmp_path) -> None:
    assert Settings.load(environ={}, cwd=tmp_path).chunk_seconds == 0.25
    assert Settings.load(environ={"ETL_CHUNK_SECONDS": "0.1"}, cwd=tmp_path).chunk_seconds == 0.1


@pytest.mark.parametrize("value", ["0", "-1", "abc", "120", ""])
def test_chunk_seconds_out_of_range_names_the_setting(tmp_path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={"ETL_CHUNK_SECONDS": value}, cwd=tmp_path)
    assert str(info.value) == f"setting ETL_CHUNK_SECONDS: expected seconds between 0.01 and 60, got {value!r}"
