"""etl.progress: the text of a tracker, and the modes (terminal line, periodic log lines, off)."""

from __future__ import annotations

import io
import logging

from etl import progress


def test_describe_with_an_estimate_gives_share_rate_and_eta(monkeypatch) -> None:
    tracker = progress.Tracker("load procedurelog", 1_000_000, counts_rows=True)
    tracker.started = 100.0
    tracker.rows = 250_000
    text = tracker.describe(now=102.0)  # 125k rows/s, 750k rows to go: 6 s
    assert text == "load procedurelog 250,000/~1,000,000 25% 125.0k rows/s ETA 6s"


def test_describe_without_rows_shows_time_elapsed() -> None:
    tracker = progress.Tracker("copy procedurelog (server-side)", 818_050, counts_rows=False)
    tracker.started = 0.0
    assert tracker.describe(now=75.0) == "copy procedurelog (server-side): 1m15s elapsed (~818,050 rows)"


def test_an_estimate_that_is_too_low_never_shows_more_than_99_percent() -> None:
    tracker = progress.Tracker("load x", 10, counts_rows=True)
    tracker.started, tracker.rows = 0.0, 50
    assert "99%" in tracker.describe(now=1.0) and "ETA" not in tracker.describe(now=1.0)


def test_mode_follows_the_terminal_and_the_setting(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    display = progress._Display()
    monkeypatch.delenv("ETL_PROGRESS", raising=False)
    assert display.mode(Tty()) == "tty"
    assert display.mode(io.StringIO()) == "log"
    monkeypatch.setenv("ETL_PROGRESS", "0")
    assert display.mode(Tty()) is None
    monkeypatch.setenv("ETL_PROGRESS", "1")
    assert display.mode(io.StringIO()) == "tty"


def test_log_mode_writes_a_line_per_interval(monkeypatch, caplog) -> None:
    monkeypatch.setenv("ETL_PROGRESS", "log")
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="etl.progress")
    with progress.track("load t", estimate=100) as bar:
        bar.advance(40)
        import time
        time.sleep(1.2)  # the display thread looks once a second in log mode
    assert any(r.getMessage().startswith("load t 40/~100 40%") for r in caplog.records)


def test_off_means_no_thread(monkeypatch) -> None:
    monkeypatch.setenv("ETL_PROGRESS", "0")
    with progress.track("load t") as bar:
        bar.advance(5)
        assert progress._display.thread is None
    assert bar.rows == 5


def test_a_terminal_reporting_zero_columns_gets_a_line_that_never_wraps(monkeypatch) -> None:
    import io
    import os

    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    monkeypatch.delenv("COLUMNS", raising=False)
    stream = io.StringIO()
    stream.fileno = lambda: 2  # type: ignore[method-assign]
    assert progress._width(stream) == 80
    monkeypatch.setenv("COLUMNS", "40")
    assert progress._width(stream) == 40
    display = progress._Display()
    tracker = progress.Tracker("copy procedurelog " + "x" * 100, 1000, True)
    display._draw(stream, [tracker])
    assert len(stream.getvalue().split("\x1b[K")[-1]) <= 39


def test_a_log_record_never_shares_the_progress_line() -> None:
    import io
    import logging

    stream = io.StringIO()
    progress._display._draw_locked(stream, [progress.Tracker("copy patient", None, True)])
    assert progress._display.drawn
    handler = progress.LogHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.LogRecord("etl", logging.INFO, __file__, 1, "a log line", None, None))
    text = stream.getvalue()
    # The line was wiped (carriage return, erase) before the record: the record starts a clean line.
    assert text.endswith("\r\x1b[Ka log line\n") and not progress._display.drawn


def test_a_polled_statement_shows_rows_and_rate() -> None:
    answers = iter([None, 5000])
    tracker = progress.Tracker("copy procedurelog (server-side)", None, False, poll=lambda: next(answers))
    tracker.refresh(tracker.started + 3)
    assert "elapsed" in tracker.describe()          # the server said nothing yet
    tracker.refresh(tracker.started + 3.5)          # within POLL_INTERVAL: not asked again
    tracker.refresh(tracker.started + 6)
    assert tracker.rows == 5000 and "rows/s" in tracker.describe(tracker.started + 6)
