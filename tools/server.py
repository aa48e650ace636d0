"""The tool server: the registry's tools (``tools/registry.py``, the same the graph's agents get), served over
MCP (stdio or streamable HTTP).

``make_server(ctx)`` builds a FastMCP app whose tools take flat, pydantic-validated arguments and return
pydantic models (structured output). Calls run in worker threads behind a gate: sandbox tools
(``validate_controller``, ``evaluate_controller``, ``run_baseline``) share a fixed number of slots and
queue when all are busy (nothing is dropped); every call has a timeout measured from when it starts
running. Held-out environments are invisible unless the context exposes them (see ``tools/traces.py`` and
``tools/query_store.py``), and so are gold answers (``ToolContext.expose_gold``). Static checks run in a
pool of bounded worker processes (``sandbox/checker_pool.py``), never on the server's interpreter lock, and
every text argument is capped; over HTTP a request body is capped too. A bad argument is refused in one
line. ``serve_http`` adds a bearer-token check and refuses a non-loopback address without one. The MCP
SDK is imported only inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError

from .baselines import SWEEPS
from .context import ToolContext
from .contract import contract_text
from .registry import TOOL_SPECS, USER_ERRORS, ToolSpec, one_line_error, thread_safe

log = logging.getLogger("autotts_graph.tools.server")

SERVER_NAME = "autotts-graph"
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_HEAVY_TIMEOUT_S = 900.0
DEFAULT_LIGHT_TIMEOUT_S = 120.0
LIGHT_WORKERS = 16
# The largest HTTP request body: a source at the cap (200k characters) is at most 1.2 MB as JSON (\uXXXX).
MAX_REQUEST_BYTES = 4 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# The gate: worker threads, a concurrency limit with queueing, per-call timeouts.


class ToolCallError(Exception):
    """A call failed for a reason the caller can act on; the message is what the caller sees."""


@dataclass
class GateStats:
    """Counters of one server's gate (read them to check the concurrency limit)."""

    sandbox_active: int = 0
    sandbox_max_active: int = 0
    sandbox_queued: int = 0
    sandbox_max_queued: int = 0
    calls: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class CallGate:
    """Runs tool functions in threads: ``max_concurrent`` sandbox slots, a separate pool for light tools."""

    def __init__(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 heavy_timeout_s: float = DEFAULT_HEAVY_TIMEOUT_S,
                 light_timeout_s: float = DEFAULT_LIGHT_TIMEOUT_S) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.heavy_timeout_s = heavy_timeout_s
        self.light_timeout_s = light_timeout_s
        self.stats = GateStats()
        self._heavy = ThreadPoolExecutor(max_concurrent, thread_name_prefix="autotts-mcp-sandbox")
        self._light = ThreadPoolExecutor(LIGHT_WORKERS, thread_name_prefix="autotts-mcp-light")

    def _count(self, **delta: int) -> None:
        s = self.stats
        with s.lock:
            for key, value in delta.items():
                setattr(s, key, getattr(s, key) + value)
            s.sandbox_max_active = max(s.sandbox_max_active, s.sandbox_active)
            s.sandbox_max_queued = max(s.sandbox_max_queued, s.sandbox_queued)

    async def call(self, spec: ToolSpec, ctx: ToolContext, inp: BaseModel) -> BaseModel:
        """Run ``spec.fn(ctx, inp)`` in a worker; wait in the queue as long as needed, then time out."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        heavy = spec.sandbox
        timeout = self.heavy_timeout_s if heavy else self.light_timeout_s
        self._count(calls=1, **({"sandbox_queued": 1} if heavy else {}))

        def job() -> BaseModel:
            if heavy:
                self._count(sandbox_queued=-1, sandbox_active=1)
            try:
                loop.call_soon_threadsafe(started.set)
            except RuntimeError:  # the event loop is gone (server shutting down): nobody waits
                pass
            try:
                return spec.fn(ctx, inp)
            finally:
                if heavy:
                    self._count(sandbox_active=-1)

        future = (self._heavy if heavy else self._light).submit(job)
        try:
            await started.wait()
        except asyncio.CancelledError:
            if future.cancel() and heavy:
                self._count(sandbox_queued=-1)
            raise
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except TimeoutError:
            self._count(timed_out=1)
            raise ToolCallError(f"{spec.name} did not finish within {timeout:g} s (the server's per-call "
                                "timeout); narrow the request (fewer envs, betas or seeds)") from None
        except USER_ERRORS as exc:
            self._count(failed=1)
            raise ToolCallError(one_line_error(exc)) from None
        except Exception as exc:
            self._count(failed=1)
            log.exception("tool %s failed", spec.name)
            raise ToolCallError(f"internal error in {spec.name}: {type(exc).__name__}: {exc}") from None
        self._count(completed=1)
        return result

    def close(self) -> None:
        """Stop the worker pools (running calls finish)."""
        self._heavy.shutdown(wait=False, cancel_futures=True)
        self._light.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------------------------
# The FastMCP app.

_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(model: type[BaseModel], returns: type[BaseModel]) -> inspect.Signature:
    """A keyword-only signature mirroring the model's fields (FastMCP derives the input schema from it)."""
    params = []
    for name, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata, Field(description=info.description))]
        default = (inspect.Parameter.empty if info.is_required()
                   else info.get_default(call_default_factory=True))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=annotation))
    return inspect.Signature(params, return_annotation=returns)


