"""Store files written by an older schema are migrated before they are read."""

import duckdb
from autotts_graph.store import history
from autotts_graph.store.db import SCHEMA_VERSION, Store


def test_reading_an_older_store_migrates_it_first(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path).connect() as con:  # a current file, then made to look like schema 1
        con.execute("ALTER TABLE candidates DROP COLUMN genome")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert history.candidates(Store(path), "run-x") == []  # read-only path: no missing-column error
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert "genome" in [r[0] for r in con.execute("DESCRIBE candidates").fetchall()]
    finally:
        con.close()
