"""The COPY feed's read-ahead thread (copy_feed.ahead): the chunks in order, an error in the
thread raised in the caller's after the chunks before it, and a caller that stops (the server
refused the data) stops the thread even while it waits on a full queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from prh_ingest.load.copy_feed import ahead


def numbered(count: int, made: list[int], closed: list[bool]) -> Iterator[bytes]:
    try:
        for number in range(count):
            made.append(number)
            yield b"%d\n" % number
    finally:
        closed.append(True)


def checks_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prh-ingest-copy-checks"]


def test_the_chunks_come_in_order_and_the_thread_ends() -> None:
    made: list[int] = []
    closed: list[bool] = []
    assert list(ahead(numbered(50, made, closed), depth=2)) == [b"%d\n" % n for n in range(50)]
    assert closed == [True]
    assert checks_threads() == []


def test_an_error_in_the_thread_comes_after_the_chunks_before_it() -> None:
    def failing() -> Iterator[bytes]:
        yield b"a\n"
        yield b"b\n"
        raise ValueError("row 3 is not valid CSV")

    got: list[bytes] = []
    with pytest.raises(ValueError, match="^row 3 is not valid CSV$"):
        for chunk in ahead(failing()):
            got.append(chunk)
    assert got == [b"a\n", b"b\n"]
    assert checks_threads() == []


def test_a_caller_that_stops_stops_the_thread_waiting_on_a_full_queue() -> None:
    made: list[int] = []
    closed: list[bool] = []
    feed = ahead(numbered(10_000, made, closed), depth=4)
    assert next(feed) == b"0\n"
    deadline = time.monotonic() + 5
    while len(made) < 6 and time.monotonic() < deadline:  # the queue fills, the thread waits
        time.sleep(0.01)
    assert len(made) == 6  # one taken, four waiting, one the thread holds
    feed.close()  # as when copy.write raises: the `with closing(...)` block ends
    assert closed == [True]
    assert len(made) == 6
    assert checks_threads() == []