def _tool_function(spec: ToolSpec, ctx: ToolContext, gate: CallGate) -> Callable[..., Any]:
    from mcp.server.fastmcp.exceptions import ToolError

    async def tool(**kwargs: Any) -> BaseModel:
        try:
            inp = spec.input_model(**kwargs)
        except ValidationError as exc:
            raise ToolError(one_line_error(exc)) from None
        try:
            return await gate.call(spec, ctx, inp)
        except ToolCallError as exc:
            raise ToolError(str(exc)) from None

    tool.__name__ = spec.name
    tool.__doc__ = spec.description
    tool.__signature__ = _signature(spec.input_model, spec.output_model)  # type: ignore[attr-defined]
    return tool


def _fastmcp_class() -> type:
    """FastMCP whose argument errors are one line: the SDK validates arguments against the advertised schema
    first and reports pydantic's multi-line text; our own models then say the same in one line."""
    from mcp.server.fastmcp import FastMCP
    from mcp.server.fastmcp.exceptions import ToolError

    class OneLineErrors(FastMCP):
        async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
            try:
                return await super().call_tool(name, arguments)
            except ToolError as exc:
                if isinstance(exc.__cause__, ValidationError):
                    raise ToolError(one_line_error(exc.__cause__)) from None
                raise

    return OneLineErrors


def make_server(ctx: ToolContext, *, name: str = SERVER_NAME, host: str = "127.0.0.1", port: int = 8000,
                max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                heavy_timeout_s: float = DEFAULT_HEAVY_TIMEOUT_S,
                light_timeout_s: float = DEFAULT_LIGHT_TIMEOUT_S, allow_process_sandbox: bool = False,
                stateless_http: bool = False) -> Any:
    """A FastMCP server exposing the tools on ``ctx`` (its store is made thread-safe in place).

    ``host``/``port`` only matter for HTTP (they set FastMCP's DNS-rebinding guard: on a loopback host,
    requests with foreign Host headers are refused). The ``process`` sandbox is refused unless
    ``allow_process_sandbox`` (tests of machines without Docker or bwrap): it is no security boundary.
    A context without a static checker gets the bounded out-of-process pool (closed with the context).
    """
    from autotts_graph.sandbox.checker_pool import CheckerPool
    from mcp.types import ToolAnnotations

    if ctx.sandbox == "process" and not allow_process_sandbox:
        raise ValueError("the tool server runs foreign code: use the docker or bwrap sandbox (auto), "
                         "never 'process'")
    thread_safe(ctx)
    if ctx.static_checker is None:
        ctx.static_checker = CheckerPool()
    gate = CallGate(max_concurrent, heavy_timeout_s, light_timeout_s)
    visibility = ("Held-out environments are visible on this server." if ctx.expose_heldout else
                  "Held-out environments are hidden: tools only see and accept search environments.")
    visibility += (" Gold answers are exposed (trusted local analysis)." if ctx.expose_gold else
                   " Gold answers stay on the host: tools report whether answers are correct, never the gold.")
    mcp = _fastmcp_class()(name, instructions=(
        "autotts-graph: design and score test-time-scaling controllers for reasoning models on recorded "
        "(replayed) reasoning branches. Start with controller_contract and list_environments, check code "
        "with validate_controller, score it with evaluate_controller, inspect results with get_evaluation "
        "and get_traces, compare with run_baseline, and explore the history with query_store. "
        + visibility), host=host, port=port, stateless_http=stateless_http, log_level="WARNING")
    for spec in TOOL_SPECS:
        mcp.add_tool(_tool_function(spec, ctx, gate), name=spec.name, description=spec.description,
                     annotations=ToolAnnotations(readOnlyHint=spec.read_only, openWorldHint=False),
                     structured_output=True)

    @mcp.resource("autotts://contract", name="controller_contract", mime_type="text/markdown",
                  description="The controller contract and replay API (same text as the controller_contract "
                              "tool).")
    def contract_resource() -> str:
        return contract_text()

    @mcp.resource("autotts://baselines/{method}", name="baseline_source", mime_type="text/x-python",
                  description="Source of a reference baseline controller: " + ", ".join(SWEEPS) + ".")
    def baseline_resource(method: str) -> str:
        from .baselines import baseline_source

        return baseline_source(method)

    _GATES[mcp] = gate
    return mcp


