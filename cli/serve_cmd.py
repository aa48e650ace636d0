"""`autotts-graph serve`: the tools over MCP (stdio or streamable HTTP) for other agents.

Importing this module is cheap: the MCP SDK, uvicorn and the tools are imported when the command runs.
In stdio mode nothing but the protocol may reach stdout, so every message goes to stderr.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from .cluster_cmd import ExecutorOption, RayAddressOption, check_executor
from .common import DEFAULT_STORE, StoreOption, user_errors

SERVER_SANDBOXES = ("auto", "docker", "bwrap")


@user_errors
def serve(
    transport: Annotated[str, typer.Option(
        "--transport", help="stdio (a local client spawns the server) or http (streamable HTTP at /mcp).")
    ] = "stdio",
    host: Annotated[str, typer.Option(
        "--host", help="HTTP address; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="HTTP port (0: pick a free one).")] = 8765,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="AUTOTTS_MCP_TOKEN", show_default=False,
        help="Bearer token HTTP clients must send (env AUTOTTS_MCP_TOKEN; prefer the env var: command "
             "lines are visible to other users).")] = None,
    expose_heldout: Annotated[bool, typer.Option(
        "--expose-heldout",
        help="Let clients see held-out environments and their evaluations (not during discovery).")] = False,
    expose_gold: Annotated[bool, typer.Option(
        "--expose-gold",
        help="Let clients see gold answers (describe_environment, questions.gold_answer in query_store): for "
             "trusted local analysis only; by default tools report correctness, never the gold.")] = False,
    sandbox: Annotated[str, typer.Option(
        "--sandbox",
        help="auto (docker, else bwrap), docker or bwrap; the unsandboxed 'process' backend is refused.")
    ] = "auto",
    max_concurrent: Annotated[int, typer.Option(
        "--max-concurrent", min=1,
        help="Sandbox calls (validate, evaluate, baselines) run at once; more wait in a queue.")] = 4,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Sandbox tasks per evaluation (default: cores / max-concurrent).")] = None,
    call_timeout: Annotated[float, typer.Option(
        "--call-timeout", min=1.0,
        help="Seconds a sandbox call may run once started (queue time not counted).")] = 900.0,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds one solve() of a client's controller may run.")] = 10.0,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Serve the tools (environments, contract, validate, evaluate, traces, baselines, SQL) over MCP."""
    if transport not in ("stdio", "http"):
        raise ValueError(f"--transport must be stdio or http, got {transport!r}")
    if sandbox == "process":
        raise ValueError("the tool server runs code from other agents: the 'process' backend is no sandbox; "
                         "use auto, docker or bwrap")
    if sandbox not in SERVER_SANDBOXES:
        raise ValueError(f"--sandbox must be one of {', '.join(SERVER_SANDBOXES)}, got {sandbox!r}")
    check_executor(executor)
    from autotts_graph.tools.server import check_http_binding

    if transport == "http":
        check_http_binding(host, token)
    run_server(store, transport=transport, host=host, port=port, token=token, expose_heldout=expose_heldout,
               expose_gold=expose_gold, sandbox=sandbox, max_concurrent=max_concurrent, workers=workers,
               call_timeout=call_timeout, solve_timeout=timeout, executor=executor, ray_address=ray_address)


def run_server(store: Path, *, transport: str, host: str, port: int, token: str | None, expose_heldout: bool,
               sandbox: str, max_concurrent: int, workers: int | None, call_timeout: float,
               expose_gold: bool = False, solve_timeout: float = 10.0, executor: str = "local",
               ray_address: str | None = None) -> None:
    """Build the context and the server, then serve until the client or a signal ends it."""
    import logging

    from autotts_graph.sandbox.backends.base import usable_cores
    from autotts_graph.store.db import Store
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.query_store import close_snapshots
    from autotts_graph.tools.server import make_server, serve_http, serve_stdio

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cores = usable_cores()
    # On Ray, each evaluation spreads over the cluster's cores (0: ask the cluster).
    default_workers = 0 if executor == "ray" else max(1, cores // max_concurrent)
    ctx = ToolContext(store=Store(store), sandbox=sandbox, workers=workers or default_workers,
                      expose_heldout=expose_heldout, expose_gold=expose_gold, solve_timeout_s=solve_timeout,
                      executor_name=executor, ray_address=ray_address)
    try:
        ctx.backend  # noqa: B018  (fail now, not at the first call, when no sandbox works here; validate runs here)
        ctx.executor  # noqa: B018  (on Ray: connect and check every node's sandbox now)
    except RuntimeError as exc:  # SandboxUnavailable, RayUnavailable: one line saying why
        ctx.close()
        raise ValueError(str(exc)) from None
    mcp = make_server(ctx, host=host, port=port, max_concurrent=max_concurrent, heavy_timeout_s=call_timeout)
    # SIGTERM ends the server through the finally below, so its sandbox containers never outlive it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if transport == "stdio":
            serve_stdio(mcp)
        else:
            serve_http(mcp, host=host, port=port, token=token)
    finally:
        ctx.close()
        close_snapshots()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    typer.run(serve)
