"""The run ledger: the one writer of a discovery run's state in the store.

A run (``runs``), its candidates (``candidates``), their diagnoses (``diagnoses``) and the spend of every node
execution (``spend``) are written here and nowhere else; the graph's nodes hold a :class:`RunLedger` bound to
their run. Statuses are enums whose values are the strings stored (and read back by ``history``), so stores
written before the ledger read the same. Rows are pydantic models: a bad value fails at the write, with the
field named, not later in a report.

A candidate's status moves along the lane: ``pending`` → ``checked`` | ``check_failed``; ``checked`` →
``approved`` | ``rejected``; ``approved`` → ``rejected`` (a reviewer) | ``screened`` | ``evaluated`` (no
cascade) | ``crashed``; ``screened`` → ``evaluated`` | ``crashed``; ``evaluated`` → ``flagged`` (the strict audit
of a candidate about to be selected). Writing the status a candidate already
has is allowed (a node re-run after a crash writes the same row again); any other move is a LedgerError.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .db import Store, StoreError
from .history import CANDIDATE_COLS, candidates, code_hash, get_run
from .rows import CandidateRow, CandidateStatus, RunRow, RunStatus

__all__ = ["CandidateRow", "CandidateStatus", "CandidateUpdate", "LedgerError", "RunLedger", "RunRow", "RunStatus",
           "SpendRow"]


_NEXT: dict[CandidateStatus, frozenset[CandidateStatus]] = {
    CandidateStatus.PENDING: frozenset({CandidateStatus.CHECKED, CandidateStatus.CHECK_FAILED}),
    CandidateStatus.CHECKED: frozenset({CandidateStatus.APPROVED, CandidateStatus.REJECTED}),
    CandidateStatus.APPROVED: frozenset({CandidateStatus.REJECTED, CandidateStatus.SCREENED,
                                         CandidateStatus.EVALUATED, CandidateStatus.CRASHED}),
    CandidateStatus.SCREENED: frozenset({CandidateStatus.EVALUATED, CandidateStatus.CRASHED}),
    CandidateStatus.EVALUATED: frozenset({CandidateStatus.FLAGGED}),
}

_STATUS_OF = {s.value: s for s in CandidateStatus}


class LedgerError(StoreError):
    """A write the ledger refuses (unknown run or candidate, a status move the lane cannot make)."""


class CandidateUpdate(BaseModel):
    """The columns a lane node may set on a candidate besides its status (None leaves a column as it is)."""

    model_config = ConfigDict(extra="forbid")

    check_result: dict[str, Any] | None = None
    critic: dict[str, Any] | None = None
    evaluation_id: str | None = None
    search_accuracy: float | None = None
    stage: int | None = Field(None, ge=1, le=2)
    screen_evaluation_id: str | None = None


class SpendRow(BaseModel):
    """One node execution's spend; a lane node names its slot and the candidate it worked on."""

    round: int = Field(ge=0)
    node: str = Field(min_length=1)
    llm_tokens: int = Field(0, ge=0)
    usd: float = Field(0.0, ge=0)
    seconds: float = Field(0.0, ge=0)
    slot: int | None = None
    candidate_id: str | None = None


class LLMCallRow(BaseModel):
    """One LLM call of a node execution (``graph/agents/client.py``'s ``CallRecord`` with where it happened)."""

    round: int = Field(ge=0)
    node: str = Field(min_length=1)
    role: str = Field(min_length=1)
    model: str = ""
    mode: str = ""
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    usage: str = "server"  # server: the server's usage figures; estimated: a call cut off before it sent any
    seconds: float = Field(0.0, ge=0)
    outcome: str = "ok"
    error: str = ""
    slot: int | None = None
    candidate_id: str | None = None


LLM_CALL_COLS = ("round", "slot", "candidate_id", "node", "role", "model", "mode", "prompt_tokens",
                 "completion_tokens", "usage", "seconds", "outcome", "error")
_CAND_COLS = tuple(c for c in CANDIDATE_COLS if c != "created_at")  # the creation time is the store's own
_JSON_COLS = frozenset({"check_result", "critic", "genome"})


