"""Waiting for a subprocess run to reach the point where a test kills it (shared by the kill -9 tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def wait_for_kill_point(pred: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> None:
    """Poll ``pred`` until it holds; fail with the run's output if the run ends first, or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"the run ended before it was killed (rc {proc.returncode}):\n{out[-3000:]}")
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the run to reach the kill point")


def kill_9_at(proc: subprocess.Popen, pred: Callable[[], bool], timeout: float) -> None:
    """Kill -9 the run once ``pred`` holds (as ``wait_for_kill_point``) and reap it; the run is never left
    running, and it must have died of that SIGKILL."""
    try:
        wait_for_kill_point(pred, timeout, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_nothing_lost_or_redone(store, run_id: str, before: dict, slots: int) -> dict:
    """After a kill -9 and ``--resume`` of a 2-generation run with ``slots`` lanes: what was recorded before the
    kill is unchanged; one candidate per (generation, slot), each evaluated exactly once; every lane node ran
    once per candidate, prepare once, record once per generation. Returns the candidates by id."""
    from autotts_graph.store import history

    after = {c.candidate_id: c for c in history.candidates(store, run_id)}
    for cid, c in before.items():
        assert cid in after and after[cid].source == c.source and after[cid].slot == c.slot
    assert sorted((c.round, c.slot) for c in after.values()) == [(g, s) for g in (0, 1) for s in range(slots)]
    assert all(c.status == "evaluated" for c in after.values())
    report = history.get_run(store, run_id).report
    finalists = {f["candidate_id"] for f in report["selection"]["finalists"]}
    for cid in after:  # one evaluation each, and each finalist's fresh-seed strict audit
        assert history.count_evaluations(store, run_id=run_id, candidate_id=cid, split="search") == \
            1 + (cid in finalists)
    spend = history.run_spend(store, run_id)
    for node in ("propose", "check", "critique", "evaluate", "diagnose"):
        assert spend[node].calls == 2 * slots, (node, spend[node])
    assert spend["prepare"].calls == 1 and spend["record"].calls == 2
    return after