def gate_of(mcp: Any) -> CallGate:
    """The call gate of a server made by ``make_server`` (its stats show queueing and concurrency)."""
    return _GATES[mcp]


# --------------------------------------------------------------------------------------------------------
# Transports.


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: HTTP requests need ``Authorization: Bearer <token>`` (constant-time compare)."""

    def __init__(self, app: Any, token: str) -> None:
        if not token:
            raise ValueError("an empty bearer token is not a token")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps({"error": "unauthorized",
                                   "message": "missing or wrong token (Authorization: Bearer <token>)"})
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="autotts-graph"')]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: an HTTP request body over ``max_bytes`` is refused with 413 before it is parsed (one
    client must not make the server buffer, parse and validate tens of megabytes)."""

    def __init__(self, app: Any, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps({"error": "request_too_large",
                           "message": f"the request body is over {self.max_bytes:,} bytes; send a smaller one"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def bounded_receive() -> dict:
            nonlocal seen
            if seen > self.max_bytes:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a streamed body without a length grew past the cap: end it here,
                    # so the app parses at most the cap (and refuses the cut JSON) instead of buffering it all
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        await self.app(scope, bounded_receive, send)


def http_app(mcp: Any, token: str | None = None) -> Any:
    """The streamable-HTTP ASGI app (endpoint ``/mcp``), body-capped, behind a bearer check when a token is
    given (the token is checked first: nobody unauthenticated gets to send a body)."""
    app = BodyLimit(mcp.streamable_http_app())
    return BearerAuth(app, token) if token else app


def check_http_binding(host: str, token: str | None) -> None:
    """ValueError when a non-loopback address is to be bound without a bearer token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"binding {host} exposes the server beyond this machine: set a bearer token "
                         "(--token or AUTOTTS_MCP_TOKEN), or bind 127.0.0.1")


def make_uvicorn(mcp: Any, host: str, port: int, token: str | None = None, log_level: str = "warning") -> Any:
    """A uvicorn Server for the HTTP app (not started); port 0 picks a free port."""
    import uvicorn

    check_http_binding(host, token)
    config = uvicorn.Config(http_app(mcp, token), host=host, port=port, log_level=log_level, lifespan="on",
                            access_log=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def bound_port(server: Any) -> int:
    """The port a started uvicorn Server listens on."""
    return server.servers[0].sockets[0].getsockname()[1]


def serve_stdio(mcp: Any) -> None:
    """Serve over stdin/stdout until the client closes the pipe (nothing else may write to stdout)."""
    mcp.run(transport="stdio")


def serve_http(mcp: Any, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
               log_level: str = "warning") -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until interrupted."""
    server = make_uvicorn(mcp, host, port, token, log_level)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            shown = f"[{host}]" if ":" in host else host
            print(f"autotts-graph MCP server at http://{shown}:{bound_port(server)}/mcp"
                  + (" (bearer token required)" if token else ""), file=sys.stderr, flush=True)
        await task

    asyncio.run(main())


@contextmanager
def running_http_server(mcp: Any, host: str = "127.0.0.1", port: int = 0,
                        token: str | None = None) -> Iterator[str]:
    """Run the HTTP transport in a background thread; yields the endpoint URL (for tests and notebooks)."""
    server = make_uvicorn(mcp, host, port, token)
    thread = threading.Thread(target=server.run, name="autotts-mcp-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{bound_port(server)}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
