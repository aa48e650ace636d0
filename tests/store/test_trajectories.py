"""Importing, exporting and describing replay environments; bad input never changes the store."""

import gzip
import json

import pytest
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.trajectories import (
    describe_environment,
    export_records,
    import_path,
    import_records,
    list_environments,
    pack_path,
    set_split,
)


def test_round_trip_of_a_real_file_is_the_same_json_value(tmp_path, replay_dir):
    store = Store(tmp_path / "s.duckdb")
    src = replay_dir / "Qwen3-4B" / "aime24.json"
    assert import_path(store, src) == [("Qwen3-4B/aime24", True)]
    original = json.loads(src.read_text())
    exported = export_records(store, "Qwen3-4B/aime24")
    assert exported == original
    assert [list(r) for r in exported] == [list(r) for r in original]  # key order kept too
    info = list_environments(store)[0]
    assert (info.n_questions, info.n_branches, info.probe_freq) == (30, 128, 500)
    assert info.single_branch_accuracy == pytest.approx(0.71849, abs=1e-4)


def test_reimport_is_idempotent_and_replace_is_explicit(tmp_path, tiny_records):
    store = Store(tmp_path / "s.duckdb")
    recs = tiny_records()
    assert import_records(store, "m", "d", recs) == ("m/d", True)
    assert import_records(store, "m", "d", recs) == ("m/d", False)
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM branches").fetchone()[0] == 3 * 8
    changed = tiny_records(seed=9)
    with pytest.raises(StoreError, match="--replace"):
        import_records(store, "m", "d", changed)
    import_records(store, "m", "d", changed, replace=True)
    assert export_records(store, "m/d") == changed
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM branches").fetchone()[0] == 3 * 8


def test_gzip_and_directory_layout_name_environments(tmp_path, tiny_records):
    root = tmp_path / "data" / "ModelX"
    root.mkdir(parents=True)
    (root / "set1.json.gz").write_bytes(gzip.compress(json.dumps(tiny_records()).encode()))
    (root / "set2.json").write_text(json.dumps(tiny_records(seed=4)))
    store = Store(tmp_path / "s.duckdb")
    names = import_path(store, tmp_path / "data", split="heldout")
    assert [n for n, _ in names] == ["ModelX/set1", "ModelX/set2"]
    assert {e.split for e in list_environments(store)} == {"heldout"}
    set_split(store, ["ModelX/set1"], "search")
    assert {e.name: e.split for e in list_environments(store)}["ModelX/set1"] == "search"


def _broken(records, mutate):
    recs = json.loads(json.dumps(records))
    mutate(recs)
    return recs


BAD_CASES = [
    (lambda r: r[1].pop("gold_answer"), "question 1: missing field 'gold_answer'"),
    (lambda r: r[0].__setitem__("probe_freq", 0), "question 0: 'probe_freq' must be a positive integer"),
    (lambda r: r[2].__setitem__("each_branch", []), "question 2: 'each_branch' must be a non-empty list"),
    (lambda r: r[1]["each_branch"][3].__setitem__(1, -5), "question 1, branch 3: branch_tokens must be"),
    (lambda r: r[0]["each_branch"][2].__setitem__(1, "12"), "question 0, branch 2: branch_tokens must be"),
    (lambda r: r[0]["each_branch"][5].__setitem__(0, [1, 2]), "question 0, branch 5: probe_answers must be a list"),
    (lambda r: r[2]["each_branch"][0].pop(), "question 2, branch 0: expected [probe_answers"),
    (lambda r: r[0].__setitem__("gold_answer", 204), "question 0: 'gold_answer' must be a string"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_CASES)
def test_bad_records_fail_with_one_line_naming_the_place(tmp_path, tiny_records, mutate, message):
    store = Store(tmp_path / "s.duckdb")
    import_records(store, "keep", "me", tiny_records())
    path = tmp_path / "M" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_broken(tiny_records(), mutate)))
    with pytest.raises(StoreError) as info:
        import_path(store, path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)
    assert [e.name for e in list_environments(store)] == ["keep/me"]


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "invalid JSON"),
    (b'{"a": 1}', "expected a JSON array"),
    (b"[]", "holds no questions"),
    (b"\xff\xfe", "invalid JSON"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "M" / "d.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(StoreError, match=message):
        import_path(Store(tmp_path / "s.duckdb"), path)


def test_a_bad_file_in_a_directory_imports_nothing(tmp_path, tiny_records):
    root = tmp_path / "data" / "M"
    root.mkdir(parents=True)
    (root / "a.json").write_text(json.dumps(tiny_records()))
    (root / "b.json").write_text("[1, 2]")
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(StoreError, match="b.json: question 0"):
        import_path(store, tmp_path / "data")
    assert list_environments(store) == []


def test_failed_transaction_leaves_store_unchanged(tmp_path, tiny_records, monkeypatch):
    store = Store(tmp_path / "s.duckdb")
    import_records(store, "m", "d", tiny_records())
    before = export_records(store, "m/d")
    real_connect = store.connect

    class Boom(Exception):
        pass

    def failing_connect(read_only=False):
        ctx = real_connect(read_only)

        class Wrapper:
            def __enter__(self):
                self.con = ctx.__enter__()
                return self

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

            def execute(self, sql, *args):
                if sql.startswith("INSERT INTO branches"):
                    raise Boom("disk full")
                return self.con.execute(sql, *args)

        return Wrapper()

    monkeypatch.setattr(store, "connect", failing_connect)
    with pytest.raises(Boom):
        import_records(store, "m", "d", tiny_records(seed=7), replace=True)
    monkeypatch.undo()
    assert export_records(store, "m/d") == before


def test_unknown_environment_is_named(tmp_path, tiny_records):
    store = Store(tmp_path / "s.duckdb")
    import_records(store, "m", "d", tiny_records())
    with pytest.raises(StoreError, match="unknown environment 'm/x'.*m/d"):
        describe_environment(store, "m/x")


def test_pack_is_content_addressed_and_reused(tmp_path, tiny_records):
    store = Store(tmp_path / "s.duckdb")
    import_records(store, "m", "d", tiny_records())
    first = pack_path(store, "m/d")
    mtime = first.stat().st_mtime_ns
    assert pack_path(store, "m/d") == first and first.stat().st_mtime_ns == mtime
    import_records(store, "m", "d", tiny_records(seed=3), replace=True)
    assert pack_path(store, "m/d") != first


def test_describe_gives_per_question_statistics(tmp_path, tiny_records):
    store = Store(tmp_path / "s.duckdb")
    import_records(store, "m", "d", tiny_records())
    d = describe_environment(store, "m/d")
    assert len(d.questions) == 3
    q0 = d.questions[0]
    assert q0.gold_answer == "100" and q0.branches == 8
    assert 0.0 <= q0.branch_accuracy <= 1.0
