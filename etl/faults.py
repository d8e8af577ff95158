"""Crash points for the crash-safety tests.

``ETL_CRASH_AT=<point>[:<n>]`` makes the process kill itself with SIGKILL the n-th time (default 1st) it
passes ``crash_point(<point>)``: no cleanup, no rollback from Python, exactly like a power cut or the
OOM killer. ``ETL_DROP_CONNECTION_AT=<point>[:<n>]`` instead has the server kill the connection handed
to the point (a dropped connection, for the retry tests). Unset (always, outside those tests) each costs
one dictionary lookup.

``ETL_SLOW_AT=<point>`` makes every pass of the point sleep ``ETL_SLOW_SECONDS`` (default 1) after
touching the file ``ETL_SLOW_READY`` names, if any: a run held mid-copy, for the clean-stop tests to send
it a real signal at a known place.

``ETL_FAULT_ONCE=<path>`` makes a fault fire at most once across processes: the first process to fire
it creates <path>, and no process fires while <path> exists. An Airflow task killed this way is retried in
a new process that then runs clean (tests/integration/test_airflow.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

_counts: dict[tuple[str, str], int] = {}
_lock = threading.Lock()


def _due(variable: str, name: str) -> bool:
    """True exactly the n-th time `name` is passed while `variable` names it."""
    spec = os.environ.get(variable)
    if not spec:
        return False
    point, _, nth = spec.partition(":")
    if point != name:
        return False
    with _lock:
        _counts[(variable, name)] = _counts.get((variable, name), 0) + 1
        if _counts[(variable, name)] != int(nth or 1):
            return False
    once = os.environ.get("ETL_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
    return True


def crash_point(name: str, connection=None) -> None:
    if os.environ.get("ETL_SLOW_AT") == name:
        ready = os.environ.get("ETL_SLOW_READY")
        if ready:
            with open(ready, "a"):
                pass
        time.sleep(float(os.environ.get("ETL_SLOW_SECONDS") or 1))
    if _due("ETL_CRASH_AT", name):
        os.kill(os.getpid(), signal.SIGKILL)
    drop_point(name, connection)


def drop_point(name: str, connection) -> None:
    """Only the dropped-connection half of a point: for a thread that owns `connection` (a prefetching
    reader) while another passes the point's crash half."""
    if connection is not None and _due("ETL_DROP_CONNECTION_AT", name):
        try:
            connection.kill(connection.thread_id())
        except Exception:  # the server answering the KILL by closing the socket is the point
            pass
