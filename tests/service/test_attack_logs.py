"""Log lines a caller cannot forge or blow up (issue 24, item 14): control characters in plain-text
lines are escaped, caller-chosen fields are cut, and a thread's traceback is a JSON line like every
other under JSON logs."""
from __future__ import annotations

import io
import json
import logging
import sys
import threading
from typing import Any, Callable, Iterator

import pytest

from service.logs import MAX_CALLER_TEXT, configure


@pytest.fixture()
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], io.StringIO]]:
    """``configure(json_logs)`` writing to a buffer; the logging setup (and the thread exception
    hook) restored afterwards."""
    buffer = io.StringIO()
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root, ours = logging.getLogger(), logging.getLogger("covreq")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)

    def configure_to_buffer(json_logs: bool) -> io.StringIO:
        monkeypatch.setattr(sys, "stderr", buffer)  # here: pytest sets its own between setup and call
        configure(json_logs=json_logs)
        return buffer
    yield configure_to_buffer
    root.handlers[:], ours.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    ours.setLevel(saved[3])
    ours.propagate = saved[4]


def test_control_characters_in_a_path_neither_forge_lines_nor_reach_the_terminal(
        configured: Callable[[bool], io.StringIO], client: Any) -> None:
    """Regression: ``%0a`` and ``%1b`` in a path wrote a second, forged line and an ANSI escape."""
    logs = configured(False)
    client.get("/v1/policies/x%0a2026-01-01 00:00:00,000 INFO covreq.reload reloaded%1b[2J%e2%80%a8%c2%9b")
    (line,) = [line for line in logs.getvalue().splitlines() if "covreq.access" in line]
    assert len(logs.getvalue().splitlines()) == 1
    assert "\x1b" not in line and "\u2028" not in line and "\x9b" not in line
    assert "x\\x0a2026-01-01" in line and "\\x1b[2J" in line


def test_a_long_invented_method_is_cut_in_the_log(configured: Callable[[bool], io.StringIO], client: Any) -> None:
    """Regression: a 16 KB method was logged whole, in both formats."""
    for json_logs in (True, False):
        logs = configured(json_logs)
        client.request("M" * 16_000, "/v1/ruleset")
        (line,) = logs.getvalue().splitlines()
        assert len(line) < 4 * MAX_CALLER_TEXT + 200
        if json_logs:
            assert json.loads(line)["method"] == "M" * MAX_CALLER_TEXT
        logs.truncate(0)
        logs.seek(0)


def test_a_traceback_in_plain_text_cannot_start_a_line_of_its_own(configured: Callable[[bool], io.StringIO]) -> None:
    logs = configured(False)
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO covreq.reload forged")
    except ValueError:
        logging.getLogger("covreq.service").exception("failed")
    first, *rest = logs.getvalue().splitlines()
    assert first.endswith("ERROR covreq.service failed") and rest
    assert all(line.startswith(" ") for line in rest)


def test_a_thread_that_dies_leaves_one_json_line_with_its_traceback(configured: Callable[[bool], io.StringIO]) -> None:
    """Regression: the bundle poller's traceback was printed as plain text under JSON logs."""
    logs = configured(True)

    def crash() -> None:
        raise OSError("No space left on device")
    thread = threading.Thread(target=crash, name="covreq-bundle-poll")
    thread.start()
    thread.join()
    (line,) = logs.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["event"] == "thread-crashed" and entry["thread_name"] == "covreq-bundle-poll"
    assert "OSError: No space left on device" in entry["exception"]
