"""Choose a sandbox backend: ``auto`` (docker, else bwrap), ``docker``, ``bwrap`` or ``process``.

``process`` is never chosen automatically: it is no security boundary and must be asked for by name.
For ``auto`` and ``docker``, a running sandbox daemon (``autotts-graph sandbox warm``, see
``sandbox/daemon.py``) is used first when it answers: the same docker containers, already warm.
"""

from __future__ import annotations

import logging
from typing import Literal

from .backends.base import Limits, SandboxBackend

log = logging.getLogger("autotts_graph.sandbox")

SandboxName = Literal["auto", "docker", "bwrap", "process"]
NAMES: tuple[str, ...] = ("auto", "docker", "bwrap", "process")
AUTOMATIC: tuple[str, ...] = ("docker", "bwrap")  # what `auto` may pick, and all the tool server offers


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run here; the message is one line saying why and what to do."""


def _docker(limits: Limits | None, pool_size: int | None) -> SandboxBackend:
    from .backends.docker import DockerBackend, DockerUnavailable

    try:
        return DockerBackend(limits, pool_size=pool_size)
    except DockerUnavailable as exc:
        raise SandboxUnavailable(str(exc)) from None


def _bwrap(limits: Limits | None) -> SandboxBackend:
    from .backends.bwrap import BwrapBackend, BwrapUnavailable

    try:
        return BwrapBackend(limits)
    except BwrapUnavailable as exc:
        raise SandboxUnavailable(str(exc)) from None


def choose(name: str = "auto", limits: Limits | None = None,
           pool_size: int | None = None) -> tuple[SandboxBackend, str]:
    """The backend called ``name`` and a one-line reason it was chosen (``auto``: docker, else bwrap).

    Raises SandboxUnavailable when the named backend (or, for ``auto``, neither docker nor bwrap) works.
    For ``auto`` and ``docker`` without an explicit ``pool_size`` (which asks for a pool of this
    process's own), a sandbox daemon that answers takes the tasks; otherwise the backend starts here.
    """
    if name not in NAMES:
        raise ValueError(f"unknown sandbox {name!r}; choose one of {', '.join(NAMES)}")
    if name in ("auto", "docker") and pool_size is None:
        from .daemon import connect

        daemon, why = connect(limits)
        if daemon is not None:
            log.info("sandbox docker chosen: %s", why)
            return daemon, why
        log.debug("not using a sandbox daemon: %s", why)
    if name == "process":
        from .backends.process import WARNING, ProcessBackend

        log.warning(WARNING)
        return ProcessBackend(limits), "asked for by name (--sandbox process); " + WARNING
    if name == "docker":
        return _docker(limits, pool_size), "asked for by name"
    if name == "bwrap":
        return _bwrap(limits), "asked for by name (weaker than docker: no seccomp, no per-task memory cgroup)"
    try:
        backend = _docker(limits, pool_size)
        reason = "auto: a Docker engine answers and the sandbox image is built"
    except SandboxUnavailable as docker_exc:
        docker_why = str(docker_exc)
        try:
            backend = _bwrap(limits)
        except SandboxUnavailable as bwrap_exc:
            raise SandboxUnavailable(f"no sandbox available: docker: {docker_why}; bwrap: {bwrap_exc}. "
                                     "`--sandbox process` runs code unsandboxed (trusted code only)") from None
        reason = f"auto: bwrap, because docker is unavailable ({docker_why})"
    log.info("sandbox %s chosen: %s", backend.name, reason)
    return backend, reason


def make_backend(name: str = "auto", limits: Limits | None = None, pool_size: int | None = None) -> SandboxBackend:
    """The backend called ``name`` (see ``choose``); logs which one ``auto`` picked and why."""
    return choose(name, limits, pool_size)[0]
