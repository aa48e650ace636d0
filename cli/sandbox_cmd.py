"""`autotts-graph sandbox ...`: build the runtime image and check the sandbox set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import fail

app = typer.Typer(help="The sandbox that runs controller code: build its image, check its health, keep it warm.",
                  no_args_is_help=True)
SocketOption = Annotated[Path | None, typer.Option(
    "--socket", envvar="AUTOTTS_SANDBOX_SOCKET", show_default=False,
    help="The daemon's unix socket (env AUTOTTS_SANDBOX_SOCKET); default: a private per-user path.")]


@app.command()
def build(
    offline: Annotated[bool, typer.Option(help="No registry: debootstrap a Debian rootfs, docker import it, "
                                               "install numpy wheels downloaded on this host (needs root).")]
    = False,
    base: Annotated[str | None, typer.Option(help="Base image of the online path.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the image for these sources exists.")] = False,
    numpy: Annotated[str, typer.Option(help="numpy requirement installed in the image.")] = "numpy>=1.26",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show build output.")] = False,
) -> None:
    """Build the sandbox runtime image, tagged with a hash of the runtime sources."""
    from autotts_graph.sandbox.image.build import BuildError, build_image
    from rich.console import Console

    console = Console(stderr=True)

    def emit(line: str) -> None:
        if verbose:
            console.print(line, markup=False, highlight=False)

    try:
        with console.status("building the sandbox image (the offline path takes about 2 minutes)"):
            result = build_image(offline=offline, base=base, force=force, numpy_spec=numpy, emit=emit)
    except BuildError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    if result.built:
        typer.echo(f"built {result.image} on {result.base} in {result.seconds:.1f} s")
    else:
        typer.echo(f"up to date: {result.image} (built on {result.base})")


def _engine_facts() -> dict[str, Any]:
    from autotts_graph.sandbox.image.build import (
        BuildError,
        docker_client,
        engine_address,
        image_exists,
        image_tag,
    )

    facts: dict[str, Any] = {"address": engine_address(), "image": image_tag()}
    try:
        client = docker_client(timeout=10)
    except BuildError as exc:
        facts["error"] = str(exc)
        return facts
    info = client.info()
    facts.update(client=client, version=info.get("ServerVersion"), driver=info.get("Driver"),
                 cgroup=info.get("CgroupVersion"), image_present=image_exists(client, facts["image"]))
    if facts["image_present"]:
        facts["image_base"] = client.images.get(facts["image"]).labels.get("org.autotts.sandbox.base", "?")
    return facts


def _probe_pool(client: Any) -> dict[str, Any]:
    """Start a one-container pool and run a smoke task under each interpreter; timings and health."""
    import tempfile
    import time
    from pathlib import Path

    from autotts_graph.sandbox.backends.base import Limits, SandboxTask
    from autotts_graph.sandbox.backends.docker import DockerBackend, DockerUnavailable
    from autotts_graph.sandbox.controllers import __file__ as controllers_init
    from autotts_graph.store.packs import write_pack

    records = [{"gold_answer": "7", "probe_freq": 500,
                "each_branch": [[["7", "7"], 900, "7"], [["3", "7"], 1100, "7"], [["3"], 600, "3"]]}]
    source = (Path(controllers_init).parent / "sc.py").read_text()
    started = time.perf_counter()
    try:
        backend = DockerBackend(Limits(timeout_s=30), pool_size=1, client=client, warm=False)
    except DockerUnavailable as exc:
        return {"healthy": False, "error": str(exc)}
    try:
        backend.pool.start(wait=True, timeout_s=60)
        cold = time.perf_counter() - started
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            pack = write_pack("doctor", records, tmp)
            for interpreter in ("pypy", "cpython"):
                results[interpreter] = backend.run(SandboxTask(source=source, packs={"doctor": str(pack)},
                                                               points=[{"beta": 0.5}], seeds=[0, 1],
                                                               interpreter=interpreter))
    finally:
        backend.close()
    failed = [f"{name}: {r.error.message}" for name, r in results.items() if not r.ok]
    return {"healthy": not failed, "cold_start_s": cold,
            "interpreters": {name: (r.interpreter, r.elapsed_s) for name, r in results.items() if r.ok},
            "error": "; ".join(failed) or None, "problems": []}


@app.command()
def doctor(
    probe: Annotated[bool, typer.Option(help="Start a container and run a smoke task (pool health).")] = True,
) -> None:
    """Report the Docker engine, storage driver, image, pool health and the bwrap fallback."""
    from autotts_graph.sandbox.backends.bwrap import bwrap_works
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="autotts sandbox", show_header=False)
    table.add_column("check", style="bold")
    table.add_column("status")
    warnings: list[str] = []
    try:
        facts = _engine_facts()
    except Exception as exc:  # an engine that answers the ping but fails later: report, don't crash
        facts = {"address": "?", "image": "?", "error": f"the Docker engine failed: {exc}"}
    docker_ok = False
    if "error" in facts:
        table.add_row("engine", f"[red]{facts['error']}[/red]")
    else:
        table.add_row("engine", f"Docker {facts['version']} at {facts['address']} (cgroup v{facts['cgroup']})")
        driver = facts["driver"]
        if driver == "vfs":
            warnings.append("storage driver vfs: every cold container start copies the whole image "
                            "(~10 s); use overlay2 if the filesystem allows it")
            table.add_row("storage driver", "[yellow]vfs (slow cold starts)[/yellow]")
        else:
            table.add_row("storage driver", str(driver))
        if facts["image_present"]:
            table.add_row("image", f"{facts['image']} (base {facts['image_base']})")
            docker_ok = True
        else:
            table.add_row("image", f"[red]{facts['image']} not built: run `autotts-graph sandbox build`[/red]")
    if docker_ok and probe:
        with console.status("starting a sandbox container and running a smoke task"):
            pool = _probe_pool(facts["client"])
        if pool["healthy"]:
            tasks = ", ".join(f"{ran} task {secs:.2f} s" for ran, secs in pool["interpreters"].values())
            table.add_row("pool", f"[green]healthy[/green]: single-use containers, cold start "
                                  f"{pool['cold_start_s']:.2f} s; {tasks}")
        else:
            docker_ok = False
            why = pool.get("error") or "; ".join(pool.get("problems", [])) or "unknown"
            table.add_row("pool", f"[red]unhealthy: {why}[/red]")
    bwrap_ok, bwrap_why = bwrap_works()
    table.add_row("bwrap", ("[green]works[/green]: " if bwrap_ok else "[yellow]unavailable[/yellow]: ") + bwrap_why)
    from autotts_graph.sandbox.backends.process import pypy_available

    table.add_row("interpreters", "docker: pypy3 (stdlib-only controllers) and python3 (numpy); bwrap: " +
                  ("pypy3 and python3" if pypy_available() else "python3 only (apt-get install pypy3 for PyPy)"))
    from autotts_graph.sandbox import daemon

    try:
        running = daemon.status()
        if running is None:
            table.add_row("daemon", f"not running (optional: `autotts-graph sandbox warm --detach` keeps containers "
                                    f"warm for one-off commands; socket {daemon.socket_path()})")
        else:
            ready = sum(p.ready for p in running.pools)
            table.add_row("daemon", f"[green]answers[/green] at {running.socket}: pid {running.pid}, {running.image}, "
                                    f"{ready} warm container(s), {running.served} task(s) served")
    except daemon.DaemonError as exc:
        table.add_row("daemon", f"[yellow]{exc}[/yellow]")
    if docker_ok:
        choice = "docker"
    elif bwrap_ok:
        choice = "bwrap (weaker than docker)"
    else:
        choice = "[red]none[/red] (only `--sandbox process`, which is no sandbox)"
    table.add_row("--sandbox auto", choice)
    console.print(table)
    for line in warnings:
        console.print(f"[yellow]warning:[/yellow] {line}")
    if not docker_ok and not bwrap_ok:
        raise typer.Exit(1)


@app.command()
def warm(
    pool: Annotated[int | None, typer.Option(min=1, show_default=False,
                                             help="Warm containers kept ready (default: the number of cores).")]
    = None,
    idle_timeout: Annotated[float, typer.Option(min=0, help="Stop after this many idle seconds (0: never).")]
    = 3600.0,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return once it answers.")]
    = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running daemon.")] = False,
    show: Annotated[bool, typer.Option("--status", help="Report the running daemon (exit 1 if none answers).")]
    = False,
    socket: SocketOption = None,
) -> None:
    """Keep single-use sandbox containers warm for this user's commands (`eval`, `baselines`, runs).

    The daemon holds the engine connection and a pool of fresh containers, each with PyPy already started;
    a command that finds it hands it its sandbox tasks over a private unix socket (each still gets a
    container nobody else used, destroyed after it), and `eval` its whole evaluation (judged, audited and
    recorded as always, with everything already loaded). A command falls back to its own containers when
    none answers.
    """
    from autotts_graph.sandbox import daemon

    path = socket or daemon.socket_path()
    try:
        if stop:
            gone = daemon.stop(path)
            typer.echo(f"stopped the sandbox daemon (pid {gone.pid})" if gone else f"no sandbox daemon at {path}")
            return
        if show:
            current = daemon.status(path)
            if current is None:
                fail(f"no sandbox daemon answers at {path}")
            typer.echo(current.model_dump_json(indent=2))
            return
        if detach:
            current = _start_detached(path, pool, idle_timeout)
        else:
            from .eval_cmd import evaluation_handler, preload

            preload()  # the daemon's evaluations start with everything imported
            daemon.serve(pool, idle_timeout, path, ready=_announce, handlers={"evaluate": evaluation_handler()})
            return
    except daemon.DaemonError as exc:
        fail(str(exc))
    _announce(current)


def _announce(status: Any) -> None:
    ready = sum(p.ready for p in status.pools)
    typer.echo(f"sandbox daemon ready: pid {status.pid}, {ready} warm container(s) of {status.image}, "
               f"socket {status.socket}", err=True)


def _start_detached(path: Path, pool: int | None, idle_timeout: float, wait_s: float = 180.0) -> Any:
    """Start ``sandbox warm`` in a new session with its output in a log beside the socket; its status."""
    import os
    import subprocess
    import sys
    import time

    from autotts_graph.sandbox import daemon

    daemon.private_dir(path.parent, create=True)
    log_path = path.parent / "daemon.log"
    cmd = [sys.executable, "-m", "autotts_graph.cli.main", "sandbox", "warm", "--socket", str(path),
           "--idle-timeout", str(idle_timeout)] + (["--pool", str(pool)] if pool else [])
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        current = daemon.status(path)
        if current is not None and current.pid == proc.pid:
            return current
        if proc.poll() is not None:
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            raise daemon.DaemonError(lines[-1].removeprefix("error: ") if lines else
                                     f"the sandbox daemon exited with status {proc.returncode}")
        time.sleep(0.1)
    raise daemon.DaemonError(f"the sandbox daemon did not answer within {wait_s:g} s; see {log_path}")
