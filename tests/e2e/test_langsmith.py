"""LangSmith tracing: a run posts traces when the usual LANGSMITH_* variables enable it, and sends nothing
when they do not (even with an endpoint configured)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.slow

SCRIPTED = ["--proposer", "scripted_roles:ScriptedProposer", "--critic", "scripted_roles:ScriptedCritic",
            "--diagnostician", "scripted_roles:ScriptedDiagnostician"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.requests.append(f"{self.command} {self.path}")
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = _ok  # noqa: N815

    def log_message(self, *args):
        pass


def _run_with(env: dict, store) -> list[str]:
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**env, "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
    try:
        res = subprocess.run([sys.executable, "-m", "autotts_graph.cli.main", "run", "--store", str(store.path),
                              "--search", "m1/search", "--heldout", "m1/heldout", "--betas", "0.5", "--seeds", "2",
                              "--rounds", "1", "--sandbox", "process", "--baselines", "", "--no-live", *SCRIPTED],
                             env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        server.shutdown()
    return list(_Recorder.requests)


def test_tracing_only_when_enabled(tiny_env_store, subprocess_env):
    silent = _run_with({**subprocess_env, "LANGSMITH_API_KEY": "lsv2-test"}, tiny_env_store)
    assert silent == []
    traced = _run_with({**subprocess_env, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "lsv2-test"},
                       tiny_env_store)
    assert any(r.startswith("POST /runs") for r in traced), traced
