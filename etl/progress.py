"""Progress of long reads: a live status line on a terminal, a log line every ~10 s otherwise.

    with progress.track("load procedurelog", estimate=818_050) as bar:
        for block in blocks:
            ...
            bar.advance(block.rows)

Every table being worked on (``--jobs`` runs several at once) has its own tracker; one background thread
shows them all: on a terminal (stderr is a tty) as one line redrawn in place,
``load procedurelog 412,000/~818,050 50% 98.1k rows/s ETA 4s | copy commlog ...``; otherwise (cron, CI, a
pipe) as plain log lines every LOG_INTERVAL seconds for each tracker still running, so a short run logs
nothing extra. A tracker without row counts (a server-side INSERT ... SELECT) shows the time elapsed.
ETL_PROGRESS=0 turns it off; ETL_PROGRESS=1 forces the terminal line, ETL_PROGRESS=log the log lines.
The estimate comes from the source's own statistics (information_schema TABLE_ROWS), so the ETA is approximate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

log = logging.getLogger("etl.progress")

#: Seconds between two log lines of one tracker when stderr is not a terminal.
LOG_INTERVAL = 10.0
#: Seconds between two redraws of the terminal line.
DRAW_INTERVAL = 0.25
#: Seconds between two polls of a statement's progress (Tracker.poll: a query on the server).
POLL_INTERVAL = 2.0


class Tracker:
    def __init__(self, label: str, estimate: int | None, counts_rows: bool,
                 poll: Callable[[], int | None] | None = None):
        self.label = label
        self.estimate = estimate if estimate and estimate > 0 else None
        self.counts_rows = counts_rows
        self.rows = 0
        self.started = time.monotonic()
        self.last_logged = self.started
        #: For a statement that reports no rows itself: asked (by the display thread, at most once per
        #: POLL_INTERVAL) how many rows it has written so far; None keeps the time-elapsed form.
        self.poll = poll
        self.last_polled = 0.0

    def refresh(self, now: float) -> None:
        if self.poll is None or now - self.last_polled < POLL_INTERVAL:
            return
        self.last_polled = now
        rows = self.poll()
        if rows is not None:
            self.rows, self.counts_rows = rows, True

    def advance(self, rows: int) -> None:
        self.rows += rows  # one writer per tracker; the display thread only reads

    def describe(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        if not self.counts_rows:
            about = f" (~{self.estimate:,} rows)" if self.estimate else ""
            return f"{self.label}: {_duration(elapsed)} elapsed{about}"
        rate = self.rows / elapsed
        text = f"{self.label} {self.rows:,}"
        if self.estimate:
            share = min(int(100 * self.rows / self.estimate), 99)  # an estimate, not a count: never 100%
            text += f"/~{self.estimate:,} {share}%"
        text += f" {_rate(rate)} rows/s"
        if self.estimate and rate > 0 and self.rows < self.estimate:
            text += f" ETA {_duration((self.estimate - self.rows) / rate)}"
        return text


class _Display:
    """The one thread that shows every active tracker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trackers: list[Tracker] = []
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.drawn = False
        #: Held while the line is drawn and while a log record is written (LogHandler): never both at once.
        self.output = threading.RLock()

    def mode(self, stream: TextIO) -> str | None:
        setting = os.environ.get("ETL_PROGRESS", "").strip().lower()
        if setting in ("0", "no", "off", "false"):
            return None
        if setting in ("1", "yes", "on", "true", "tty"):
            return "tty"
        if setting == "log":
            return "log"
        return "tty" if _isatty(stream) else "log"

    def add(self, tracker: Tracker) -> None:
        with self.lock:
            self.trackers.append(tracker)
            if self.thread is None:
                self.wake.clear()
                self.thread = threading.Thread(target=self._loop, name="etl-progress", daemon=True)
                self.thread.start()

    def remove(self, tracker: Tracker) -> None:
        with self.lock:
            if tracker in self.trackers:
                self.trackers.remove(tracker)
            last = not self.trackers
        if last:
            self.wake.set()
            thread = self.thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=1.0)

    def _loop(self) -> None:
        stream = sys.stderr
        mode = self.mode(stream)
        while True:
            stopping = self.wake.wait(DRAW_INTERVAL if mode == "tty" else 1.0)
            with self.lock:
                active = list(self.trackers)
            for tracker in active:
                tracker.refresh(time.monotonic())
            if mode == "tty":
                self._draw(stream, active)
            elif mode == "log":
                now = time.monotonic()
                for tracker in active:
                    if now - tracker.last_logged >= LOG_INTERVAL:
                        tracker.last_logged = now
                        log.info("%s", tracker.describe(now))
            if stopping:
                with self.lock:
                    if not self.trackers:
                        if mode == "tty":
                            self._draw(stream, [])
                        self.thread = None
                        return
                    self.wake.clear()  # a tracker arrived while this one was stopping: go on

    def _draw(self, stream: TextIO, active: list[Tracker]) -> None:
        with self.output:
            self._draw_locked(stream, active)

    def clear(self, stream: TextIO) -> None:
        """Wipe the drawn line (a log record is about to be written; the next redraw puts it back)."""
        if self.drawn:
            try:
                stream.write("\r\x1b[K")
                stream.flush()
            except (OSError, ValueError):
                pass
            self.drawn = False

    def _draw_locked(self, stream: TextIO, active: list[Tracker]) -> None:
        try:
            if not active:
                if self.drawn:
                    stream.write("\r\x1b[K")
                    stream.flush()
                    self.drawn = False
                return
            width = _width(stream)
            text = " | ".join(t.describe() for t in active)
            if len(text) > width - 1:  # the line must never wrap: a wrapped line is not redrawn in place
                text = text[: max(width - 2, 0)] + "…" if width > 2 else ""
            stream.write("\r\x1b[K" + text)
            stream.flush()
            self.drawn = True
        except (OSError, ValueError):  # a closed or broken stderr: progress is not worth failing for
            pass


_display = _Display()


@contextlib.contextmanager
def track(label: str, estimate: int | None = None, *, counts_rows: bool = True,
          poll: Callable[[], int | None] | None = None) -> Iterator[Tracker]:
    """A tracker for one long piece of work; shown while the block runs (see the module docstring)."""
    tracker = Tracker(label, estimate, counts_rows, poll)
    if _display.mode(sys.stderr) is None:
        yield tracker
        return
    _display.add(tracker)
    try:
        yield tracker
    finally:
        _display.remove(tracker)


class LogHandler(logging.StreamHandler):
    """The CLI's log handler: a record never lands on the progress line; the line is wiped first and
    redrawn on the next tick."""

    def emit(self, record: logging.LogRecord) -> None:
        with _display.output:
            _display.clear(self.stream)
            super().emit(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _width(stream: TextIO) -> int:
    """The terminal's columns; some terminals (serial consoles, some containers) report 0: then COLUMNS,
    else 80."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
    return columns if columns > 0 else 80


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
