"""Tool: read-only SQL over the store, without held-out data and without any way out of the database.

Queries never run against the store file itself. They run against a *snapshot*: a separate DuckDB file
holding copies of an allow-list of tables, filtered to what the caller may see (held-out environments,
their questions and branches, and every evaluation that touched them are left out; run reports and
configs, which may name held-out results, are dropped), and without the gold answers
(``questions.gold_answer``) unless the caller's context exposes them (``--expose-gold``). The snapshot is
opened read-only with external access disabled (no files, no network, no extensions, no ATTACH, no COPY)
and its configuration locked, only single SELECT/EXPLAIN statements are accepted, results are capped in
rows and size, and a timer interrupts queries that run too long. A snapshot is rebuilt when the store
file has changed, at most once per SNAPSHOT_MIN_INTERVAL_S (so answers may lag writes by about a second);
building it holds the store only for the copy, so writers in other processes are not blocked for long.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
from pydantic import BaseModel, Field

from .context import ToolContext

MAX_ROWS = 1000
MAX_TIMEOUT_S = 60.0
MAX_CELL_CHARS = 4_000
MAX_RESULT_CHARS = 500_000
# A snapshot is rebuilt at most this often while the store keeps changing: each rebuild copies the store
# and holds its read lock meanwhile, which a busy writer in another process would otherwise keep paying.
SNAPSHOT_MIN_INTERVAL_S = 1.0
ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})

# The configuration every query connection runs under; lock_configuration stops SET from undoing it.
LOCKED_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
    "max_memory": "1GB",
    "threads": 2,
    "lock_configuration": True,
}

_VISIBLE_EVALUATIONS = """(
    SELECT e.evaluation_id FROM main.evaluations e
    WHERE coalesce(e.split, 'search') <> 'heldout'
      AND list_has_all(CAST($envs AS VARCHAR[]),
                       coalesce(try_cast(json_extract(e.protocol, '$.envs') AS VARCHAR[]), []::VARCHAR[]))
      AND NOT EXISTS (SELECT 1 FROM main.evaluation_points p
                      WHERE p.evaluation_id = e.evaluation_id
                        AND NOT list_contains(CAST($envs AS VARCHAR[]), p.env)))"""
_ENV_VISIBLE = "list_contains(CAST($envs AS VARCHAR[]), {col})"

# Tables a caller without held-out access sees, and how each is filtered. Anything else is not copied.
FILTERED_TABLES: dict[str, str] = {
    "meta": "SELECT * FROM main.meta",
    "environments": "SELECT * FROM main.environments WHERE " + _ENV_VISIBLE.format(col="name"),
    "questions": "SELECT * FROM main.questions WHERE " + _ENV_VISIBLE.format(col="env"),
    "branches": "SELECT * FROM main.branches WHERE " + _ENV_VISIBLE.format(col="env"),
    "evaluations": "SELECT * FROM main.evaluations WHERE evaluation_id IN " + _VISIBLE_EVALUATIONS,
    "evaluation_points": "SELECT * FROM main.evaluation_points WHERE evaluation_id IN "
                         + _VISIBLE_EVALUATIONS,
    "outcomes": "SELECT * FROM main.outcomes WHERE evaluation_id IN " + _VISIBLE_EVALUATIONS,
    "traces": "SELECT * FROM main.traces WHERE evaluation_id IN " + _VISIBLE_EVALUATIONS,
    "runs": "SELECT run_id, created_at, status, list_filter(search_envs, lambda x: "
            + _ENV_VISIBLE.format(col="x") + ") AS search_envs, best_candidate FROM main.runs",
    "candidates": "SELECT * FROM main.candidates",
    "diagnoses": "SELECT * FROM main.diagnoses",
    "spend": "SELECT * FROM main.spend",
    "archive": "SELECT * FROM main.archive",  # search-set fitness only (graph/archive.py)
}
# Columns that state a gold answer, left out of every snapshot unless the caller may see gold answers.
GOLD_COLUMNS: dict[str, tuple[str, ...]] = {"questions": ("gold_answer",)}


def _without_gold(table: str, select: str, expose_gold: bool) -> str:
    """``select`` (a ``SELECT * ...`` of ``table``) without the table's gold columns unless they are exposed."""
    hidden = () if expose_gold else GOLD_COLUMNS.get(table, ())
    if not hidden:
        return select
    assert select.startswith("SELECT * "), select
    return "SELECT * EXCLUDE (" + ", ".join(hidden) + ") " + select[len("SELECT * "):]

