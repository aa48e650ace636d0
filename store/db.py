"""The DuckDB store: one file holding trajectories (environments, questions, branches) and history.

DuckDB lets one process write at a time, so every operation opens a short-lived connection and retries
while another process holds the file lock: a tool server can keep reading while a run writes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

SCHEMA_VERSION = 6  # bump with every statement added to _SCHEMA: read-only openers then migrate first
DEFAULT_STORE = "autotts.duckdb"
LOCK_WAIT_S = 30.0

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS environments (
        name VARCHAR, model VARCHAR, dataset VARCHAR, n_questions INTEGER, n_branches INTEGER,
        probe_freq INTEGER, content_hash VARCHAR, origin VARCHAR, source VARCHAR, spec JSON,
        split VARCHAR DEFAULT 'search', created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS questions (
        env VARCHAR, question_index INTEGER, question VARCHAR, gold_answer VARCHAR, probe_freq BIGINT,
        final_answers_trace VARCHAR[], key_order VARCHAR[])""",
    """CREATE TABLE IF NOT EXISTS branches (
        env VARCHAR, question_index INTEGER, branch_index INTEGER, probe_answers VARCHAR[],
        branch_tokens BIGINT, final_answer VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp, status VARCHAR, config JSON,
        search_envs VARCHAR[], heldout_envs VARCHAR[], best_candidate VARCHAR, report JSON)""",
    """CREATE TABLE IF NOT EXISTS candidates (
        candidate_id VARCHAR, run_id VARCHAR, round INTEGER, code_hash VARCHAR, source VARCHAR,
        parent VARCHAR, origin VARCHAR, name VARCHAR, check_result JSON, critic JSON,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS evaluations (
        evaluation_id VARCHAR, run_id VARCHAR, candidate_id VARCHAR, code_hash VARCHAR, label VARCHAR,
        split VARCHAR, protocol JSON, status VARCHAR, error JSON, elapsed_s DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS evaluation_points (
        evaluation_id VARCHAR, point_index INTEGER, env VARCHAR, pack_hash VARCHAR, cache_key VARCHAR,
        config JSON, beta DOUBLE, description VARCHAR, accuracy DOUBLE, avg_cost DOUBLE, std_acc DOUBLE,
        params JSON, acc_per_seed DOUBLE[], cost_per_seed DOUBLE[], seeds INTEGER[])""",
    """CREATE TABLE IF NOT EXISTS outcomes (
        evaluation_id VARCHAR, point_index INTEGER, env VARCHAR, seed INTEGER, correct BOOLEAN[],
        tokens BIGINT[], answers VARCHAR[])""",
    """CREATE TABLE IF NOT EXISTS traces (
        evaluation_id VARCHAR, point_index INTEGER, env VARCHAR, seed INTEGER, question_index INTEGER,
        is_correct BOOLEAN, cost BIGINT, answer VARCHAR, steps JSON)""",
    """CREATE TABLE IF NOT EXISTS diagnoses (
        run_id VARCHAR, candidate_id VARCHAR, round INTEGER, diagnosis JSON,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS spend (
        run_id VARCHAR, round INTEGER, node VARCHAR, llm_tokens BIGINT, usd DOUBLE, seconds DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    # Discovery runs (graph/): candidate status and evaluation, run finish time. Added columns keep
    # older store files readable (ADD COLUMN IF NOT EXISTS is a no-op on new files).
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS status VARCHAR",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS rationale VARCHAR",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS evaluation_id VARCHAR",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS search_accuracy DOUBLE",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS attempt INTEGER",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS genome JSON",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS finished_at TIMESTAMP",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS error VARCHAR",
    # Schema 3, populations (graph/archive.py): a candidate's slot in its generation, its cascade stage
    # (1 = screened, 2 = fully evaluated) and its screen evaluation; the MAP-Elites program archive.
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS slot INTEGER",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS stage INTEGER",
    "ALTER TABLE candidates ADD COLUMN IF NOT EXISTS screen_evaluation_id VARCHAR",
    """CREATE TABLE IF NOT EXISTS archive (
        run_id VARCHAR, candidate_id VARCHAR, island INTEGER, generation INTEGER, slot INTEGER,
        niche VARCHAR, cost_band INTEGER, family VARCHAR, stage INTEGER, fitness DOUBLE,
        screen_fitness DOUBLE, mean_tokens DOUBLE, search_accuracy DOUBLE, code_hash VARCHAR,
        evaluation_id VARCHAR, screen_evaluation_id VARCHAR, migrated_from INTEGER,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    # Schema 4: the spend of a lane node names its slot and candidate (the per-candidate ledger).
    "ALTER TABLE spend ADD COLUMN IF NOT EXISTS slot INTEGER",
    "ALTER TABLE spend ADD COLUMN IF NOT EXISTS candidate_id VARCHAR",
    # Schema 5: the run's wall time (store/ledger.py), kept apart from node seconds, which add up parallel lanes.
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS wall_s DOUBLE",
    # Schema 6: every LLM call of a run (graph/agents/client.py): tokens as the server reported them (or as the
    # client estimated them for a call cut off first), time, and how it ended.
    """CREATE TABLE IF NOT EXISTS llm_calls (
        run_id VARCHAR, round INTEGER, slot INTEGER, candidate_id VARCHAR, node VARCHAR, role VARCHAR,
        model VARCHAR, mode VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, usage VARCHAR,
        seconds DOUBLE, outcome VARCHAR, error VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp)""",
]


