"""The collector on Ray: ``store collect --executor ray`` runs the batches on one engine per GPU of a cluster.

``run_collection`` cuts the missing (question, branch) keys into batches exactly as a local collection
does; ``RayCollector`` hands them to engine actors (one per GPU, ``num_gpus`` = the engine's tensor
parallel size; on a cluster without GPUs, one per ``workers`` CPU, which is how the tiny test model runs
the same code path) and yields each batch's rows as it finishes. Every actor builds the same protocol
(tokenizer, engine, prompts) as a local run, and a batch's rows depend only on its keys and the spec, so
the stored branches are those of a local collection. Only the driver writes the store, one transaction
per batch: a killed driver resumes as locally, and a batch whose engine dies is run again by another.

Nodes need the model and tokenizer at the same path (or the same Hub cache), and this package installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from .backend import CollectError
from .collector import QuestionItem, _Protocol
from .spec import CollectSpec

log = logging.getLogger("autotts_graph.collect.ray")

MAX_ENGINE_FAILURES = 3  # engines that may die in one collection before it gives up


class EngineSpec(BaseModel):
    """How each actor builds its engine (what ``make_backend`` takes, minus the tokenizer object)."""

    backend: str
    model: str
    tokenizer: str
    dtype: str = "auto"
    engine_args: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = None
    api_key: str | None = None
    batch_size: int = 8
    concurrency: int = 16
    threads: int | None = None  # torch CPU threads (hf on CPU)

    @property
    def gpus(self) -> int:
        """GPUs one engine takes (its tensor parallel size); 0 for an engine that runs elsewhere (openai)."""
        if self.backend not in ("vllm", "hf"):
            return 0
        return max(1, int(self.engine_args.get("tensor_parallel_size", 1)))


class _Engine:
    """One engine and the collection protocol, in an actor (one per GPU)."""

    def __init__(self, engine: str, spec: str, questions: list[dict]) -> None:
        from .backend import ChatTokenizer, make_backend

        e = EngineSpec.model_validate_json(engine)
        if e.threads:
            import torch

            torch.set_num_threads(e.threads)
        tok = ChatTokenizer(e.tokenizer)
        self.backend = make_backend(e.backend, e.model, tok, dtype=e.dtype, engine_args=e.engine_args,
                                    base_url=e.base_url, batch_size=e.batch_size, concurrency=e.concurrency,
                                    api_key=e.api_key)
        self.protocol = _Protocol(CollectSpec.model_validate_json(spec), self.backend, tok,
                                  [QuestionItem.model_validate(q) for q in questions])

    def run(self, spec_hash: str, dataset: str, keys: list[tuple[int, int]]) -> tuple[list[tuple], int]:
        before = self.protocol.probe_tokens
        rows = self.protocol.run(spec_hash, dataset, [tuple(k) for k in keys])
        return rows, self.protocol.probe_tokens - before

    def where(self) -> tuple[str, int]:
        """(node id, pid) of this engine."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def close(self) -> None:
        self.backend.close()


class RayCollector:
    """Runs collection batches on engine actors of a Ray cluster (see the module docstring)."""

    def __init__(self, engine: EngineSpec, spec: CollectSpec, questions: list[QuestionItem], dataset: str, *,
                 address: str | None = None, workers: int = 0) -> None:
        """Connect and start the engines: one per GPU (or ``workers`` CPU engines on a cluster without GPUs)."""
        from autotts_graph.sandbox.ray_cluster import CONNECTION, RayUnavailable

        self.engine, self.spec, self.dataset = engine, spec, dataset
        self.questions = [q.model_dump() for q in questions]
        try:
            self.ray = CONNECTION.acquire(address, num_cpus=workers or None)
        except RayUnavailable as exc:
            raise CollectError(str(exc)) from None
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus and engine.gpus:
            self.options: dict[str, Any] = {"num_gpus": engine.gpus, "num_cpus": 1}
            count = gpus // engine.gpus
        else:
            self.options = {"num_cpus": 1}
            count = workers or int(resources.get("CPU", 1))
        self.count = max(1, count)
        self.failures = 0
        self.engines_started = 0
        self._actor_class = self.ray.remote(max_restarts=0, max_task_retries=0)(_Engine)
        self.actors: list[Any] = []  # started with the first batch (a finished collection loads no model)

    def _start(self) -> Any:
        self.engines_started += 1
        return self._actor_class.options(**self.options).remote(self.engine.model_dump_json(),
                                                                 self.spec.model_dump_json(), self.questions)

    def __call__(self, batches: list[list[tuple[int, int]]]) -> Iterator[tuple[list[tuple], int]]:
        """Each batch's (rows, probe tokens) as soon as an engine finishes it."""
        from ray.exceptions import RayActorError, RayTaskError

        if batches and not self.actors and not self.engines_started:
            self.actors = [self._start() for _ in range(min(self.count, len(batches)))]
        queue = deque(enumerate(batches))
        idle = deque(self.actors)
        running: dict[Any, tuple[Any, int, list[tuple[int, int]]]] = {}
        h = self.spec.spec_hash
        while queue or running:
            while queue and idle:
                actor = idle.popleft()
                index, keys = queue.popleft()
                running[actor.run.remote(h, self.dataset, keys)] = (actor, index, keys)
            if not running:
                raise CollectError("every engine of the cluster died; rerun to resume")
            ready, _ = self.ray.wait(list(running), num_returns=1)
            for ref in ready:
                actor, index, keys = running.pop(ref)
                try:
                    rows, probes = self.ray.get(ref)
                except RayActorError as exc:  # the engine (or its node) died: another one runs the batch
                    queue.appendleft((index, keys))
                    replacement = self._replace(actor, exc)
                    if replacement is not None:
                        idle.append(replacement)
                    continue
                except RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, CollectError):
                        raise CollectError(str(cause)) from None
                    raise CollectError(f"an engine failed: {str(exc).strip().splitlines()[-1][:300]}") from None
                idle.append(actor)
                yield rows, probes

    def _replace(self, actor: Any, exc: BaseException) -> Any:
        """Drop a dead engine; when none is left, start another (until MAX_ENGINE_FAILURES died)."""
        self.failures += 1
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        log.warning("an engine died (%s); its batch runs again", first)
        with contextlib.suppress(ValueError):
            self.actors.remove(actor)
        if self.actors or self.failures > MAX_ENGINE_FAILURES:
            return None  # the others take its batches (a new one might find no room and hold a batch forever)
        self.actors.append(self._start())
        return self.actors[-1]

    def close(self) -> None:
        """Close the engines and disconnect (stopping the cluster if this process started it)."""
        from autotts_graph.sandbox.ray_cluster import CONNECTION

        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.get(actor.close.remote(), timeout=60)
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
        CONNECTION.release()
