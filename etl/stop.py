"""Clean stops: SIGTERM (cron, systemd, schedulers) and SIGINT end a run at the next safe point.

The first signal only sets a flag. The phases look at it at their safe points (before a table's phase
starts, after every block or batch, before a retry) through :func:`check`, which raises
:class:`Interrupted`; that unwinds like any other failure of the table: the open transaction is rolled
back, the shadow table and the block files are removed, and the table is recorded ``interrupted`` in the
run history. Nothing starts after the flag is set. A second signal exits at once (exit 128 + signal),
leaving the cleanup to the next start (stale block folders are swept by
:func:`etl.dialects.mysql.sweep_block_folders`; a shadow table is dropped before it is filled again).

While the transform's dbt run holds the main thread, the first signal raises KeyboardInterrupt there
(:func:`main_thread_interruptible`): dbt cancels its own queries on that.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
from typing import Callable, Iterator

from etl.errors import EtlError

_requested = threading.Event()
_signal: list[int] = []
_main_interruptible = threading.Event()
_cancels: dict[int, Callable[[], None]] = {}
_cancels_lock = threading.Lock()

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


class Interrupted(EtlError):
    """The run was asked to stop (a signal); raised at a safe point, never retried."""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return exit_code()


def requested() -> bool:
    return _requested.is_set()


def signal_name() -> str:
    return NAMES.get(_signal[0], f"signal {_signal[0]}") if _signal else "a stop request"


def exit_code() -> int:
    """128 + the signal's number: 143 for SIGTERM, 130 for SIGINT (what shells and systemd expect)."""
    return 128 + (_signal[0] if _signal else signal.SIGINT)


def check(where: str = "") -> None:
    """A safe point: raise Interrupted when a stop was requested."""
    if _requested.is_set():
        raise Interrupted(f"interrupted by {signal_name()}" + (f" ({where})" if where else ""))


def requested_during(seconds: float) -> bool:
    """Sleep (a retry's backoff); True, at once, when a stop is requested meanwhile."""
    return _requested.wait(seconds)


def request(signum: int = signal.SIGTERM) -> None:
    """What the first signal does (also usable by tests and embedding code)."""
    if not _signal:
        _signal.append(signum)
    _requested.set()


def reset() -> None:
    """Forget a stop request (tests, and a long-lived process that handled one)."""
    _requested.clear()
    _signal.clear()


_keys = itertools.count()


@contextlib.contextmanager
def cancel_on_stop(cancel: Callable[[], None] | None) -> Iterator[None]:
    """While inside, a stop request also calls `cancel` (from another thread): a statement that runs for
    long in one piece (a same-server INSERT ... SELECT, a PostgreSQL upsert) is ended on the server."""
    if cancel is None:
        yield
        return
    key = next(_keys)
    with _cancels_lock:
        _cancels[key] = cancel
    try:
        yield
    finally:
        with _cancels_lock:
            _cancels.pop(key, None)


def _cancel_all() -> None:
    with _cancels_lock:
        pending = list(_cancels.values())
    for cancel in pending:
        try:
            cancel()
        except Exception:  # the statement may have ended meanwhile; the safe points still stop the run
            logging.getLogger("etl.stop").debug("cancel failed", exc_info=True)


def _handle(signum: int, _frame) -> None:
    if _requested.is_set():  # the second signal: no more waiting
        try:
            os.write(2, f"stopped at once by a second {NAMES.get(signum, signum)}\n".encode())
        finally:
            os._exit(128 + signum)
    request(signum)
    try:
        os.write(2, f"{NAMES.get(signum, signum)}: stopping at the next safe point "
                    f"(send it again to stop at once)\n".encode())
    except OSError:
        pass
    threading.Thread(target=_cancel_all, name="etl-stop", daemon=True).start()
    if _main_interruptible.is_set():
        raise KeyboardInterrupt


def install() -> None:
    """Handle SIGTERM and SIGINT as above (main thread only, as Python requires)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in NAMES:
        signal.signal(signum, _handle)


@contextlib.contextmanager
def main_thread_interruptible() -> Iterator[None]:
    """Inside: the first signal also raises KeyboardInterrupt in the main thread (a dbt run there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _main_interruptible.set()
    try:
        check()
        yield
    finally:
        _main_interruptible.clear()


def report_line() -> str:
    return f"interrupted by {signal_name()}: stopped at a safe point, open work rolled back"


__all__ = ["Interrupted", "check", "exit_code", "install", "request", "requested", "reset", "wait"]
