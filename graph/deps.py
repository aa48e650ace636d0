"""The run-time dependencies of the nodes (store, tool contexts, sandbox, agent roles, concurrency limits).

They are not part of the graph state (not serialisable); ``DepsProvider`` builds them on first use and
caches them per run, so a resumed run (or LangGraph Studio, which only knows the state) gets the same
dependencies back. The live configuration is the one stored with the run (``runs.config``): a resume that
changes a budget or a role writes it there, and every node reads ``deps.config``, so the change reaches
lanes that were already in flight when the run stopped.

With ``executor = "ray"`` the run's sandbox tasks (screens, evaluations, audits, baselines, the held-out
evaluation) go to one ``RayExecutor`` built with the dependencies and shared by ``ctx`` and ``full_ctx``;
contract checks (``validate``) stay on the driver's own sandbox. Ray is imported only then.

Lanes of a generation run in parallel threads. ``sandbox_slots`` bounds the candidates in the sandbox at
once (default: one per worker, each evaluation in ``workers // sandbox_slots`` tasks), ``llm_slots`` the agent
calls in flight. Each slot
gets its own role objects (``roles_for``): a role's spend counter then measures that slot's calls only,
which keeps the per-node spend ledger exact under concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.backends.base import usable_cores
from autotts_graph.store.db import Store
from autotts_graph.store.ledger import RunLedger
from autotts_graph.store.trajectories import list_environments
from autotts_graph.tools.context import ToolContext

from .agents.roles import Critic, Diagnostician, Proposer
from .configuration import ROLES, RunConfig

Progress = Callable[[str, int, int], None]


@dataclass
class Deps:
    """What nodes use. ``ctx`` is the agents' view (search environments only); ``full_ctx`` sees all."""

    store: Store
    ctx: ToolContext
    full_ctx: ToolContext
    proposer: Proposer
    critic: Critic
    diagnostician: Diagnostician
    progress: Progress | None = None
    config: RunConfig | None = None
    sandbox_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    llm_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(4))
    make_roles: Callable[[], dict[str, Any]] | None = None  # fresh role objects for one slot
    endpoints: Any = None  # the run's CapabilityCache: one probe per LLM endpoint, shared by every slot's roles
    _endpoints_recorded: bool = False
    _slot_roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    _baselines: list | None = None
    _baseline_outcomes: list | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ledger(self) -> RunLedger:
        """The writer of this run's state in the store (run, candidates, diagnoses, spend)."""
        return RunLedger(self.store, self.config.run_id)

    def roles(self) -> dict[str, Any]:
        """The run-level roles by name."""
        return {"proposer": self.proposer, "critic": self.critic, "diagnostician": self.diagnostician}

    def roles_for(self, slot: int | None) -> dict[str, Any]:
        """The roles of one lane slot (own objects, own spend counters); the run-level ones for None."""
        if slot is None or self.make_roles is None:
            return self.roles()
        with self._lock:
            roles = self._slot_roles.get(slot)
            if roles is None:
                roles = self._slot_roles[slot] = self.make_roles()
            return roles

    def baselines(self) -> list:
        """The run's baseline points on the search environments (read back from the store once)."""
        with self._lock:
            if self._baselines is None:
                from .archive import load_baselines

                self._baselines = load_baselines(self.store, self.config.run_id)
            return self._baselines

    def baseline_outcomes(self) -> list:
        """The baselines with their per-question outcomes (``scoring.Outcomes``), what the fitness judges
        dominance with; the plain points where the run recorded no baseline evaluations."""
        with self._lock:
            if self._baseline_outcomes is None:
                from .evidence import baseline_outcomes

                self._baseline_outcomes = baseline_outcomes(self.store, self.config.run_id)
            found = self._baseline_outcomes
        return found or self.baselines()

    def set_baselines(self, points: list) -> None:
        with self._lock:
            self._baselines = list(points)
            self._baseline_outcomes = None

    def record_endpoints(self) -> None:
        """The probed capabilities of the run's LLM endpoints into the run's report, and the probe's requests into
        its LLM calls (their tokens are spend as well); once per set of dependencies."""
        from autotts_graph.store.ledger import LLMCallRow

        caps = self.endpoints.all() if self.endpoints is not None else []
        if not caps or self._endpoints_recorded:
            return
        self._endpoints_recorded = True
        self.ledger.merge_report(endpoints=[c.model_dump(mode="json") for c in caps])
        self.ledger.record_llm_calls([
            LLMCallRow(round=0, node="probe", role="probe", model=c.model, mode=f"probe:{step.check}",
                       prompt_tokens=step.prompt_tokens, completion_tokens=step.completion_tokens,
                       seconds=step.seconds, outcome="ok") for c in caps for step in c.steps])

    def close(self) -> None:
        """Release the sandbox and the executor (both shared by ``ctx`` and ``full_ctx``)."""
        self.ctx.close()
        self.full_ctx._backend = None
        self.full_ctx._executor = None


