"""The run ledger: the one writer of runs, candidates, diagnoses and spend, with typed statuses and rows."""

import duckdb
import pytest
from autotts_graph.store import history
from autotts_graph.store.db import SCHEMA_VERSION, Store, StoreError
from autotts_graph.store.ledger import (
    CandidateRow,
    CandidateStatus,
    LedgerError,
    RunLedger,
    RunStatus,
    SpendRow,
)
from pydantic import ValidationError

SOURCE = "class C:\n    pass\n"


def _opened(tmp_path, run_id: str = "run-a") -> RunLedger:
    ledger = RunLedger(Store(tmp_path / "s.duckdb"), run_id)
    ledger.open(config={"seeds": 2}, search_envs=["e/a"], heldout_envs=["e/h"])
    return ledger


def test_a_run_moves_through_its_statuses_and_reads_back_as_the_enum_values(tmp_path):
    ledger = _opened(tmp_path)
    assert ledger.exists() and not RunLedger(ledger.store, "run-other").exists()
    assert history.get_run(ledger.store, "run-a").status == "running" == RunStatus.RUNNING
    ledger.reconfigure(config={"seeds": 4}, search_envs=["e/a"], heldout_envs=["e/h"])
    ledger.fail("critic: cannot reach the endpoint")
    run = ledger.run()
    assert run.status is RunStatus.FAILED and run.error.startswith("critic") and run.finished_at
    assert run.config == {"seeds": 4}  # reconfigured, status untouched by it
    ledger.resume()
    ledger.set_best("cand-1")
    ledger.set_wall(12.5)
    ledger.merge_report(generations=[{"generation": 0}])
    ledger.finish("cand-2", stop_reason=None, wall_s=12.5)
    run = ledger.run()
    assert (run.status, run.best_candidate, run.wall_s) == (RunStatus.DONE, "cand-2", 12.5)
    assert run.report == {"generations": [{"generation": 0}], "stop_reason": None, "wall_s": 12.5}
    assert [r.status for r in history.list_runs(ledger.store)] == ["done"]


def test_a_candidate_follows_the_lane_and_a_rerun_writes_the_same_row(tmp_path):
    ledger = _opened(tmp_path)
    row = CandidateRow(candidate_id="cand-1", run_id="run-a", round=0, source=SOURCE, name="C", genome={"g": 1})
    ledger.add_candidate(row)
    ledger.update_candidate("cand-1", CandidateStatus.CHECKED, check_result={"ok": True})
    ledger.update_candidate("cand-1", CandidateStatus.APPROVED, critic={"approve": True})
    ledger.update_candidate("cand-1", CandidateStatus.SCREENED, evaluation_id="ev-1", screen_evaluation_id="ev-1",
                            stage=1, search_accuracy=50.0)
    ledger.update_candidate("cand-1", CandidateStatus.SCREENED, evaluation_id="ev-1", stage=1)  # a node re-run
    ledger.update_candidate("cand-1", CandidateStatus.EVALUATED, evaluation_id="ev-2", stage=2, search_accuracy=60.0)
    (stored,) = history.candidates(ledger.store, "run-a")
    assert stored.status == "evaluated" and stored.stage == 2 and stored.evaluation_id == "ev-2"
    assert stored.screen_evaluation_id == "ev-1" and stored.check_result == {"ok": True}
    assert stored.code_hash == history.code_hash(SOURCE) and stored.genome == {"g": 1}
    (typed,) = ledger.candidates()
    assert typed.status is CandidateStatus.EVALUATED and typed.search_accuracy == 60.0
    created = stored.created_at
    ledger.add_candidate(row)  # the check node re-run after a crash: pending again, first creation time kept
    (again,) = history.candidates(ledger.store, "run-a")
    assert again.status == "pending" and again.created_at == created


def test_moves_the_lane_cannot_make_and_unknown_columns_are_refused(tmp_path):
    ledger = _opened(tmp_path)
    ledger.add_candidate(CandidateRow(candidate_id="cand-1", run_id="run-a", round=0, source=SOURCE))
    with pytest.raises(LedgerError, match="cannot go from pending to evaluated"):
        ledger.update_candidate("cand-1", CandidateStatus.EVALUATED, stage=2)
    ledger.update_candidate("cand-1", CandidateStatus.CHECK_FAILED, check_result={"ok": False})
    with pytest.raises(LedgerError, match="cannot go from check_failed to approved"):
        ledger.update_candidate("cand-1", CandidateStatus.APPROVED)
    with pytest.raises(ValidationError, match="genome"):
        ledger.update_candidate("cand-1", CandidateStatus.CHECK_FAILED, genome={})
    with pytest.raises(ValueError, match="'promoted' is not a valid CandidateStatus"):
        ledger.update_candidate("cand-1", "promoted")
    with pytest.raises(LedgerError, match="unknown candidate 'cand-x' in run run-a"):
        ledger.update_candidate("cand-x", CandidateStatus.CHECKED)
    with pytest.raises(LedgerError, match="belongs to run run-b"):
        ledger.add_candidate(CandidateRow(candidate_id="cand-2", run_id="run-b", round=0, source=SOURCE))
    with pytest.raises(ValidationError, match="stage"):
        CandidateRow(candidate_id="cand-3", run_id="run-a", round=0, source=SOURCE, stage=3)
    with pytest.raises(LedgerError, match="unknown run 'run-z'"):
        RunLedger(ledger.store, "run-z").merge_report(x=1)
    with pytest.raises(LedgerError, match="needs a run id"):
        RunLedger(ledger.store, "")
    assert issubclass(LedgerError, StoreError)  # one line at the CLI, a failed (resumable) run in the graph


def test_spend_and_diagnoses(tmp_path):
    ledger = _opened(tmp_path)
    ledger.record_spend(SpendRow(round=0, node="prepare", seconds=2.0))
    ledger.record_spend(SpendRow(round=0, node="propose", llm_tokens=10, usd=0.5, seconds=1.0, slot=0,
                                 candidate_id="cand-1"))
    ledger.record_spend(SpendRow(round=0, node="propose", llm_tokens=5, seconds=1.0, slot=1, candidate_id="cand-2"))
    spend = history.run_spend(ledger.store, "run-a")
    assert spend["propose"].model_dump() == {"llm_tokens": 15, "usd": 0.5, "seconds": 2.0, "calls": 2}
    assert set(history.candidate_spend(ledger.store, "run-a")) == {"cand-1", "cand-2"}
    with pytest.raises(ValidationError, match="seconds"):
        SpendRow(round=0, node="x", seconds=-1.0)
    ledger.record_diagnosis("cand-1", 0, {"summary": "first"})
    ledger.record_diagnosis("cand-1", 0, {"summary": "second"})
    assert history.get_diagnoses(ledger.store, "run-a") == {"cand-1": {"summary": "second"}}


def test_a_store_written_before_the_ledger_is_migrated_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path).connect() as con:  # a current file, then made to look like schema 4 with a run in it
        con.execute("ALTER TABLE runs DROP COLUMN wall_s")
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        con.execute("INSERT INTO runs (run_id, status, config, search_envs, heldout_envs) VALUES "
                    "('run-old', 'no_candidate', '{}', ['e/a'], [])")
    run = history.get_run(Store(path), "run-old")  # read-only path: migrated first
    assert run.status == RunStatus.NO_CANDIDATE and run.wall_s is None
    ledger = RunLedger(Store(path), "run-old")
    assert ledger.run().status is RunStatus.NO_CANDIDATE
    ledger.set_wall(3.0)
    assert ledger.run().wall_s == 3.0
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    finally:
        con.close()
