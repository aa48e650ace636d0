"""Fixtures for the tool server tests: tiny stores (search + held-out), a sandbox, MCP helpers."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTROLLERS = REPO / "sandbox" / "controllers"
SEARCH_ENV = "Tiny/search"
SEARCH_ENV_2 = "Tiny/search2"
HELDOUT_ENV = "Tiny/secret"


def make_records(n_questions: int = 3, n_branches: int = 12, seed: int = 0) -> list[dict]:
    """Small valid AutoTTS records: per question a gold answer most branches reach, some ERR probes."""
    rng = random.Random(seed)
    records = []
    for q in range(n_questions):
        gold = str(100 + q + 50 * seed)
        branches = []
        for _ in range(n_branches):
            final = gold if rng.random() < 0.6 else str(rng.choice([7, 8, 9]))
            n_probes = rng.randint(1, 6)
            probes = [rng.choice(["ERR", final, "1"]) for _ in range(n_probes - 1)] + [final]
            branches.append([probes, n_probes * 500 - rng.randint(0, 400), final])
        records.append({"question": f"q{q}", "gold_answer": gold, "probe_freq": 500, "each_branch": branches,
                        "final_answers_trace": [b[2] for b in branches]})
    return records


def baseline_src(name: str) -> str:
    """A baseline controller source."""
    return (CONTROLLERS / f"{name}.py").read_text()


def build_store(path: Path):
    """A store with two search environments and one held-out environment."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_records

    store = Store(path)
    import_records(store, "Tiny", "search", make_records(3, 12, 0))
    import_records(store, "Tiny", "search2", make_records(2, 10, 2))
    import_records(store, "Tiny", "secret", make_records(3, 12, 1), split="heldout")
    return store


@pytest.fixture
def store(tmp_path: Path):
    return build_store(tmp_path / "store.duckdb")


@pytest.fixture
def make_ctx(store, sandbox):
    """Factory of ToolContexts on the test store; closes them at the end."""
    from autotts_graph.tools.context import ToolContext

    made = []

    def make(expose_heldout: bool = False, workers: int = 2):
        ctx = ToolContext(store=store, sandbox=sandbox, workers=workers, expose_heldout=expose_heldout)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


class Populated:
    """A store with evaluations of every visibility, and the ids to look for."""

    def __init__(self, store, search_ev: str, heldout_ev: str, mixed_ev: str, sandbox: str) -> None:
        self.store = store
        self.search_ev = search_ev
        self.heldout_ev = heldout_ev
        self.mixed_ev = mixed_ev
        self.sandbox = sandbox

    def ctx(self, expose_heldout: bool = False):
        from autotts_graph.tools.context import ToolContext

        return ToolContext(store=self.store, sandbox=self.sandbox, workers=2, expose_heldout=expose_heldout)


@pytest.fixture(scope="session")
def populated(tmp_path_factory, sandbox) -> Populated:
    """Search, held-out and mixed evaluations (made with an exposing context), and a run with a report."""
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    store = build_store(tmp_path_factory.mktemp("populated") / "store.duckdb")
    ctx = ToolContext(store=store, sandbox=sandbox, workers=2, expose_heldout=True)
    try:
        src = baseline_src("asc")
        ids = []
        plan = (([SEARCH_ENV], "search"), ([HELDOUT_ENV], "heldout"), ([SEARCH_ENV, HELDOUT_ENV], "search"))
        for envs, split in plan:
            summary = evaluate_controller(ctx, EvaluateInput(source=src, envs=envs, betas=[0.3, 0.8], seeds=3,
                                                             trace_seeds=2, split=split, label=f"t-{split}"))
            assert summary.ok, summary.error
            ids.append(summary.evaluation_id)
    finally:
        ctx.close()
    with store.connect() as con:
        con.execute("INSERT INTO runs (run_id, status, config, search_envs, heldout_envs, report) VALUES "
                    "('run-1', 'done', ?, ?, ?, ?)",
                    ['{"heldout": ["Tiny/secret"]}', [SEARCH_ENV, HELDOUT_ENV], [HELDOUT_ENV],
                     '{"heldout_accuracy": {"Tiny/secret": 42.0}}'])
    return Populated(store, *ids, sandbox=sandbox)


SLOW_SOLVE = '''
from autotts_runtime import Controller, majority, safe_full_read


class Slow(Controller):
    NAME = "slow"

    def schedule(self, beta):
        return {"k": 1 + round(3 * beta)}

    def solve(self, question):
        self.trace.record("start")
        spin = 0
        for i in range(6_000_000):
            spin += i
        answers = [safe_full_read(question) for _ in range(self.params["k"])]
        self.trace.record("finish", output={"spin": spin % 7})
        return majority([a for a in answers if a is not None])
'''


def mcp_result(res) -> dict:
    """The structured result of a successful MCP tool call."""
    assert not res.isError, res.content[0].text if res.content else res
    return res.structuredContent


def mcp_error(res) -> str:
    """The error text of a failed MCP tool call."""
    assert res.isError, res.structuredContent
    return res.content[0].text


@asynccontextmanager
async def http_session(url: str, token: str | None = None):
    """An initialised MCP ClientSession over streamable HTTP."""
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60, read=600)) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def memory_session(mcp):
    """An initialised MCP ClientSession connected in memory to a FastMCP server."""
    from mcp.shared.memory import create_connected_server_and_client_session

    async with create_connected_server_and_client_session(mcp._mcp_server) as session:
        yield session


def serve(ctx, **kwargs):
    """make_server for tests: the unsandboxed 'process' backend is allowed only where nothing else works."""
    from autotts_graph.tools.server import make_server

    return make_server(ctx, allow_process_sandbox=ctx.sandbox == "process", **kwargs)
