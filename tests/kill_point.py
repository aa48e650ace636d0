"""Waiting for a subprocess run to reach the point where a test kills it (shared by the kill -9 tests)."""

from __future__ import annotations

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
