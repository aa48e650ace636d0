"""`autotts-graph sandbox ...`: build the runtime image and check the sandbox set-up."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import fail

app = typer.Typer(help="The sandbox that runs controller code: build its image, check its health.",
                  no_args_is_help=True)


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
