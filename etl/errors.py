"""The exception family. Every message names the file, table, column or setting at fault."""


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
