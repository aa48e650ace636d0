"""Fixtures for the tests against a real local LLM (tests/llm_server.py): the server, a recording proxy in front
of it (what the server reported, request by request), and role settings pointing at it."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "graph"))  # scripted_roles, for the roles not on the LLM

from llm_server import KEY_ENV, LlamaServer, LocalModelMissing  # noqa: E402


def _start(workdir: Path, context: int | None = None) -> LlamaServer:
    try:
        return LlamaServer(workdir, **({"context": context} if context else {})).start()
    except LocalModelMissing as exc:
        if os.environ.get("AUTOTTS_REQUIRE_LLM"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """One llama-cpp-python server with SmolLM2-135M for the session (one thread, 8,192-token context)."""
    server = _start(tmp_path_factory.mktemp("llm"))
    yield server
    server.stop()


@pytest.fixture
def own_llm_server(tmp_path):
    """A server of the test's own (killed, restarted, or left busy by a cut-off call: it is killed at the end, not
    waited for)."""
    server = _start(tmp_path)
    yield server
    server.kill()


@pytest.fixture
def small_context_server(tmp_path):
    """A server of the test's own with a 4,096-token context (it says so only in its overflow errors)."""
    server = _start(tmp_path, context=4096)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _local_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-local")  # a local server takes any key; the client wants one


class RecordingProxy:
    """A transparent HTTP proxy to the server that keeps, per request, the path, the request body, the status and
    the usage figures the server reported (a stream's usage chunk included)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.seen: list[dict] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    resp = httpx.request(method, proxy.upstream + self.path, content=body, timeout=900,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": self.headers.get("Authorization", "")})
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                proxy.seen.append({"path": self.path, "status": resp.status_code,
                                   "request": json.loads(body) if body else None, "usage": _usage(resp)})
                try:
                    self.send_response(resp.status_code)
                    self.send_header("Content-Type", resp.headers.get("content-type", "application/json"))
                    self.send_header("Content-Length", str(len(resp.content)))
                    self.end_headers()
                    self.wfile.write(resp.content)
                except OSError:
                    pass  # the client gave up (a call cut off at its time limit)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def reported_tokens(self) -> int:
        """Prompt plus completion tokens over every answer the server reported usage for."""
        return sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for s in self.seen if (u := s["usage"]))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _usage(resp: httpx.Response) -> dict | None:
    if "event-stream" in resp.headers.get("content-type", ""):
        for line in resp.text.splitlines():
            if line.startswith("data:") and '"usage"' in line:
                try:
                    usage = json.loads(line[5:]).get("usage")
                except ValueError:
                    continue
                if usage:
                    return usage
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    return data.get("usage") if isinstance(data, dict) else None


@pytest.fixture
def recorder(llm_server):
    proxy = RecordingProxy(llm_server.base_url)
    yield proxy
    proxy.close()


@pytest.fixture
def local_settings():
    """RoleSettings for a role on a local server (small, bounded calls: one thread serves every role)."""
    from autotts_graph.graph.configuration import RoleSettings

    def make(base_url: str, model: str = "smollm2", **over) -> RoleSettings:
        base = dict(kind="llm", model=model, base_url=base_url, api_key_env=KEY_ENV, temperature=0.0,
                    max_output_tokens=256, timeout_s=240, context_tokens=4096)
        base.update(over)
        return RoleSettings(**base)

    return make


@pytest.fixture
def small_store(tmp_path):
    """A store with two tiny synthetic search environments and a held-out one (fast sandbox work)."""
    from tiny_runs import synth_store

    return synth_store(tmp_path / "llm.duckdb")


@pytest.fixture
def run_graph_on():
    """Run the graph to its end on a store with the roles the configuration names (real LLM roles included)."""
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.graph.runner import start_run

    def run(store, config, roles=None):
        cfg = resolve_config(config, store)
        provider = DepsProvider(store_path=store.path, roles=roles or {})
        try:
            return start_run(cfg, provider)
        finally:
            provider.close()

    return run
