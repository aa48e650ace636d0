"""Where the benchmarks find the shipped replay data, and how they put it in a store.

The data is never in the repository: it is read from ``$AUTOTTS_DATA`` or, in a development checkout,
from the shared data folder next to the repository (``<repo>/../shared/data``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import import_path, list_environments

REPO = Path(__file__).resolve().parents[1]
MODELS = ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B"]
SPLITS = {"aime24": "search", "aime25": "heldout"}


def data_root() -> Path:
    """``$AUTOTTS_DATA`` or the shared data folder next to the repository."""
    return Path(os.environ.get("AUTOTTS_DATA", REPO.parent / "shared" / "data"))


def replay_dir() -> Path:
    """The replay files, one ``<Model>/<dataset>.json`` per environment."""
    return data_root() / "autotts-replay"


def ensure_envs(store: Store, datasets: tuple[str, ...] = ("aime24", "aime25")) -> list[str]:
    """Import the shipped environments of ``datasets`` the store lacks (AIME24 search, AIME25 held out);
    returns every one of their names."""
    have = {e.name for e in list_environments(store)}
    names = []
    for model in MODELS:
        for dataset in datasets:
            name = f"{model}/{dataset}"
            if name not in have:
                import_path(store, replay_dir() / model / f"{dataset}.json", split=SPLITS.get(dataset, "search"))
            names.append(name)
    return names


def replay_store(path: Path | None, prefix: str) -> tuple[Store, tempfile.TemporaryDirectory | None]:
    """The store at ``path`` (else a temporary one, returned with it so it lives as long as the caller keeps it)
    with the AIME24 and AIME25 environments imported."""
    tmp = None
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        path = Path(tmp.name) / "store.duckdb"
    store = Store(path)
    store.path = store.path.resolve()
    ensure_envs(store)
    return store, tmp
