"""Fixtures for the sandbox tests: a real Docker engine, bwrap, small packs and a helper to run code.

Tests that need an engine (or bwrap) skip with the reason when it is missing; with
AUTOTTS_REQUIRE_DOCKER=1 (set by .ci/run) those skips become failures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from autotts_graph.sandbox.backends.base import Limits, SandboxResult, SandboxTask

REQUIRE = os.environ.get("AUTOTTS_REQUIRE_DOCKER") == "1"
CONTROLLERS = Path(__file__).resolve().parents[2] / "sandbox" / "controllers"
ASC = (CONTROLLERS / "asc.py").read_text()

# Short limits keep the adversarial suite fast; 384 MB leaves numpy room under RLIMIT_AS (bwrap).
ADVERSARIAL_LIMITS = Limits(timeout_s=4, memory_mb=384, pids=64, nofile=64, tmp_mb=16, cpus=1.0,
                            stdout_bytes=2 * 1024 * 1024, stderr_bytes=256 * 1024)

PRELUDE = '''
import json as _json, os as _os, sys as _sys
def _report(**kw):
    _sys.stderr.write("REPORT " + _json.dumps(kw, default=str) + "\\n")
    _sys.stderr.flush()
'''


def need(reason: str) -> None:
    """Skip, or fail under AUTOTTS_REQUIRE_DOCKER=1."""
    if REQUIRE:
        pytest.fail(f"{reason} (AUTOTTS_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


@contextmanager
def sandbox_ctx(store, sandbox: str, *, solve_timeout_s: float | None = None, **kw) -> Iterator:
    """A ToolContext on ``sandbox`` whose backend is created at once, so a missing engine skips here (or fails
    under CI); closed at the end."""
    from autotts_graph.sandbox.select import SandboxUnavailable
    from autotts_graph.tools.context import ToolContext

    ctx = ToolContext(store, sandbox=sandbox, **kw)
    if solve_timeout_s is not None:
        ctx.solve_timeout_s = solve_timeout_s
    try:
        try:
            ctx.backend  # noqa: B018 - create it now
        except SandboxUnavailable as exc:
            need(f"{sandbox} sandbox unavailable: {exc}")
        yield ctx
    finally:
        ctx.close()


@contextmanager
def patient(backend, timeout_s: float = 120.0) -> Iterator[None]:
    """Run ordinary tasks with a long timeout (a busy CI host must not make them flaky); the
    container-level limits, and so the pool, stay the same."""
    old = backend.limits
    backend.limits = (old or ADVERSARIAL_LIMITS).model_copy(update={"timeout_s": timeout_s})
    try:
        yield
    finally:
        backend.limits = old


def adversarial_source(snippet: str) -> str:
    """A valid controller (ASC) with ``snippet`` run at import time, when the runner loads it."""
    return ASC + "\n" + PRELUDE + "\n" + snippet.strip("\n") + "\n"


def report(result: SandboxResult) -> dict:
    """The last REPORT line the snippet wrote (to stderr), as a dict."""
    lines = [ln for ln in result.stderr_tail.splitlines() if ln.startswith("REPORT ")]
    assert lines, f"no report; stderr tail: {result.stderr_tail[-500:]!r}; error: {result.error}"
    return json.loads(lines[-1][len("REPORT "):])


def host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (the box's processes are visible on the host)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(name))
    return found


def wait_gone(marker: str, timeout_s: float = 5.0) -> list[int]:
    """Wait until no host process mentions ``marker``; returns the survivors (empty when all gone)."""
    end = time.monotonic() + timeout_s
    while True:
        left = host_processes_with(marker)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory, tiny_records) -> Path:
    """A 3-question replay pack."""
    from autotts_graph.store.packs import write_pack

    return write_pack("tiny", tiny_records(n_questions=3, n_branches=8), tmp_path_factory.mktemp("packs"))


@pytest.fixture(scope="session")
def make_task(tiny_pack):
    """source -> SandboxTask on the tiny pack, one point, two seeds."""
    def build(source: str, **kw) -> SandboxTask:
        kw.setdefault("points", [{"beta": 0.5}])
        kw.setdefault("seeds", [0, 1])
        return SandboxTask(source=source, packs={"tiny": str(tiny_pack)}, limits=ADVERSARIAL_LIMITS, **kw)
    return build


@pytest.fixture(scope="session")
def docker_client():
    """A client of a running engine."""
    from autotts_graph.sandbox.image.build import BuildError, docker_client

    try:
        return docker_client(timeout=120)
    except BuildError as exc:
        need(str(exc))


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The image for the sources as they are when the session starts, built if missing (offline path).

    Pinned for the session: edits to the runtime meanwhile must not send later backends looking for
    an image nobody built.
    """
    from autotts_graph.sandbox.image.build import BuildError, build_image, image_exists, image_tag

    tag = image_tag()
    if image_exists(docker_client, tag):
        return tag
    try:
        return build_image(offline=True).image  # the base is cached; the runtime layer takes seconds
    except BuildError as exc:
        need(f"cannot build the sandbox image: {exc}")


@pytest.fixture(scope="session")
def docker_backend(docker_client, sandbox_image):
    """A warm two-container docker backend with the adversarial limits."""
    from autotts_graph.sandbox.backends.docker import DockerBackend

    backend = DockerBackend(ADVERSARIAL_LIMITS, pool_size=2, client=docker_client, image=sandbox_image)
    backend.pool.start(wait=True)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def bwrap_backend():
    from autotts_graph.sandbox.backends.bwrap import BwrapBackend, BwrapUnavailable

    try:
        return BwrapBackend(ADVERSARIAL_LIMITS)
    except BwrapUnavailable as exc:
        need(str(exc))


@pytest.fixture
def no_static_checks(monkeypatch):
    """Switch the static layer off (an attacker who found a bypass); the interpreter is the parameter.

    Every way a tool reaches the checks is switched: the context's method (evaluate, validate)."""
    from autotts_graph.sandbox.static_checks import StaticReport
    from autotts_graph.tools.context import ToolContext

    def permissive(interpreter: str):
        def report(*args: object) -> StaticReport:
            return StaticReport(interpreter=interpreter)

        monkeypatch.setattr(ToolContext, "check_source", report)
    return permissive
