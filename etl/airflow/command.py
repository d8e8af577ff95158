"""The one place Airflow tasks reach the ETL: an `etl --clinic NAME ...` command, run as a process.

A task runs exactly the command a person can run by hand, in a process of its own: a crash, a SIGKILL or
the out-of-memory killer ends that command (and fails that task), never the Airflow worker; the ETL's
settings, logging and dbt's in-process state stay the command's own. The command's log (stderr) becomes
the task's log line by line; with ``--json`` its result (stdout) becomes the task's return value.

No Airflow import here: etl.airflow.dags maps a :class:`CommandResult` onto Airflow's exceptions.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from etl.settings import mask_secrets

#: The command that runs the ETL: this interpreter's `etl` (the extra installs both into one environment).
ETL_COMMAND = (sys.executable, "-m", "etl")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int          # negative: killed by that signal
    output: Any              # stdout parsed as JSON (None when empty or not JSON)
    error: str | None        # the last `error:` line the command printed

    @property
    def command(self) -> str:
        return " ".join(["etl", *self.argv[len(ETL_COMMAND):]])

    def describe_failure(self) -> str:
        if self.returncode < 0:
            how = f"killed by signal {-self.returncode}"
        else:
            how = f"exit code {self.returncode}"
        return f"`{self.command}` failed ({how})" + (f": {self.error}" if self.error else "")


def run_etl(clinic: str, args: Sequence[str], *, clinics_path: Path, env: Mapping[str, str] | None = None,
            logger: logging.Logger | None = None) -> CommandResult:
    """Run `etl --clinic <clinic> <args>` with ETL_CLINICS=<clinics_path>, in the folder of clinics.yml
    (a .env there is read); stream its log into `logger`, return its exit code and JSON output."""
    logger = logger or logging.getLogger("etl.airflow")
    clinics_path = Path(clinics_path).resolve()
    argv = (*ETL_COMMAND, "--clinic", clinic, *args)
    environment = {**os.environ, **(env or {}), "ETL_CLINICS": str(clinics_path)}
    environment.setdefault("ETL_PROGRESS", "log")  # a task log is no terminal: a progress line every 10 s
    logger.info("running: %s", " ".join(["etl", "--clinic", clinic, *args]))
    last_error = None
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                                   env=environment, cwd=clinics_path.parent, text=True, errors="replace")
        assert process.stderr is not None
        for line in process.stderr:
            line = mask_secrets(line.rstrip("\n"))
            if line.startswith("error:"):
                last_error = line[len("error:"):].strip()
            level = logging.ERROR if line.startswith("error:") or " ERROR " in line[:20] else \
                logging.WARNING if " WARNING " in line[:20] else logging.INFO
            logger.log(level, "%s", line)
        returncode = process.wait()
        stdout.seek(0)
        text = stdout.read().decode("utf-8", errors="replace").strip()
    output, chatter = _parse_output(text)
    for line in chatter:  # what else reached stdout (dbt prints its progress there) belongs in the log
        logger.info("%s", mask_secrets(line))
    return CommandResult(argv, returncode, output, last_error)


def _parse_output(text: str) -> tuple[Any, list[str]]:
    """The command's JSON: all of stdout, or else its last line (after lines dbt printed); and the rest."""
    if not text:
        return None, []
    try:
        return json.loads(text), []
    except ValueError:
        pass
    lines = text.splitlines()
    try:
        return json.loads(lines[-1]), lines[:-1]
    except ValueError:
        return None, lines