# DuckDB refuses to open one file read-only and read-write at once inside a process. So a process opens a file
# once for all its threads: while any thread uses it, others join through a cursor of their own on the same open
# database (opening and closing the file, a checkpoint each time, took about a third of a discovery run's host
# time when every call opened its own; benchmarks/embedded_default.py). A writer waits for the readers of a
# read-only opening to finish (and keeps new readers from joining meanwhile); a nested connect in the same
# thread reuses the open connection. The file is closed when its last user is done, so other processes get it
# between bursts as before. This registry is process-wide because the constraint is.
_FILE_CONDS: dict[str, threading.Condition] = {}
_FILE_CONDS_GUARD = threading.Lock()
_OPEN = threading.local()


@dataclass
class _Shared:
    """A file's one open database in this process, and how many threads are using it."""

    con: duckdb.DuckDBPyConnection
    read_only: bool
    users: int = 0
    writers_waiting: int = 0


_SHARED: dict[str, _Shared] = {}
_WRITERS: dict[str, threading.RLock] = {}


def _file_cond(path: Path) -> threading.Condition:
    with _FILE_CONDS_GUARD:
        return _FILE_CONDS.setdefault(str(path), threading.Condition(threading.RLock()))


def _writer_lock(path: Path) -> threading.RLock:
    with _FILE_CONDS_GUARD:
        return _WRITERS.setdefault(str(path), threading.RLock())


def _forget_in_child() -> None:
    """A forked child owns none of its parent's open databases (nor their locks)."""
    global _FILE_CONDS_GUARD
    _FILE_CONDS_GUARD = threading.Lock()
    _FILE_CONDS.clear()
    _WRITERS.clear()
    _SHARED.clear()
    _OPEN.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class StoreError(Exception):
    """A user-facing store problem (bad input, unknown environment, locked file); one line, no traceback."""


def default_store_path() -> Path:
    """``$AUTOTTS_STORE`` or ``./autotts.duckdb``."""
    return Path(os.environ.get("AUTOTTS_STORE", DEFAULT_STORE))


class Store:
    """A DuckDB store file; ``connect()`` yields a short-lived connection (schema created on first write)."""

    def __init__(self, path: str | Path | None = None) -> None:
        # Absolute, because pack paths derived from it are handed to sandboxes with other working directories.
        self.path = (Path(path) if path is not None else default_store_path()).absolute()
        self._schema_ready = False

    @property
    def packs_dir(self) -> Path:
        """Where replay packs exported from this store are cached."""
        return self.path.with_name(self.path.name + ".packs")

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting (bounded) while another process holds its write lock.

        A nested call in the same thread yields the connection already open (read-write serves reads).
        """
        open_here: dict[str, duckdb.DuckDBPyConnection] = _OPEN.__dict__.setdefault("cons", {})
        key = str(self.path)
        if key in open_here:
            yield open_here[key]
            return
        if read_only and not self.path.exists():
            # Nothing stored yet: an empty in-memory database answers every read the same way.
            con = duckdb.connect(":memory:")
            _create_schema(con)
            try:
                yield con
            finally:
                con.close()
            return
        # Writers of this process take turns (as they did when each opened the file itself): concurrent write
        # transactions on one database could conflict. Readers never wait for them.
        writer = _writer_lock(self.path) if not read_only else contextlib.nullcontext()
        with writer:
            shared = self._join(key, read_only)
            con = shared.con.cursor()  # this thread's own connection to the one open database
            open_here[key] = con
            try:
                yield con
            finally:
                open_here.pop(key, None)
                con.close()
                self._leave(key, shared)

    def _join(self, key: str, read_only: bool) -> _Shared:
        """The file's open database in this process, opened when no thread has it (a writer waits for the
        readers of a read-only opening, and new readers wait behind it)."""
        cond = _file_cond(self.path)
        with cond:
            waiting_on: _Shared | None = None
            try:
                while True:
                    shared = _SHARED.get(key)
                    if shared is None:
                        break
                    if not shared.read_only or (read_only and not shared.writers_waiting):
                        shared.users += 1
                        if not read_only:
                            self._schema_ready = True  # a read-write opening created it
                        return shared
                    if not read_only and waiting_on is not shared:
                        if waiting_on is not None:
                            waiting_on.writers_waiting -= 1
                        shared.writers_waiting += 1
                        waiting_on = shared
                    cond.wait()
            finally:
                if waiting_on is not None:
                    waiting_on.writers_waiting -= 1
            con = self._open(read_only)
            if read_only and _schema_version(con) < SCHEMA_VERSION:
                # A file written by an older version: migrate it once (read-write), then read.
                con.close()
                self._migrate()
                con = self._open(read_only)
            try:
                if not read_only and not self._schema_ready:
                    _create_schema(con)
                    self._schema_ready = True
            except BaseException:
                con.close()
                raise
            shared = _SHARED[key] = _Shared(con, read_only, users=1)
            return shared

    def _leave(self, key: str, shared: _Shared) -> None:
        """One user fewer; the last one closes the file."""
        cond = _file_cond(self.path)
        with cond:
            shared.users -= 1
            if shared.users == 0:
                del _SHARED[key]
                shared.con.close()
                cond.notify_all()

    def _migrate(self) -> None:
        con = self._open(read_only=False)
        try:
            _create_schema(con)
            self._schema_ready = True
        finally:
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.01
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open store {self.path}: {str(exc).splitlines()[0]}") from None
            except duckdb.Error as exc:
                raise StoreError(f"cannot open store {self.path}: {str(exc).splitlines()[0]}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in _SCHEMA:
        con.execute(statement)
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    elif int(row[0]) > SCHEMA_VERSION:
        raise StoreError(f"store schema {row[0]} is newer than this autotts-graph ({SCHEMA_VERSION}); upgrade it")
    elif int(row[0]) < SCHEMA_VERSION:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row else 0
