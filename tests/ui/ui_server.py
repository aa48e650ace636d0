"""The run browser's app in its own process, for the UI tests (a module of its own: test modules import it, and
``conftest`` is a name every test folder has)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


class Server:
    """`autotts-graph ui` in its own process, on a free loopback port."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "autotts_graph.cli.main", "ui", "--store", str(store),
                                      "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("run browser: "):
            self.stop()
            raise AssertionError(f"the ui did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split()[2].rstrip("/")
        self._wait_listening()

    def _wait_listening(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/api/runs", timeout=5).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"the ui does not answer at {self.url}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
