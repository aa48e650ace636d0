"""The tool server: the same tool functions the graph uses, served over MCP (stdio or streamable HTTP).

``make_server(ctx)`` builds a FastMCP app whose tools take flat, pydantic-validated arguments and return
pydantic models (structured output). Calls run in worker threads behind a gate: sandbox tools
(``validate_controller``, ``evaluate_controller``, ``run_baseline``) share a fixed number of slots and
queue when all are busy (nothing is dropped); every call has a timeout measured from when it starts
running. Held-out environments are invisible unless the context exposes them (see ``tools/traces.py`` and
``tools/query_store.py``). ``serve_http`` adds a bearer-token check and refuses a non-loopback address
without one. The MCP SDK is imported only inside the functions that need it, so the tool registry
(``TOOL_SPECS``) is also usable by ``tools/langchain.py`` without the server.
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
from typing import Annotated, Any, Literal

from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.trajectories import EnvironmentInfo, list_environments
from pydantic import BaseModel, Field, ValidationError

from .baselines import METHODS, SWEEPS, BaselineInput, BaselineRow, run_baseline
from .context import ToolContext
from .contract import ContractDoc, contract_text, controller_contract
from .environments import (
    DescribeInput,
    EnvironmentDescription,
    EnvironmentList,
    describe_visible_environment,
    list_visible_environments,
)
from .evaluate import DEFAULT_BETAS, EvaluateInput, EvaluationSummary, evaluate_controller
from .query_store import SCHEMA_HELP, QueryInput, QueryResult, query_store, store_state
from .traces import (
    EvaluationDetail,
    GetEvaluationInput,
    GetTracesInput,
    TracePage,
    get_evaluation,
    get_traces,
)
from .validate import ValidateInput, ValidationReport, validate_controller

log = logging.getLogger("autotts_graph.tools.server")

SERVER_NAME = "autotts-graph"
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_HEAVY_TIMEOUT_S = 900.0
DEFAULT_LIGHT_TIMEOUT_S = 120.0
LIGHT_WORKERS = 16


# --------------------------------------------------------------------------------------------------------
# Memoised store reads for concurrent calls (Store.connect already serialises connections in a process).


class _Memo:
    """Results computed from the store, reused until the store file changes (any write changes it)."""

    MAX_ENTRIES = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple, tuple[tuple, Any]] = {}

    def get(self, store: Store, key: tuple, compute: Callable[[], Any]) -> Any:
        state = store_state(store.path)  # taken before computing: a write meanwhile invalidates the entry
        full_key = (str(store.path.resolve()), *key)
        with self._lock:
            hit = self._data.get(full_key)
            if hit is not None and hit[0] == state:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._data) >= self.MAX_ENTRIES:
                self._data.clear()
            self._data[full_key] = (state, value)
        return value


_MEMO = _Memo()


class ServingContext(ToolContext):
    """A ToolContext for concurrent tool calls: the environment list memoised per store state (nearly every
    tool checks visibility, and each listing otherwise opens the store)."""

    def environments(self) -> list[EnvironmentInfo]:
        """The environments this caller may see (recomputed after any write to the store)."""
        every = _MEMO.get(self.store, ("environments",), lambda: list_environments(self.store))
        return [e for e in every if self.visible(e)]


def thread_safe(ctx: ToolContext) -> ToolContext:
    """Prepare a context for concurrent calls, in place (same object, same sandbox backend): a plain
    ToolContext becomes a ServingContext (memoised environment list). Returns the context."""
    if type(ctx) is ToolContext:  # a caller's own subclass keeps its class (and its environments())
        ctx.__class__ = ServingContext
    return ctx


# --------------------------------------------------------------------------------------------------------
# Tool inputs and outputs specific to the served surface.


class NoInput(BaseModel):
    """This tool takes no arguments."""


class ServeEvaluateInput(BaseModel):
    """Evaluate a controller source over environments and betas."""

    source: str = Field(min_length=1, max_length=200_000,
                        description="Complete Python source of one autotts_runtime.Controller subclass "
                                    "(see controller_contract).")
    envs: list[str] = Field(min_length=1, max_length=16,
                            description="Environment names from list_environments, e.g. ['Qwen3-4B/aime24'].")
    betas: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=lambda: list(DEFAULT_BETAS), min_length=1, max_length=21,
        description="Values of the knob beta in [0, 1]; default 0, 0.1, ..., 1.")
    seeds: int = Field(default=100, ge=1, le=1000,
                       description="Shuffle seeds 0..seeds-1 (reference protocol: 100; 5-20 to iterate).")
    trace_seeds: int = Field(default=1, ge=0, le=10,
                             description="Keep full per-question traces for seeds 0..trace_seeds-1.")
    label: str = Field(default="", max_length=200, description="Free text recorded with the evaluation.")


class ServeBaselineInput(BaseModel):
    """Evaluate a reference baseline over its budget sweep."""

    method: Literal[tuple(METHODS)] = Field(  # type: ignore[valid-type]
        description="; ".join(f"{name}: {m.about}" for name, m in METHODS.items()) + ".")
    envs: list[str] = Field(min_length=1, max_length=16, description="Environment names.")
    configs: list[dict[str, Any]] | None = Field(
        default=None, max_length=32,
        description="Explicit configurations in the method's own parameters: sc {'k': 8}; asc "
                    "{'max_samples': 16, 'threshold': 0.95}; esc {'max_samples': 32, 'window_size': 8}; "
                    "parallel_probe {'num_chains': 16, 'T': 40, 'prune_patience': 7, 'warm_up': 15}; cmc and "
                    "every other method {'beta': 0.5} (short1/short3 get their m, bayes_fit its prior fitted on the "
                    "search split). Default: the method's reference budget sweep.")
    seeds: int = Field(default=100, ge=1, le=1000, description="Shuffle seeds 0..seeds-1.")
    trace_seeds: int = Field(default=0, ge=0, le=10, description="Keep traces for seeds 0..trace_seeds-1.")


class BaselineResult(BaseModel):
    """A baseline sweep: the evaluation summary and one labelled row per (configuration, environment)."""

    summary: EvaluationSummary
    rows: list[BaselineRow]


def _describe(ctx: ToolContext, inp: DescribeInput) -> EnvironmentDescription:
    visible = tuple(sorted(e.name for e in ctx.environments()))
    return _MEMO.get(ctx.store, ("describe", inp.env, visible),
                     lambda: describe_visible_environment(ctx, inp))


def _evaluate(ctx: ToolContext, inp: ServeEvaluateInput) -> EvaluationSummary:
    return evaluate_controller(ctx, EvaluateInput(source=inp.source, envs=inp.envs, betas=inp.betas,
                                                  seeds=inp.seeds, trace_seeds=inp.trace_seeds,
                                                  label=inp.label or "tool", split="search"))


BASELINE_KEYS = {name: m.knobs for name, m in METHODS.items()}


def _baseline(ctx: ToolContext, inp: ServeBaselineInput) -> BaselineResult:
    for i, config in enumerate(inp.configs or []):
        missing = [k for k in BASELINE_KEYS[inp.method] if k not in config]
        if missing:
            raise ValueError(f"configs[{i}]: {inp.method} needs {', '.join(missing)} (got {sorted(config)})")
    summary, rows = run_baseline(ctx, BaselineInput(method=inp.method, envs=inp.envs, configs=inp.configs,
                                                    seeds=inp.seeds, trace_seeds=inp.trace_seeds))
    return BaselineResult(summary=summary, rows=rows)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: name, description for an agent, pydantic input and output, the function, its cost class."""

    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    fn: Callable[[ToolContext, Any], BaseModel]
    sandbox: bool = False
    read_only: bool = True


