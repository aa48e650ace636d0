"""Where sandbox tasks run: ``local`` (this machine's sandbox, a thread per concurrent task) or ``ray``.

The unit of work is a ``SandboxTask`` (one controller source x one environment pack x a list of betas x
the seeds). An executor runs a list of them and yields their results in the order given; everything
around it (static checks, the judge, the audit, the cache, the store) stays on the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from autotts_graph.sandbox.backends.base import SandboxBackend, SandboxResult, SandboxTask, run_with_fallback

EXECUTORS = ("local", "ray")


class TaskExecutor(Protocol):
    """Runs sandbox tasks somewhere; results come back in task order."""

    name: str
    interpreters: tuple[str, ...]

    def run(self, tasks: list[SandboxTask]) -> Iterator[SandboxResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """This machine's sandbox backend, ``workers`` tasks at a time."""

    name = "local"

    def __init__(self, backend: Callable[[], SandboxBackend], workers: int) -> None:
        self._backend = backend
        self.workers = max(1, workers)

    @property
    def interpreters(self) -> tuple[str, ...]:
        return self._backend().interpreters

    def run(self, tasks: list[SandboxTask]) -> Iterator[SandboxResult]:
        """Run the tasks on a thread pool (each waits on its sandbox); yield results in order."""
        if not tasks:
            return
        backend = self._backend()
        with ThreadPoolExecutor(max_workers=min(self.workers, len(tasks))) as pool:
            yield from pool.map(lambda task: run_with_fallback(backend, task), tasks)

    def close(self) -> None:
        """Nothing of its own: the backend belongs to the tool context."""
