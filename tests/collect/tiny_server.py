"""A real OpenAI-compatible ``/v1/completions`` HTTP server for tests, backed by the tiny HF model.

Token-id prompts in, token ids out (``return_token_ids``), per-request seeds, greedy at temperature 0,
like vLLM's server. ``fail_next`` makes the next N requests answer 503 (to test client retries).
Every request is served alone (batch of one): per-branch seeds make that give the same tokens as
batched sampling.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autotts_graph.store.collect.backend import GREEDY, SampleRequest, Sampling
from autotts_graph.store.collect.hf import HFBackend


class TinyServer:
    """Serve ``backend`` on a free loopback port in a background thread."""

    def __init__(self, backend: HFBackend, model_name: str, decode: Any) -> None:
        self.backend = backend
        self.model_name = model_name
        self.decode = decode
        self.lock = threading.Lock()
        self.fail_next = 0
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/completions":
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})
                    return
                try:
                    req = json.loads(raw)
                except json.JSONDecodeError:
                    self._reply(400, {"error": {"message": "invalid JSON"}})
                    return
                status, payload = server.complete(req)
                self._reply(status, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def complete(self, req: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append(req)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": {"message": "overloaded, try again"}}
        if req.get("model") != self.model_name:
            return 404, {"error": {"message": f"model {req.get('model')!r} does not exist"}}
        prompt = req.get("prompt")
        if not isinstance(prompt, list) or not all(isinstance(t, int) for t in prompt):
            return 400, {"error": {"message": "this server takes token-id prompts"}}
        temperature = float(req.get("temperature", 1.0))
        sampling = GREEDY if temperature <= 0 else Sampling(temperature, float(req.get("top_p", 1.0)),
                                                            int(req.get("top_k", -1)))
        with self.lock:  # one model, one request at a time
            request = SampleRequest(prompt, int(req["max_tokens"]), int(req.get("seed", 0)), sampling)
            result = self.backend.sample([request])[0]
        ids = result.token_ids + ([min(self.backend.stop_ids)] if result.stopped else [])
        choice = {"index": 0, "text": self.decode(result.token_ids),
                  "finish_reason": "stop" if result.stopped else "length"}
        if req.get("return_token_ids"):
            choice["token_ids"] = ids
        return 200, {"id": "cmpl-tiny", "object": "text_completion", "model": self.model_name,
                     "choices": [choice],
                     "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids)}}

    def __enter__(self) -> TinyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
