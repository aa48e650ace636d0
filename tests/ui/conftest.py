"""Fixtures of the run-browser tests: a store filled by a real offline discovery run, and the real app serving it.

The run goes through `autotts-graph run` with the offline roles on three small synthetic environments (two
search, one held out): three generations of three candidates, the cascade on, SC and CMC as baselines. It
takes about 40 s and is made once per session; the tests that change a store work on a copy of it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ui_server import Server  # noqa: E402

RUN_ARGS = ["--search", "m1/search", "--search", "m2/search", "--heldout", "m1/heldout", "--betas", "0,0.5,1",
            "--seeds", "4", "--screen-seeds", "2", "--rounds", "3", "--population", "3", "--sandbox", "process",
            "--baselines", "sc,cmc", "--proposer", "offline", "--critic", "offline", "--diagnostician", "offline",
            "--seed", "1", "--no-live"]


def fill_environments(path: Path):
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize_into

    store = Store(path)
    for model, dataset, seed in (("m1", "search", 1), ("m2", "search", 2), ("m1", "heldout", 3)):
        synthesize_into(store, model, dataset, preset("synth-1.7b", n_questions=6, n_branches=16, seed=seed))
    return store


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(store, run id, the run command's output) of a real offline run that finished with a selection."""
    from autotts_graph.cli.main import app
    from autotts_graph.store import history
    from typer.testing import CliRunner

    store = fill_environments(tmp_path_factory.mktemp("browsed") / "runs.duckdb")
    res = CliRunner().invoke(app, ["run", "--store", str(store.path), *RUN_ARGS])
    assert res.exit_code == 0, res.output
    (run,) = history.list_runs(store)
    assert run.status == "done" and run.best_candidate
    return store, run.run_id, res.output


@pytest.fixture
def store_copy(finished_run, tmp_path):
    """A copy of the finished run's store, for tests that change it."""
    from autotts_graph.store.db import Store

    store, run_id, _ = finished_run
    path = tmp_path / "copy.duckdb"
    shutil.copy(store.path, path)
    return Store(path), run_id


@pytest.fixture(scope="session")
def server(finished_run) -> Iterator[Server]:
    """The app over the finished run's store."""
    srv = Server(finished_run[0].path)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser():
    from browser import Browser, available

    why = available()
    if why:
        if os.environ.get("AUTOTTS_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    b = Browser()
    yield b
    b.close()
