"""Crash points for the crash-safety tests.

``ETL_CRASH_AT=<point>[:<n>]`` makes the process kill itself with SIGKILL the n-th time (default 1st) it
passes ``crash_point(<point>)``: no cleanup, no rollback from Python, exactly like a power cut or the
OOM killer. Unset (always, outside those tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    spec = os.environ.get("ETL_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        if _counts[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
