"""The real ChatOpenAI path against a local OpenAI-compatible HTTP server (structured critic and diagnostician)."""

from __future__ import annotations

import http.server
import json
import threading

from autotts_graph.graph.configuration import RoleSettings
from autotts_graph.store import history
from scripted_roles import ScriptedProposer

ANSWERS = {
    "CriticVerdict": {"approve": True, "reasons": ["contract respected"], "max_similarity": 0.1},
    "Diagnosis": {"summary": "stops on early consensus", "actions": ["stricter_stop"],
                  "failure_modes": [{"kind": "premature_stop", "count": 3, "evidence": ["q1 stopped at 2 votes"]}]},
}


class _OpenAICompatible(http.server.BaseHTTPRequestHandler):
    """Answers /v1/chat/completions with a call of the one function the client offers."""

    seen: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        name = body["tools"][0]["function"]["name"]
        reply = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                     "role": "assistant", "content": None, "tool_calls": [{
                         "id": "call_1", "type": "function",
                         "function": {"name": name, "arguments": json.dumps(ANSWERS[name])}}]}}],
                 "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_structured_roles_over_http(run_graph, graph_store, monkeypatch):
    from conftest import tiny_config

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OpenAICompatible)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    url = f"http://127.0.0.1:{server.server_port}/v1"
    cfg = tiny_config()
    cfg.critic = RoleSettings(kind="llm", model="local-critic", base_url=url, api_key_env="LOCAL_KEY")
    cfg.diagnostician = RoleSettings(kind="llm", model="local-diag", base_url=url, api_key_env="LOCAL_KEY")
    try:
        state, _, _ = run_graph(config=cfg, proposer=ScriptedProposer(), critic=None, diagnostician=None,
                                real_roles=("critic", "diagnostician"))
    finally:
        server.shutdown()
    assert state.status == "done", state.error
    calls = _OpenAICompatible.seen
    assert {c["body"]["model"] for c in calls} == {"local-critic", "local-diag"}
    assert all(c["path"] == "/v1/chat/completions" and c["auth"] == "Bearer sk-local" for c in calls)
    diagnoses = history.get_diagnoses(graph_store, state.config.run_id)
    assert any(d["summary"] == "stops on early consensus" for d in diagnoses.values())
    assert state.spend["critique"].llm_tokens >= 150 and state.spend["diagnose"].llm_tokens >= 150