SCHEMA_HELP = """Tables (DuckDB SQL; JSON columns are text, query them with ->> or json_extract):
- environments(name, model, dataset, n_questions, n_branches, probe_freq, content_hash, origin, source, spec,
  split, created_at): one row per replay environment (model x benchmark), e.g. name 'Qwen3-4B/aime24'.
- questions(env, question_index, question, probe_freq, final_answers_trace, key_order): gold answers are not
  served (gold_answer only on a server started with --expose-gold); per-question correctness is in outcomes
  and traces (of evaluated answers).
- branches(env, question_index, branch_index, probe_answers VARCHAR[], branch_tokens, final_answer): the
  recorded reasoning branches in file order; probe_answers[k] is the answer after (k+1)*probe_freq tokens.
- evaluations(evaluation_id, run_id, candidate_id, code_hash, label, split, protocol, status, error,
  elapsed_s, created_at)
- evaluation_points(evaluation_id, point_index, env, pack_hash, cache_key, config, beta, description,
  accuracy, avg_cost, std_acc, params, acc_per_seed DOUBLE[], cost_per_seed DOUBLE[], seeds INTEGER[])
- outcomes(evaluation_id, point_index, env, seed, correct BOOLEAN[], tokens BIGINT[], answers VARCHAR[]):
  per seed, one entry per question in question order.
- traces(evaluation_id, point_index, env, seed, question_index, is_correct, cost, answer, steps JSON)
- runs(run_id, created_at, status, search_envs, best_candidate); candidates(candidate_id, run_id, round,
  code_hash, source, parent, origin, name, check_result, critic, created_at, status, rationale,
  evaluation_id, search_accuracy, attempt, genome, slot, stage, screen_evaluation_id); diagnoses(run_id,
  candidate_id, round, diagnosis, created_at); spend(run_id, round, node, llm_tokens, usd, seconds,
  created_at, slot, candidate_id); meta(key, value).
- archive(run_id, candidate_id, island, generation, slot, niche, cost_band, family, stage, fitness,
  screen_fitness, mean_tokens, search_accuracy, code_hash, evaluation_id, screen_evaluation_id,
  migrated_from, created_at): a discovery run's program database (MAP-Elites niches = cost band x scaling band x
  mechanism family, per island); stage 1 = screened only, 2 = fully evaluated (fitness set)."""


class QueryInput(BaseModel):
    """One read-only SQL statement over the store."""

    sql: str = Field(description="A single DuckDB SELECT (or EXPLAIN) statement.", min_length=1,
                     max_length=20_000)
    max_rows: int = Field(default=200, ge=1, le=MAX_ROWS, description=f"Row cap, at most {MAX_ROWS}.")
    timeout_s: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S,
                             description=f"Stop the query after this many seconds (max {MAX_TIMEOUT_S:g}).")


