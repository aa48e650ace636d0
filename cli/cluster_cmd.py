"""`autotts-graph cluster`: the Ray cluster behind `--executor ray` (doctor, start), and the shared options.

Importing this module never imports Ray: commands that do not use it never load it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from .common import print_json, print_table, user_errors

EXECUTORS = ("local", "ray")
ExecutorOption = Annotated[str, typer.Option(
    "--executor", help="Where sandbox tasks run: local (this machine) or ray (a Ray cluster; pip install "
                       "-e '.\\[ray]').")]
RayAddressOption = Annotated[str | None, typer.Option(
    "--ray-address", envvar="RAY_ADDRESS", show_default=False,
    help="Ray cluster address host:port (env RAY_ADDRESS); none: a new local cluster on loopback.")]

app = typer.Typer(no_args_is_help=True, help="The Ray cluster behind --executor ray.")


def check_executor(executor: str) -> None:
    """ValueError (one line) for an unknown executor name."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be local or ray, got {executor!r}")


def cluster_line(stats: Any) -> str:
    """`ray: 3 running, 12/40 tasks done, 1 retried` for a progress bar."""
    text = f"ray: {stats.running} running, {stats.done}/{stats.submitted} tasks done"
    if stats.retried:
        text += f", {stats.retried} retried"
    if stats.cancelled:
        text += f", {stats.cancelled} cancelled"
    return text


@contextmanager
def sweep_progress(description: str, ctx: Any) -> Iterator[Callable[[int, int], None]]:
    """The points bar of `eval`/`baselines`; on Ray it also shows the cluster's tasks (running, retried)."""
    if ctx.executor_name != "ray":
        from .common import progress_bar

        with progress_bar(description) as update:
            yield update
        return
    from rich.progress import TextColumn

    from .common import rich_progress

    executor = ctx.executor  # connect before the bar starts (and fail with one line if we cannot)
    with rich_progress(TextColumn("{task.fields[cluster]}")) as prog:
        task = prog.add_task(description, total=None, cluster="ray: connecting")

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        executor.on_progress = lambda stats: prog.update(task, cluster=cluster_line(stats))
        try:
            yield update
        finally:
            executor.on_progress = None


def describe_executor(ctx: Any) -> str:
    """One line on where the tasks ran (for stderr after a sweep)."""
    if ctx.executor_name != "ray" or ctx._executor is None:
        return ""
    ex = ctx._executor
    alive = [n for n in ex.nodes if n.get("alive")]
    sandboxes = sorted({str(n.get("sandbox")) for n in alive})
    s = ex.stats()
    return (f"executor: ray, {len(alive)} node(s), {ex.slots} cores, sandbox {'/'.join(sandboxes)}; "
            f"{s.done} tasks, {s.retried} retried, {s.cancelled} cancelled")


@app.command("doctor")
@user_errors
def doctor(
    address: RayAddressOption = None,
    sandbox: Annotated[str, typer.Option("--sandbox", help="The sandbox to check each node for: auto, docker, "
                                                          "bwrap or process.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """List the cluster's nodes and which sandbox each can run (docker, bwrap, PyPy), from a task on each."""
    from autotts_graph.sandbox.backends.base import runtime_hash
    from autotts_graph.sandbox.ray_cluster import CONNECTION, RayUnavailable, probe_nodes

    try:
        ray = CONNECTION.acquire(address)
    except RayUnavailable as exc:
        raise ValueError(str(exc)) from None
    try:
        nodes = probe_nodes(ray, sandbox)
    finally:
        CONNECTION.release()
    here = runtime_hash()
    if as_json:
        print_json({"driver_runtime": here, "nodes": nodes})
    else:
        rows = []
        for n in nodes:
            if not n["alive"]:
                rows.append([n["node_id"][:12], n["address"], "dead", "", "", "", "", "", ""])
                continue
            docker = "yes" if n.get("docker") else f"no ({n.get('docker_why', '?')})"
            bwrap = "yes" if n.get("bwrap") else f"no ({n.get('bwrap_why', '?')})"
            runtime = n.get("runtime", "?") + ("" if n.get("runtime") == here else " (differs!)")
            rows.append([n["node_id"][:12] + (" (head)" if n.get("head") else ""), n["address"],
                         f"{n['cpus']:g}/{n['gpus']:g}", docker, bwrap, "yes" if n.get("pypy") else "no",
                         n.get("sandbox") or f"none: {n.get('error', 'no sandbox')}", runtime,
                         n.get("python", "")])
        print_table(f"Ray cluster: {sum(n['alive'] for n in nodes)} alive node(s), sandbox {sandbox}",
                    ["node", "address", "CPU/GPU", "docker", "bwrap", "pypy", "runs", "runtime", "python"], rows)
    bad = [n for n in nodes if n["alive"] and (n.get("sandbox") is None or n.get("runtime") != here)]
    if bad:
        raise typer.Exit(1)


@app.command("start", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def start(
    ctx: typer.Context,
    head: Annotated[bool, typer.Option("--head", help="Start a head node (else join --address).")] = False,
    address: Annotated[str | None, typer.Option("--address", help="The head's host:port (worker nodes).")] = None,
    port: Annotated[int, typer.Option("--port", help="The head's GCS port.")] = 6379,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", min=1)] = None,
    num_gpus: Annotated[int | None, typer.Option("--num-gpus", min=0)] = None,
) -> None:
    """Run one loopback node in the foreground (`ray start --block`): usage stats off, bound to 127.0.0.1,
    token authentication with RAY_AUTH_TOKEN_PATH (default: a new token in ~/.config/autotts/ray_token).

    Stop it with Ctrl-C or SIGTERM to its pid; extra options go to `ray start`. For a cluster spanning
    machines, use `ray start` itself with the nodes' real addresses and the same RAY_AUTH_* settings.
    """
    from pathlib import Path

    from autotts_graph.sandbox.ray_cluster import CLUSTER_ENV, new_token_file, node_command, token_env

    if not head and not address:
        raise typer.BadParameter("give --head, or --address of the head", param_hint="--address")
    env = dict(CLUSTER_ENV)
    token = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and not os.environ.get("RAY_AUTH_TOKEN"):
        folder = Path.home() / ".config" / "autotts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "ray_token"
        token = str(path if path.is_file() else new_token_file(folder).rename(path))
    if token:
        env.update(token_env(token))
    else:
        env["RAY_AUTH_MODE"] = "token"
    cmd = node_command(head=head, address=address, port=port, num_cpus=num_cpus, num_gpus=num_gpus,
                       extra=list(ctx.args))
    typer.echo(f"starting a {'head' if head else 'worker'} node on 127.0.0.1"
               + (f":{port}" if head else f", joining {address}")
               + f"; drivers need RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token}"
               + (f" and --ray-address 127.0.0.1:{port}" if head else ""), err=True)
    os.execve(cmd[0], cmd, {**os.environ, **env})
