"""Threads of one process mix read-only and read-write store connections without errors."""

from __future__ import annotations

import threading
import time

from autotts_graph.store.trajectories import import_records, list_environments
from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.registry import ServingContext, thread_safe

from .conftest import SEARCH_ENV, make_records


def test_mixed_threads(store):
    locked = store
    errors: list[BaseException] = []
    writes = {"n": 0}
    deadline = time.monotonic() + 2.0

    def reader() -> None:
        try:
            while time.monotonic() < deadline:
                assert SEARCH_ENV in {e.name for e in list_environments(locked)}
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    def writer(k: int) -> None:
        try:
            i = 0
            while time.monotonic() < deadline:
                import_records(locked, "Thread", f"w{k}-{i}", make_records(1, 3, i))
                writes["n"] += 1
                i += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer, args=(k,))
                                                                      for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert writes["n"] >= 2
    assert len([e for e in list_environments(locked) if e.name.startswith("Thread/")]) == writes["n"]


def test_serving_context_memoises_until_a_write(store):
    ctx = thread_safe(ToolContext(store=store, sandbox="process"))
    assert isinstance(ctx, ServingContext)
    first = ctx.environments()
    assert ctx.environments() is not first and [e.name for e in ctx.environments()] == [e.name for e in first]
    import_records(ctx.store, "Tiny", "extra", make_records(1, 3, 9))
    assert "Tiny/extra" in {e.name for e in ctx.environments()}
    import_records(ctx.store, "Tiny", "hidden_extra", make_records(1, 3, 8), split="heldout")
    assert "Tiny/hidden_extra" not in {e.name for e in ctx.environments()}


def test_subclasses_keep_their_class(store):
    class Mine(ToolContext):
        pass

    ctx = thread_safe(Mine(store=store, sandbox="process"))
    assert type(ctx) is Mine