class QueryResult(BaseModel):
    """Columns and rows of a query (rows as lists in column order)."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int = Field(description="Rows returned here.")
    truncated: bool = Field(description="True when more rows existed (row cap) or the size cap cut rows.")
    elapsed_s: float


def _jsonable(value: Any) -> Any:
    """A JSON-friendly version of a DuckDB value, long strings shortened."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_CELL_CHARS else value[:MAX_CELL_CHARS] + f"... [{len(value)} chars]"
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return raw[: MAX_CELL_CHARS // 2].hex() + ("..." if len(raw) > MAX_CELL_CHARS // 2 else "")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _jsonable(str(value))


def store_state(path: Path) -> tuple:
    """What changes when the store is written: size and mtime of the file and of its WAL."""
    state: list[Any] = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            st = p.stat()
            state.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            state.append(None)
    return tuple(state)


class Snapshot:
    """A filtered, read-only copy of one store for one visibility; rebuilt when the store changes."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="autotts-query-")
        self._lock = threading.Lock()
        self._state: tuple | None = None
        self._path: Path | None = None
        self._generation = 0
        self._built_at = 0.0

    def current(self, ctx: ToolContext) -> Path:
        """The snapshot file for the store as it is now (rebuilt if the store changed)."""
        with self._lock:
            state = store_state(ctx.store.path)
            stale = state != self._state and time.monotonic() - self._built_at >= SNAPSHOT_MIN_INTERVAL_S
            if self._path is None or stale:
                self._path = self._build(ctx)
                self._state = state
                self._built_at = time.monotonic()
            return self._path

    def _build(self, ctx: ToolContext) -> Path:
        self._generation += 1
        path = Path(self._dir.name) / f"snapshot-{self._generation}.duckdb"
        quoted = str(path).replace("'", "''")
        with ctx.store.connect(read_only=True) as con:
            # Visibility is decided from the same connection the data is copied from, so a split changed
            # by a concurrent writer cannot slip through between the two reads.
            envs = [name for name, split in con.execute("SELECT name, split FROM main.environments").fetchall()
                    if ctx.visible(SimpleNamespace(name=name, split=split))]  # type: ignore[arg-type]
            con.execute(f"ATTACH '{quoted}' AS snap (READ_WRITE)")
            try:
                if ctx.expose_heldout:
                    names = [r[0] for r in con.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                        " AND schema_name = 'main' AND NOT temporary").fetchall()]
                    for name in names:
                        q = name.replace('"', '""')
                        select = _without_gold(name, f'SELECT * FROM main."{q}"', ctx.expose_gold)
                        con.execute(f'CREATE TABLE snap."{q}" AS {select}')
                else:
                    for name, select in FILTERED_TABLES.items():
                        params = {"envs": envs} if "$envs" in select else None
                        select = _without_gold(name, select, ctx.expose_gold)
                        con.execute(f"CREATE TABLE snap.{name} AS {select}", params)
            finally:
                con.execute("DETACH snap")
        # Keep the previous generation: a query may be opening it right now.
        for old in Path(self._dir.name).glob("snapshot-*.duckdb*"):
            generation = old.name.split("-", 1)[1].split(".", 1)[0]
            if generation.isdigit() and int(generation) < self._generation - 1:
                try:
                    old.unlink()
                except OSError:
                    pass
        return path

    def close(self) -> None:
        """Delete the snapshot files."""
        self._dir.cleanup()


_SNAPSHOTS: dict[tuple, Snapshot] = {}
_SNAPSHOTS_LOCK = threading.Lock()


def snapshot_for(ctx: ToolContext) -> Snapshot:
    """The snapshot shared by every context with the same store and the same visibility."""
    key = (str(ctx.store.path.resolve()), ctx.expose_heldout, ctx.expose_gold, tuple(sorted(ctx.hidden_envs)))
    with _SNAPSHOTS_LOCK:
        snap = _SNAPSHOTS.get(key)
        if snap is None:
            snap = _SNAPSHOTS[key] = Snapshot()
        return snap


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """ValueError unless ``sql`` is exactly one SELECT or EXPLAIN statement."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"cannot parse the query: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise ValueError(f"send exactly one statement (got {len(statements)})")
    kind = statements[0].type
    if kind not in ALLOWED_STATEMENTS:
        raise ValueError(f"only read-only SELECT or EXPLAIN queries are allowed (got {kind.name})")


def _open_snapshot(ctx: ToolContext) -> duckdb.DuckDBPyConnection:
    """A locked-down read-only connection to the caller's current snapshot."""
    snapshot = snapshot_for(ctx)
    for attempt in range(3):
        path = snapshot.current(ctx)
        try:
            return duckdb.connect(str(path), read_only=True, config=dict(LOCKED_CONFIG))
        except duckdb.IOException:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def query_store(ctx: ToolContext, inp: QueryInput) -> QueryResult:
    """Run one read-only query on the caller's snapshot of the store, capped in rows, size and time."""
    started = time.perf_counter()
    con = _open_snapshot(ctx)
    timer = threading.Timer(inp.timeout_s, con.interrupt)
    try:
        check_statement(con, inp.sql)
        timer.start()
        try:
            con.execute(inp.sql)
            rows = con.fetchmany(inp.max_rows + 1)
        except duckdb.InterruptException:
            raise ValueError(f"the query was stopped after the timeout of {inp.timeout_s:g} s") from None
        except duckdb.Error as exc:
            raise ValueError(f"query failed: {str(exc).splitlines()[0]}") from None
        description = con.description or []
    finally:
        timer.cancel()
        con.close()
    truncated = len(rows) > inp.max_rows
    out: list[list[Any]] = []
    used = 0
    for row in rows[: inp.max_rows]:
        values = [_jsonable(v) for v in row]
        size = len(json.dumps(values, default=str))
        if out and used + size > MAX_RESULT_CHARS:
            truncated = True
            break
        out.append(values)
        used += size
    return QueryResult(columns=[d[0] for d in description], types=[str(d[1]) for d in description],
                       rows=out, row_count=len(out), truncated=truncated,
                       elapsed_s=round(time.perf_counter() - started, 4))


def close_snapshots() -> None:
    """Delete every snapshot of this process (for servers that shut down cleanly)."""
    with _SNAPSHOTS_LOCK:
        for snap in _SNAPSHOTS.values():
            snap.close()
        _SNAPSHOTS.clear()

