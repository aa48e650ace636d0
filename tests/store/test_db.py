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


def test_threads_share_one_open_file_and_release_it_to_other_processes(tmp_path):
    """Lanes of a run read and write the store from several threads at once: every write lands, readers and
    writers interleave without errors, and once they are done another process opens the file read-write."""
    import subprocess
    import sys
    import threading

    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (thread INTEGER, i INTEGER)")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(25):
                with store.connect() as con:
                    con.execute("INSERT INTO t VALUES (?, ?)", [k, i])
                with store.connect(read_only=True) as con:
                    assert con.execute("SELECT count(*) FROM t WHERE thread = ?", [k]).fetchone()[0] == i + 1
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    code = ("import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print(con.execute('SELECT count(*) FROM t').fetchone()[0])")
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(6 * 25)
