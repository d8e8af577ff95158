"""The exception family, and the two helpers every message goes through: a message names the file, table,
column or setting at fault, and never carries a password (:func:`mask_secrets`)."""

from __future__ import annotations

import re
from typing import Any

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@")


def mask_secrets(text: str) -> str:
    """Replace the password of every URL inside `text` with ***."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", str(text))


def first_line(value: Any, *, lines: int = 1) -> str:
    """The message of an exception (or any value) for a one-line report, secrets masked: its first `lines`
    non-empty lines, joined. A driver error's own text is preferred to its SQL or error code (PyMySQL keeps
    the text in ``args[1]``). Nothing to say: the exception's class name, or "(no message)"."""
    args = getattr(value, "args", ()) if isinstance(value, BaseException) else ()
    text = args[1] if len(args) > 1 and isinstance(args[1], str) else value
    found = [line.strip() for line in mask_secrets(str(text if text is not None else "")).splitlines() if line.strip()]
    if found:
        return " ".join(found[:lines])
    return type(value).__name__ if isinstance(value, BaseException) else "(no message)"


class EtlError(Exception):
    """Base of every error the CLI reports as one line (exit code 1 unless a subclass says otherwise)."""

    exit_code = 1


class ConfigError(EtlError):
    """tables.yml or a setting is wrong; nothing has been written."""

    exit_code = 2


class SchemaError(EtlError):
    """The live schema does not match what the configuration or the tracking state expects."""


class RenderError(EtlError):
    """A template could not be rendered, or its binds do not match the parameters given."""


class PhaseError(EtlError):
    """A phase failed for one table."""


class ConnectionFailed(EtlError):
    """A database could not be reached; the message names it by its masked URL."""