@dataclass
class DepsProvider:
    """Builds and caches Deps per run id.

    ``roles`` replaces role objects by name (tests, embedding); ``chat_models`` replaces the ChatOpenAI of
    LLM roles; ``backend`` replaces the sandbox backend; ``progress`` receives (node, done, total);
    ``cluster`` receives the Ray executor's task counters (``ClusterStats``) as they change.
    """

    store_path: str | Path | None = None
    roles: dict[str, Any] = field(default_factory=dict)
    chat_models: dict[str, Any] = field(default_factory=dict)
    backend: Any = None
    progress: Progress | None = None
    cluster: Callable[[Any], None] | None = None
    _cache: dict[str, Deps] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> Store:
        """The store (``store_path``, else ``$AUTOTTS_STORE``, else ./autotts.duckdb)."""
        store = Store(self.store_path) if self.store_path is not None else Store()
        # Pack paths travel to the sandbox, which runs elsewhere: keep the store path absolute.
        store.path = store.path.resolve()
        return store

    def get(self, config: RunConfig) -> Deps:
        """The dependencies of the run described by ``config`` (built once per run id, from the configuration
        stored with the run when there is one)."""
        with self._lock:
            deps = self._cache.get(config.run_id)
            if deps is None:
                deps = self._build(self._live_config(config))
                self._cache[config.run_id] = deps
                if deps.ledger.exists():  # a resumed run: its endpoints were probed anew
                    deps.record_endpoints()
            return deps

    def _live_config(self, config: RunConfig) -> RunConfig:
        from autotts_graph.store import history
        from autotts_graph.store.db import StoreError

        try:
            stored = history.get_run(self.store(), config.run_id).config
        except StoreError:
            return config
        try:
            return RunConfig.model_validate(stored) if stored else config
        except ValueError:
            return config

    def _build(self, config: RunConfig) -> Deps:
        from autotts_graph.sandbox.backends.base import Limits

        from .agents.capabilities import CapabilityCache
        from .agents.factory import make_role
        from .agents.tools import ProposerToolbox, hidden_tools

        store = self.store()
        # Agents see the search environments and nothing else: every other environment of the store is hidden.
        hidden = frozenset(e.name for e in list_environments(store) if e.name not in config.search_envs)
        hidden |= frozenset(config.heldout_envs)
        ray = config.executor == "ray"
        # On Ray, 0 workers means one task per core of the cluster (known once connected).
        workers = config.workers or (0 if ray else usable_cores())
        backend = self.backend
        if backend is None:
            from autotts_graph.sandbox.select import make_backend

            backend = make_backend(config.sandbox, Limits(timeout_s=config.eval_timeout_s))
        ctx = ToolContext(store=store, sandbox=config.sandbox, workers=workers, hidden_envs=hidden,
                          solve_timeout_s=config.solve_timeout_s, executor_name=config.executor,
                          ray_address=config.ray_address, _backend=backend)
        toolbox = ProposerToolbox(ctx=ctx, run_id=config.run_id, search_envs=list(config.search_envs),
                                  quick_betas=[0.0, 0.5, 1.0], quick_seeds=min(config.quick_seeds, config.seeds),
                                  hidden=hidden_tools(config.strategy, config.use_diagnosis))

        endpoints = CapabilityCache()

        def make_roles() -> dict[str, Any]:
            return {role: self.roles.get(role) or make_role(role, config, toolbox=toolbox,
                                                            chat_model=self.chat_models.get(role),
                                                            capabilities=endpoints)
                    for role in ROLES}

        try:
            roles = make_roles()  # a role's error (a missing API key) comes before connecting to a cluster
            executor = self._connect(ctx, config) if ray else None
        except BaseException:
            ctx.close()  # nothing keeps the sandbox (or the cluster connection) of a run that cannot start
            raise
        full_ctx = ToolContext(store=store, sandbox=config.sandbox, workers=ctx.workers, expose_heldout=True,
                               solve_timeout_s=config.solve_timeout_s, executor_name=config.executor,
                               ray_address=config.ray_address, _backend=backend, _executor=executor)
        # One candidate per worker, each evaluation one task: a task loads its packs, warms PyPy's JIT and pays a
        # container once, where a candidate spread over every worker pays them on each (benchmarks/
        # discovery_vs_cmc.py: screens per hour). Baselines and the held-out evaluation (full_ctx, one at a
        # time) still spread over every worker.
        slots = config.sandbox_slots or max(1, ctx.workers)
        ctx.evaluation_tasks = max(1, ctx.workers // slots)
        return Deps(store=store, ctx=ctx, full_ctx=full_ctx, progress=self.progress, config=config,
                    sandbox_slots=threading.BoundedSemaphore(slots),
                    llm_slots=threading.BoundedSemaphore(config.llm_slots), make_roles=make_roles,
                    endpoints=endpoints, **roles)

    def _connect(self, ctx: ToolContext, config: RunConfig) -> Any:
        """The run's one Ray executor, created through ``ctx`` (as ``eval --executor ray`` creates it) now,
        not at the first evaluation: an unreachable cluster fails before any work, and ``ctx.workers``
        (default: the cluster's cores) is known for the sandbox slots.

        Raises RayUnavailable (one line).
        """
        from autotts_graph.sandbox.backends.base import Limits

        executor = ctx.executor
        # The nodes' sandboxes get the limits the local backend would have had (a fixed eval timeout).
        executor.limits = Limits(timeout_s=config.eval_timeout_s)
        executor.on_progress = self.cluster
        return executor

    def peek(self, run_id: str) -> Deps | None:
        """The run's dependencies if they were built (nothing is built here)."""
        with self._lock:
            return self._cache.get(run_id)

    def forget(self, run_id: str) -> None:
        """Drop a run's cached dependencies (its stored configuration changed); they are rebuilt on next use."""
        with self._lock:
            deps = self._cache.pop(run_id, None)
        if deps is not None:
            deps.close()

    def close(self) -> None:
        """Close every cached run's sandbox."""
        with self._lock:
            for deps in self._cache.values():
                deps.close()
            self._cache.clear()
