"""Choose a sandbox backend by name."""

from __future__ import annotations

from .backends.base import Limits, SandboxBackend


def make_backend(name: str = "process", limits: Limits | None = None) -> SandboxBackend:
    """The backend called ``name``."""
    if name == "process":
        from .backends.process import ProcessBackend

        return ProcessBackend(limits)
    raise ValueError(f"unknown sandbox {name!r}")
