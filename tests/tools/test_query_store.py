"""query_store: read-only, held-out-free, no way out of the database, capped in rows, size and time."""

from __future__ import annotations

import json

import pytest
from autotts_graph.tools.query_store import QueryInput, query_store

from .conftest import HELDOUT_ENV, SEARCH_ENV, SEARCH_ENV_2


def q(ctx, sql: str, **kw):
    return query_store(ctx, QueryInput(sql=sql, **kw))


@pytest.fixture(scope="module")
def hidden(populated):
    return populated.ctx()


@pytest.fixture(scope="module")
def exposed(populated):
    return populated.ctx(expose_heldout=True)


def test_select_sees_search_data_only(populated, hidden):
    envs = q(hidden, "SELECT name, split FROM environments ORDER BY name")
    assert envs.columns == ["name", "split"]
    assert envs.rows == [[SEARCH_ENV, "search"], [SEARCH_ENV_2, "search"]]
    for table, col in (("questions", "env"), ("branches", "env"), ("traces", "env"), ("outcomes", "env"),
                       ("evaluation_points", "env")):
        rows = q(hidden, f"SELECT DISTINCT {col} FROM {table}").rows
        assert [HELDOUT_ENV] not in rows, table
        assert rows, table
    evals = {r[0] for r in q(hidden, "SELECT evaluation_id FROM evaluations").rows}
    assert evals == {populated.search_ev}
    runs = q(hidden, "SELECT * FROM runs")
    assert runs.columns == ["run_id", "created_at", "status", "search_envs", "best_candidate"]
    assert runs.rows[0][3] == [SEARCH_ENV]
    tables = ("environments", "questions", "evaluations", "evaluation_points", "traces", "runs", "candidates",
              "diagnoses", "spend", "meta", "archive")
    everything = json.dumps([q(hidden, f"SELECT * FROM {t}", max_rows=1000).rows for t in tables])
    assert "secret" not in everything
    assert populated.heldout_ev not in everything and populated.mixed_ev not in everything


def test_only_allowlisted_tables_exist(hidden):
    tables = {r[0] for r in q(hidden, "SELECT table_name FROM duckdb_tables()").rows}
    assert tables == {"meta", "environments", "questions", "branches", "evaluations", "evaluation_points",
                      "outcomes", "traces", "runs", "candidates", "diagnoses", "spend", "archive"}


def test_exposed_sees_everything(populated, exposed):
    envs = [r[0] for r in q(exposed, "SELECT name FROM environments ORDER BY name").rows]
    assert HELDOUT_ENV in envs
    evals = {r[0] for r in q(exposed, "SELECT evaluation_id FROM evaluations").rows}
    assert evals == {populated.search_ev, populated.heldout_ev, populated.mixed_ev}
    assert "heldout_envs" in q(exposed, "SELECT * FROM runs").columns


@pytest.mark.parametrize("sql, expect", [
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ("SELECT * FROM read_text('/etc/passwd')", "disabled"),
    ("SELECT * FROM '/etc/passwd'", ""),
    ("SELECT * FROM read_json_auto('/etc/hosts')", "disabled"),
    ("SELECT * FROM glob('/*')", "disabled"),
    ("SELECT * FROM 'http://127.0.0.1:9/x.csv'", ""),
    ("ATTACH '/tmp/x.duckdb' AS x", "only read-only"),
    ("ATTACH ':memory:' AS x", "only read-only"),
    ("COPY environments TO '/tmp/leak.csv'", "only read-only"),
    ("EXPORT DATABASE '/tmp/leak'", "only read-only"),
    ("INSTALL httpfs", "only read-only"),
    ("LOAD httpfs", "only read-only"),
    ("SET enable_external_access = true", "only read-only"),
    ("PRAGMA enable_profiling", "only read-only"),
    ("CALL pragma_version()", "only read-only"),
    ("DROP TABLE environments", "only read-only"),
    ("CREATE TABLE x AS SELECT 1", "only read-only"),
    ("INSERT INTO meta VALUES ('a', 'b')", "only read-only"),
    ("DELETE FROM environments", "only read-only"),
    ("SELECT 1; DROP TABLE environments", "exactly one statement"),
    ("SELECT * FROM query('ATTACH ''/tmp/x.duckdb''')", ""),
    ("SELECT * FROM sqlite_scan('/tmp/x.db', 't')", ""),
    ("SELEC 1", "cannot parse"),
])
def test_escapes_fail(hidden, sql, expect):
    with pytest.raises(ValueError) as err:
        q(hidden, sql)
    assert expect in str(err.value)


def test_escapes_fail_even_with_heldout_exposed(exposed):
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_text('/etc/passwd')"):
        with pytest.raises(ValueError, match="disabled"):
            q(exposed, sql)


def test_row_cap_and_timeout(hidden):
    res = q(hidden, "SELECT range FROM range(5000)", max_rows=100)
    assert res.row_count == 100 and res.truncated
    assert res.rows[0] == [0]
    res = q(hidden, "SELECT range FROM range(5)", max_rows=100)
    assert res.row_count == 5 and not res.truncated
    with pytest.raises(ValueError, match="timeout"):
        q(hidden, "SELECT sum(a.range * b.range) FROM range(200000000) a, range(1000) b", timeout_s=0.5)
    with pytest.raises(ValueError, match="less than or equal"):
        QueryInput(sql="SELECT 1", max_rows=10**6)


def test_size_cap(hidden):
    res = q(hidden, "SELECT repeat('x', 100000) AS big FROM range(300)", max_rows=300)
    assert res.truncated
    assert all(len(r[0]) < 5000 for r in res.rows)
    assert len(json.dumps(res.rows)) <= 600_000


def test_snapshot_follows_writes(tmp_path, store, make_ctx, monkeypatch):
    from autotts_graph.store.trajectories import import_records
    from autotts_graph.tools import query_store as module

    from .conftest import make_records

    monkeypatch.setattr(module, "SNAPSHOT_MIN_INTERVAL_S", 0.0)
    ctx = make_ctx()
    before = q(ctx, "SELECT count(*) FROM environments").rows[0][0]
    import_records(store, "Tiny", "later", make_records(2, 4, 5))
    import_records(store, "Tiny", "later_secret", make_records(2, 4, 6), split="heldout")
    after = [r[0] for r in q(ctx, "SELECT name FROM environments ORDER BY name").rows]
    assert len(after) == before + 1 and "Tiny/later" in after and "Tiny/later_secret" not in after


def test_snapshot_refresh_is_rate_limited(store, make_ctx, monkeypatch):
    from autotts_graph.store.trajectories import import_records
    from autotts_graph.tools import query_store as module

    from .conftest import make_records

    monkeypatch.setattr(module, "SNAPSHOT_MIN_INTERVAL_S", 30.0)
    ctx = make_ctx()
    before = q(ctx, "SELECT count(*) FROM environments").rows[0][0]
    import_records(store, "Tiny", "later", make_records(2, 4, 5))
    assert q(ctx, "SELECT count(*) FROM environments").rows[0][0] == before
    monkeypatch.setattr(module, "SNAPSHOT_MIN_INTERVAL_S", 0.0)
    assert q(ctx, "SELECT count(*) FROM environments").rows[0][0] == before + 1