def _json(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None


class RunLedger:
    """The writer of one run's state (see the module docstring); reads come back as row models."""

    def __init__(self, store: Store, run_id: str) -> None:
        if not run_id:
            raise LedgerError("a run ledger needs a run id")
        self.store = store
        self.run_id = run_id

    # ---- the run -------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the run is recorded."""
        with self.store.connect(read_only=True) as con:
            return bool(con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [self.run_id]).fetchone()[0])

    def open(self, *, config: dict[str, Any], search_envs: list[str], heldout_envs: list[str]) -> None:
        """Record the run as running with its (resolved) configuration; a run recorded before keeps its rows
        and gets the configuration (a run re-opened after a failed start)."""
        with self.store.connect() as con:
            if con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [self.run_id]).fetchone()[0]:
                con.execute("UPDATE runs SET config = ?, search_envs = ?, heldout_envs = ?, status = ? "
                            "WHERE run_id = ?", [json.dumps(config), search_envs, heldout_envs,
                                                 RunStatus.RUNNING.value, self.run_id])
            else:
                con.execute("INSERT INTO runs (run_id, status, config, search_envs, heldout_envs) "
                            "VALUES (?, ?, ?, ?, ?)", [self.run_id, RunStatus.RUNNING.value, json.dumps(config),
                                                       search_envs, heldout_envs])

    def reconfigure(self, *, config: dict[str, Any], search_envs: list[str], heldout_envs: list[str]) -> None:
        """Store a changed configuration (a resume's new budget or role), keeping the status."""
        self._set(config=json.dumps(config), search_envs=search_envs, heldout_envs=heldout_envs)

    def resume(self) -> None:
        """Mark a stopped run running again."""
        self._set(status=RunStatus.RUNNING.value)

    def fail(self, error: str) -> None:
        """The run stopped on an error (it can be resumed from its checkpoint)."""
        self._set(status=RunStatus.FAILED.value, error=error, finished=True)

    def finish(self, best_candidate: str, **report: Any) -> None:
        """The run is done: its selected candidate and the last report fields."""
        self._set(status=RunStatus.DONE.value, best_candidate=best_candidate, finished=True)
        self.merge_report(**report)

    def no_candidate(self, reason: str, **report: Any) -> None:
        """The run finished without a candidate to select."""
        self._set(status=RunStatus.NO_CANDIDATE.value, error=reason, finished=True)
        self.merge_report(**report)

    def set_best(self, candidate_id: str) -> None:
        """The best candidate so far."""
        self._set(best_candidate=candidate_id)

    def set_wall(self, seconds: float) -> None:
        """The run's wall time so far (the graph's own count: each generation's slowest lane, not their sum)."""
        self._set(wall_s=float(seconds))

    def merge_report(self, **fields: Any) -> None:
        """Set some keys of the run's report, keeping the others."""
        if not fields:
            return
        with self.store.connect() as con:
            row = con.execute("SELECT report FROM runs WHERE run_id = ?", [self.run_id]).fetchone()
            if row is None:
                raise LedgerError(f"unknown run {self.run_id!r}")
            report = json.loads(row[0]) if row[0] else {}
            report.update(fields)
            con.execute("UPDATE runs SET report = ? WHERE run_id = ?", [json.dumps(report), self.run_id])

    def run(self) -> RunRow:
        """The run's row (StoreError when it is not recorded)."""
        return get_run(self.store, self.run_id)

    def _set(self, *, finished: bool = False, **cols: Any) -> None:
        sets = [f"{col} = ?" for col in cols]
        if finished:
            sets.append("finished_at = current_timestamp")
        with self.store.connect() as con:
            con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", [*cols.values(), self.run_id])

    # ---- candidates ----------------------------------------------------------------------------------

    def add_candidate(self, row: CandidateRow) -> None:
        """Insert or replace a candidate by id (idempotent: a node re-run after a crash writes the same row; the
        first creation time is kept)."""
        if row.run_id != self.run_id:
            raise LedgerError(f"candidate {row.candidate_id} belongs to run {row.run_id}, not {self.run_id}")
        values = row.model_dump()
        values["code_hash"] = code_hash(row.source)
        values["status"] = row.status.value
        args = [_json(values[c]) if c in _JSON_COLS else values[c] for c in _CAND_COLS]
        with self.store.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                created = con.execute("SELECT created_at FROM candidates WHERE candidate_id = ?",
                                      [row.candidate_id]).fetchone()
                con.execute("DELETE FROM candidates WHERE candidate_id = ?", [row.candidate_id])
                con.execute(f"INSERT INTO candidates ({', '.join(_CAND_COLS)}, created_at) VALUES "
                            f"({', '.join(['?'] * len(_CAND_COLS))}, coalesce(?, current_timestamp))",
                            [*args, created[0] if created else None])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def update_candidate(self, candidate_id: str, status: CandidateStatus, **fields: Any) -> None:
        """Move a candidate to ``status`` and set the given columns (``CandidateUpdate``'s)."""
        status = CandidateStatus(status)
        update = CandidateUpdate.model_validate(fields)
        cols = {c: v for c, v in update.model_dump().items() if c in update.model_fields_set}
        args = [_json(v) if c in _JSON_COLS else v for c, v in cols.items()]
        with self.store.connect() as con:
            row = con.execute("SELECT status FROM candidates WHERE candidate_id = ? AND run_id = ?",
                              [candidate_id, self.run_id]).fetchone()
            if row is None:
                raise LedgerError(f"unknown candidate {candidate_id!r} in run {self.run_id}")
            now = _STATUS_OF.get(row[0])  # None: a status this version does not know; no rule to apply
            if now is not None and status != now and status not in _NEXT.get(now, ()):
                raise LedgerError(f"candidate {candidate_id} cannot go from {now} to {status}")
            sets = ["status = ?", *(f"{c} = ?" for c in cols)]
            con.execute(f"UPDATE candidates SET {', '.join(sets)} WHERE candidate_id = ?",
                        [status.value, *args, candidate_id])

    def candidates(self) -> list[CandidateRow]:
        """The run's candidates in a reproducible order (generation, slot, attempt)."""
        return candidates(self.store, self.run_id)

    def record_diagnosis(self, candidate_id: str, round: int, diagnosis: dict[str, Any]) -> None:
        """A candidate's diagnosis (replacing an earlier one of the same candidate)."""
        with self.store.connect() as con:
            con.execute("DELETE FROM diagnoses WHERE run_id = ? AND candidate_id = ?", [self.run_id, candidate_id])
            con.execute("INSERT INTO diagnoses (run_id, candidate_id, round, diagnosis) VALUES (?, ?, ?, ?)",
                        [self.run_id, candidate_id, round, json.dumps(diagnosis)])

    # ---- spend ---------------------------------------------------------------------------------------

    def record_spend(self, row: SpendRow) -> None:
        """Append one node execution's spend (LLM tokens, dollars, wall seconds)."""
        with self.store.connect() as con:
            con.execute("INSERT INTO spend (run_id, round, node, llm_tokens, usd, seconds, slot, candidate_id)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [self.run_id, row.round, row.node, row.llm_tokens, row.usd, row.seconds, row.slot,
                         row.candidate_id])

    def record_llm_calls(self, rows: list[LLMCallRow]) -> None:
        """Append the LLM calls of one node execution."""
        if not rows:
            return
        with self.store.connect() as con:
            con.executemany(f"INSERT INTO llm_calls (run_id, {', '.join(LLM_CALL_COLS)}) VALUES "
                            f"({', '.join(['?'] * (len(LLM_CALL_COLS) + 1))})",
                            [[self.run_id, *(getattr(r, c) for c in LLM_CALL_COLS)] for r in rows])


