"""Fixtures shared by the whole suite: the shipped replay data and stores built from it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Helper modules shared by test directories (kill_point.py), importable under --import-mode=importlib. Appended,
# so a directory's own modules (tests/graph/conftest.py puts its folder first) keep precedence.
sys.path.append(str(Path(__file__).parent))
CONTROLLERS = REPO / "sandbox" / "controllers"


def data_root() -> Path:
    """``$AUTOTTS_DATA`` or ``<repo>/../shared/data`` (CI lays it there)."""
    return Path(os.environ.get("AUTOTTS_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _no_user_daemon(monkeypatch) -> None:
    """Each test runs the sandbox it sets up: a sandbox daemon the user left running is used only where a
    test asks for one (tests/sandbox/test_daemon.py)."""
    monkeypatch.setenv("AUTOTTS_SANDBOX_DAEMON", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "autotts-replay").is_dir():
        if os.environ.get("AUTOTTS_REQUIRE_DATA"):
            pytest.fail(f"replay data not found at {root} (set AUTOTTS_DATA)")
        pytest.skip(f"replay data not found at {root} (set AUTOTTS_DATA)")
    return root


@pytest.fixture(scope="session")
def replay_dir(data_dir: Path) -> Path:
    return data_dir / "autotts-replay"


@pytest.fixture(scope="session")
def records_4b(replay_dir: Path) -> list[dict]:
    return json.loads((replay_dir / "Qwen3-4B" / "aime24.json").read_text())


@pytest.fixture(scope="session")
def real_store(tmp_path_factory, replay_dir: Path):
    """A store with all shipped environments, AIME25 tagged held-out (built once per session)."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_path

    store = Store(tmp_path_factory.mktemp("real") / "real.duckdb")
    for model_dir in sorted(replay_dir.iterdir()):
        import_path(store, model_dir / "aime24.json")
        import_path(store, model_dir / "aime25.json", split="heldout")
    return store


def sandbox_name() -> str:
    """'auto' (docker, else bwrap) when it works on this machine, else 'process' (AUTOTTS_TEST_SANDBOX overrides)."""
    forced = os.environ.get("AUTOTTS_TEST_SANDBOX")
    if forced:
        return forced
    try:
        from autotts_graph.sandbox.select import make_backend

        backend = make_backend("auto")
    except Exception:
        return "process"
    backend.close()
    return "auto"


@pytest.fixture(scope="session")
def sandbox() -> str:
    return sandbox_name()


@pytest.fixture(scope="session")
def controller_source():
    """name -> source of a baseline controller under sandbox/controllers/."""
    return lambda name: (CONTROLLERS / f"{name}.py").read_text()


@pytest.fixture(scope="session")
def tiny_records():
    """Factory of small valid records for fast tests."""
    return make_tiny_records


@pytest.fixture
def tiny_store(tmp_path, tiny_records):
    """A store with two tiny search environments and one held-out one."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_records

    store = Store(tmp_path / "tiny.duckdb")
    import_records(store, "tiny", "a", tiny_records(seed=1))
    import_records(store, "tiny", "b", tiny_records(seed=2))
    import_records(store, "tiny", "held", tiny_records(seed=3), split="heldout")
    return store


def make_tiny_records(n_questions: int = 3, n_branches: int = 8, seed: int = 0) -> list[dict]:
    """Small valid AutoTTS records for fast tests (answers converge to a per-question mode)."""
    import random

    rng = random.Random(seed)
    records = []
    for q in range(n_questions):
        gold = str(100 + q)
        branches = []
        for _ in range(n_branches):
            final = gold if rng.random() < 0.6 else str(rng.choice([7, 8, 9]))
            n_probes = rng.randint(1, 6)
            probes = [rng.choice(["ERR", final, "1"]) for _ in range(n_probes - 1)] + [final]
            branches.append([probes, n_probes * 500 - rng.randint(0, 400), final])
        records.append({"question": f"q{q}", "final_answers_trace": [b[2] for b in branches],
                        "each_branch": branches, "gold_answer": gold, "probe_freq": 500})
    return records
