"""The out-of-process static checker: same reports as in process, bounded in time and memory, and a worker
that ran over is replaced while the others keep answering."""

from __future__ import annotations

import threading
import time

import pytest
from autotts_graph.sandbox.checker_pool import CheckerPool, CheckerUnavailable
from autotts_graph.sandbox.static_checks import MAX_SOURCE_CHARS, check_source

from .bypasses import BYPASSES
from .conftest import ASC

# At the size cap and slow to check (100k names in one list); nothing in it breaks a rule.
SLOW = "X = [" + ",".join(["a"] * ((MAX_SOURCE_CHARS - 10) // 2)) + "]\n"


@pytest.fixture
def pool():
    pool = CheckerPool(workers=2)
    yield pool
    pool.close()


def test_reports_equal_the_in_process_checks(pool):
    for source in (ASC, *(b.source for b in BYPASSES[::7]), "x = (", "x = " + "-" * 100_000 + "1"):
        assert pool.check(source) == check_source(source)


def test_concurrent_checks_share_the_workers(pool):
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(pool.check(ASC))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 6 and all(r.errors == [] and r.interpreter == "pypy" for r in results)
    assert len(pool._all) == 2  # never more workers than the pool's size


def test_a_check_past_the_time_limit_is_one_error_and_its_worker_is_replaced():
    pool = CheckerPool(workers=1)
    try:
        pool.check(ASC)  # the worker is started (and warm) before the timed check
        pool.timeout_s = 0.05
        first = next(iter(pool._all))
        started = time.monotonic()
        report = pool.check(SLOW)
        assert time.monotonic() - started < 5
        assert report.errors == ["checking the source took longer than 0.05 s; simplify it"]
        assert first.proc.wait(5) is not None  # killed
        pool.timeout_s = 60.0
        assert pool.check(ASC).errors == []  # a fresh worker answers
        assert next(iter(pool._all)) is not first
    finally:
        pool.close()


def test_a_check_past_the_memory_limit_is_one_error():
    pool = CheckerPool(workers=1, memory_mb=200)  # a warm worker maps ~100 MB; the slow source peaks at ~300
    try:
        assert pool.check(ASC).errors == []
        report = pool.check(SLOW)
        assert len(report.errors) == 1 and ("MB of memory" in report.errors[0]
                                            or "nested too deeply" in report.errors[0]), report.errors
        assert pool.check(ASC).errors == []
    finally:
        pool.close()


def test_over_the_size_cap_no_worker_starts():
    pool = CheckerPool(workers=1)
    try:
        report = pool.check("x = 1\n" * (MAX_SOURCE_CHARS // 6 + 1))
        assert len(report.errors) == 1 and "the limit is" in report.errors[0]
        assert pool._all == set()
    finally:
        pool.close()
    with pytest.raises(CheckerUnavailable, match="closed"):
        pool.check(ASC)
