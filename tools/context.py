"""What every tool needs: the store, a sandbox, and which environments the caller may see."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from autotts_graph.sandbox.backends.base import SandboxBackend, usable_cores
from autotts_graph.sandbox.static_checks import StaticReport, check_source
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.trajectories import EnvironmentInfo, list_environments
from pydantic import BaseModel, ConfigDict, Field

from .executors import TaskExecutor


class StaticChecker(Protocol):
    """Where a context's static checks run (``sandbox/checker_pool.CheckerPool`` in the tool server)."""

    def check(self, source: str) -> StaticReport:
        """The static report of ``source`` (an error report, never an exception, when checking fails)."""

    def close(self) -> None:
        """Stop the checker's workers."""


class RunScope(BaseModel):
    """The defaults of tool calls made inside one discovery run (its agents' calls).

    An evaluation or a baseline an agent asks for without naming betas, seeds or trace seeds gets these
    (the run's cheap protocol) instead of the tools' stand-alone defaults (100 seeds, the whole beta grid),
    and is recorded under the run.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str = Field(min_length=1, description="The run the calls belong to.")
    betas: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(min_length=1,
                                                                 description="Default betas of an evaluation.")
    seeds: int = Field(ge=1, le=1000, description="Default shuffle seeds of an evaluation or a baseline.")
    trace_seeds: int = Field(default=1, ge=0, le=10, description="Default seeds whose traces are kept.")


@dataclass
class ToolContext:
    """Shared by all tools of one caller (a CLI command, a graph run, a tool server).

    Held-out environments (store split ``heldout`` or named in ``hidden_envs``) are invisible unless
    ``expose_heldout``: agents must never see them during discovery. Gold answers never leave through a
    tool unless ``expose_gold`` (trusted local analysis): tools give the correctness of evaluated answers
    instead. ``run`` scopes tool defaults to a discovery run (see ``RunScope``). ``static_checker`` runs
    the static checks out of process (the tool server's bounded pool); without one they run here.
    """

    store: Store
    sandbox: str = "auto"
    workers: int = field(default_factory=usable_cores)  # ray: 0 = the cluster's cores
    expose_heldout: bool = False
    expose_gold: bool = False
    hidden_envs: frozenset[str] = frozenset()
    sandbox_reason: str = ""  # why this backend was chosen (set when it is created)
    solve_timeout_s: float = 10.0  # the per-solve watchdog (`--timeout`); task deadlines scale from it
    executor_name: str = "local"  # where sandbox tasks run: "local" or "ray" (`--executor`)
    ray_address: str | None = None  # `--ray-address` / RAY_ADDRESS; none: Ray starts a local cluster
    run: RunScope | None = None  # inside a discovery run: the defaults of its agents' tool calls
    # Sandbox tasks one evaluation's new work is split into (None: ``workers``). A discovery run with several
    # candidates in the sandbox at once gives each fewer: one task warms PyPy's JIT and pays a container once.
    evaluation_tasks: int | None = None
    static_checker: StaticChecker | None = None  # None: check_source in this process
    _backend: SandboxBackend | None = None
    _executor: TaskExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _executor_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def executor(self) -> TaskExecutor:
        """Where this caller's sandbox tasks run, created on first use (once, even from concurrent lanes)."""
        with self._executor_lock:
            if self._executor is None:
                if self.executor_name == "local":
                    from .executors import LocalExecutor

                    self._executor = LocalExecutor(lambda: self.backend, self.workers)
                elif self.executor_name == "ray":
                    from .ray_executor import RayExecutor

                    executor = RayExecutor(self.sandbox, address=self.ray_address, workers=self.workers,
                                           solve_timeout_s=self.solve_timeout_s)
                    # workers < 1: one task per cluster core (tools/evaluate.py batches by ctx.workers).
                    self.workers = executor.workers
                    self._executor = executor
                else:
                    raise ValueError(f"unknown executor {self.executor_name!r}; choose local or ray")
        return self._executor

    @property
    def backend(self) -> SandboxBackend:
        """The sandbox backend, created on first use."""
        with self._lock:
            if self._backend is None:
                from autotts_graph.sandbox.select import choose

                self._backend, self.sandbox_reason = choose(self.sandbox)
            return self._backend

    def check_source(self, source: str) -> StaticReport:
        """The static checks of a controller source, as every tool runs them: in the context's checker when it
        has one (the tool server's pool of bounded worker processes), else in this process, bounded by size
        (a source over the cap is refused before it is parsed)."""
        checker = self.static_checker
        return checker.check(source) if checker is not None else check_source(source)

    def visible(self, env: EnvironmentInfo) -> bool:
        """May this caller see the environment?"""
        if self.expose_heldout:
            return True
        return env.split != "heldout" and env.name not in self.hidden_envs

    def environments(self) -> list[EnvironmentInfo]:
        """The environments this caller may see."""
        return [e for e in list_environments(self.store) if self.visible(e)]

    def require_visible(self, names: list[str]) -> None:
        """StoreError for any name that is unknown or hidden (hidden ones are reported as unknown)."""
        if not names:
            raise StoreError("name at least one environment")
        known = {e.name for e in self.environments()}
        for name in names:
            if name not in known:
                hint = ", ".join(sorted(known)) or "none; run `autotts-graph store fetch autotts` or `store synth`"
                raise StoreError(f"unknown environment {name!r} (known: {hint})")

    def close(self) -> None:
        """Release the executor, the sandbox (warm containers, temp dirs) and the static checker."""
        with self._lock:
            backend, self._backend = self._backend, None
            executor, self._executor = self._executor, None
            checker, self.static_checker = self.static_checker, None
        if checker is not None:
            checker.close()
        if executor is not None:
            executor.close()
        if backend is not None:
            backend.close()