def llm_calls(store: Store, run_id: str) -> list[LLMCallRow]:
    """Every LLM call of a run, in the order made."""
    with store.connect(read_only=True) as con:
        rows = con.execute(f"SELECT {', '.join(LLM_CALL_COLS)} FROM llm_calls WHERE run_id = ? ORDER BY created_at",
                           [run_id]).fetchall()
    return [LLMCallRow(**dict(zip(LLM_CALL_COLS, r, strict=True))) for r in rows]


def llm_usage_by_role(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """Per role: calls, failed calls (by reason), prompt and completion tokens, seconds (total, mean, max), and
    how many calls were counted by the client rather than the server."""
    out: dict[str, dict[str, Any]] = {}
    for r in llm_calls(store, run_id):
        row = out.setdefault(r.role, {"calls": 0, "failed": {}, "prompt_tokens": 0, "completion_tokens": 0,
                                      "seconds": 0.0, "max_seconds": 0.0, "estimated": 0, "models": []})
        row["calls"] += 1
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["seconds"] += r.seconds
        row["max_seconds"] = max(row["max_seconds"], r.seconds)
        row["estimated"] += r.usage != "server"
        if r.outcome != "ok":
            row["failed"][r.outcome] = row["failed"].get(r.outcome, 0) + 1
        if r.model not in row["models"]:
            row["models"].append(r.model)
    for row in out.values():
        row["mean_seconds"] = row["seconds"] / row["calls"] if row["calls"] else 0.0
    return out