TOOL_SPECS: list[ToolSpec] = [
    ToolSpec(
        "list_environments",
        "List the replay environments you can evaluate controllers on. An environment is one reasoning model "
        "on one benchmark (name 'Model/dataset', e.g. 'Qwen3-4B/aime24') whose sampled reasoning branches "
        "were recorded; each entry gives the number of questions, branches per question, probe interval in "
        "tokens, mean branch length and the accuracy of a single branch.",
        NoInput, EnvironmentList, lambda ctx, inp: list_visible_environments(ctx)),
    ToolSpec(
        "describe_environment",
        "Describe one environment in detail: its summary plus per-question statistics (gold answer, "
        "branches, mean tokens, mean probes, single-branch accuracy, share of 'ERR' probes, most common "
        "final answer). Use it to see which questions are easy or hard before designing a controller.",
        DescribeInput, EnvironmentDescription, _describe),
    ToolSpec(
        "controller_contract",
        "The rules and the API for writing a controller: what a controller is, the replay primitives "
        "(probe_new, probe_more, full read) and their token costs, the voting helpers, the single knob beta "
        "and its monotone schedule, tracing, scoring, and a complete example. Read this first; it is enough "
        "to write a valid controller. Also available as the resource autotts://contract.",
        NoInput, ContractDoc, lambda ctx, inp: controller_contract()),
    ToolSpec(
        "validate_controller",
        "Check a controller source without a full evaluation: static rules (imports, forbidden calls, hidden "
        "attributes), the schedule over beta = 0, 0.1, ..., 1 (numeric, deterministic, monotone) and a smoke "
        "solve of a few questions with tracing on, in the sandbox. Returns ok, errors and warnings, and the "
        "schedule table. Cheap: run it before evaluate_controller.",
        ValidateInput, ValidationReport, validate_controller, sandbox=True),
    ToolSpec(
        "evaluate_controller",
        "Score a controller source on environments for each beta over shuffle seeds, in an isolated "
        "sandbox (no network, no file access). Returns, per (environment, beta), accuracy in percent, mean "
        "tokens per question and the std of accuracy over seeds, plus an evaluation_id for get_evaluation "
        "and get_traces. Results are cached: the same source, data and protocol are not run again. Failures "
        "(syntax, contract, runtime error, timeout) come back as ok=false with a typed error. Cost grows "
        "with len(envs) x len(betas) x seeds; use few seeds (5-20) while iterating, 100 for final numbers.",
        ServeEvaluateInput, EvaluationSummary, _evaluate, sandbox=True, read_only=False),
    ToolSpec(
        "get_evaluation",
        "Show a recorded evaluation: status and error, protocol (seeds, environments, configs), and per "
        "(environment, beta) accuracy, mean tokens, std and the controller's hyper-parameters; with "
        "per_question=true also each question's accuracy over seeds and mean tokens.",
        GetEvaluationInput, EvaluationDetail, get_evaluation),
    ToolSpec(
        "get_traces",
        "Read what a controller did, step by step, on individual questions of an evaluation (traces are "
        "kept for the first trace_seeds seeds). Filter by environment, beta, question and failures only; "
        "results are paginated (limit at most 50; follow next_offset) and capped in size (very long traces "
        "keep their head and tail). Each trace has the answer, correctness, token cost and the steps "
        "(event, goal, input, output, state, decision).",
        GetTracesInput, TracePage, get_traces),
    ToolSpec(
        "run_baseline",
        "Evaluate a baseline over its budget sweep on environments, to get the accuracy-vs-tokens curve a new "
        "controller should beat: the AutoTTS paper's (sc = self-consistency, asc = adaptive consistency, esc = "
        "early-stopping self-consistency, parallel_probe, cmc = confidence momentum controller) and the field's "
        "other answer-only controllers (bayes and bayes_fit = optimal Bayesian stopping with a parameter-free or "
        "a fitted prior, dynasor = Dynasor-CoT, certaindex = Certaindex-SC, es_cot = ES-CoT, short1/short3 = "
        "short-m@k, deepconf = DeepConf's vote-share stop). Cached like evaluate_controller.",
        ServeBaselineInput, BaselineResult, _baseline, sandbox=True, read_only=False),
    ToolSpec(
        "query_store",
        "Run one read-only DuckDB SQL query (SELECT or EXPLAIN) over the history and the replay data, e.g. "
        "to compare evaluations or inspect branches. No file, network or extension access; rows and size are "
        "capped and slow queries are stopped. Data may lag writes by about a second (it reads a snapshot).\n"
        + SCHEMA_HELP,
        QueryInput, QueryResult, query_store),
]
TOOLS_BY_NAME: dict[str, ToolSpec] = {t.name: t for t in TOOL_SPECS}


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
        except (StoreError, ValueError, ValidationError, FileNotFoundError) as exc:
            self._count(failed=1)
            raise ToolCallError(_one_line(exc)) from None
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "input"
        return f"invalid argument {where}: {first['msg']}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
            raise ToolError(_one_line(exc)) from None
        try:
            return await gate.call(spec, ctx, inp)
        except ToolCallError as exc:
            raise ToolError(str(exc)) from None

    tool.__name__ = spec.name
    tool.__doc__ = spec.description
    tool.__signature__ = _signature(spec.input_model, spec.output_model)  # type: ignore[attr-defined]
    return tool


def make_server(ctx: ToolContext, *, name: str = SERVER_NAME, host: str = "127.0.0.1", port: int = 8000,
                max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                heavy_timeout_s: float = DEFAULT_HEAVY_TIMEOUT_S,
                light_timeout_s: float = DEFAULT_LIGHT_TIMEOUT_S, allow_process_sandbox: bool = False,
                stateless_http: bool = False) -> Any:
    """A FastMCP server exposing the tools on ``ctx`` (its store is made thread-safe in place).

    ``host``/``port`` only matter for HTTP (they set FastMCP's DNS-rebinding guard: on a loopback host,
    requests with foreign Host headers are refused). The ``process`` sandbox is refused unless
    ``allow_process_sandbox`` (tests of machines without Docker or bwrap): it is no security boundary.
    """
    from mcp.server.fastmcp import FastMCP
    from mcp.types import ToolAnnotations

    if ctx.sandbox == "process" and not allow_process_sandbox:
        raise ValueError("the tool server runs foreign code: use the docker or bwrap sandbox (auto), "
                         "never 'process'")
    thread_safe(ctx)
    gate = CallGate(max_concurrent, heavy_timeout_s, light_timeout_s)
    visibility = ("Held-out environments are visible on this server." if ctx.expose_heldout else
                  "Held-out environments are hidden: tools only see and accept search environments.")
    mcp = FastMCP(name, instructions=(
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


def http_app(mcp: Any, token: str | None = None) -> Any:
    """The streamable-HTTP ASGI app (endpoint ``/mcp``), behind a bearer check when a token is given."""
    app = mcp.streamable_http_app()
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
