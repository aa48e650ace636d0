"""The history half of the store: runs, candidates, evaluations (points, per-seed outcomes, traces),
diagnoses and spend. Everything a discovery run did is kept here.

Evaluations and the program archive are written here; a run's own state (the run, its candidates, their
diagnoses and the spend per node) is written by the run ledger (``store/ledger.py``) and read back here.
Reads return the row models of ``store/rows.py``."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from .db import Store, StoreError
from .rows import (
    ArchiveRow,
    CandidateRow,
    EvaluationRow,
    EvaluationSummary,
    OutcomeRow,
    PointRow,
    PointSummary,
    RunRow,
    RunTotals,
    SpendTotals,
    TraceRow,
)


def new_id(prefix: str) -> str:
    """A short unique id such as ``ev-3f2a9c1b0d``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def code_hash(source: str) -> str:
    """Identity of one program: the hash of its exact source text. Never of a normalised text: a line
    break that ``str.splitlines`` knows and Python's tokenizer does not (U+2028, \\x0c, ...) would make two
    different programs one, and let one take the other's cached figures."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(code: str, pack_hash: str, config: dict, seeds: list[int], trace_seeds: list[int],
              runtime_hash: str) -> str:
    """Identity of one evaluated point: same code, data, protocol and runtime give the same numbers."""
    body = json.dumps([code, pack_hash, config, seeds, trace_seeds, runtime_hash], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def record_evaluation(store: Store, *, evaluation_id: str, code: str, label: str, split: str,
                      protocol: dict, points: list[dict], status: str = "ok", error: dict | None = None,
                      elapsed_s: float = 0.0, run_id: str | None = None, candidate_id: str | None = None) -> None:
    """Write an evaluation and all its points, per-seed outcomes and sampled traces in one transaction.

    Each point dict is the runtime's result plus ``point_index``, ``pack_hash``, ``cache_key`` and ``beta``.
    """
    p_cols: list[list] = [[] for _ in range(15)]
    o_cols: list[list] = [[] for _ in range(7)]
    t_cols: list[list] = [[] for _ in range(9)]
    for pt in points:
        idx, env = pt["point_index"], pt["env"]
        for col, val in zip(p_cols, (evaluation_id, idx, env, pt["pack_hash"], pt["cache_key"],
                                     json.dumps(pt["config"]), pt.get("beta"), pt["description"], pt["accuracy"],
                                     pt["avg_cost"], pt["std_acc"], json.dumps(pt["params"]), pt["acc_per_seed"],
                                     pt["cost_per_seed"], pt["seeds"]), strict=True):
            col.append(val)
        for seed, correct, tokens, answers in zip(pt["seeds"], pt["correct"], pt["tokens"], pt["answers"],
                                                  strict=True):
            for col, val in zip(o_cols, (evaluation_id, idx, env, seed, [bool(c) for c in correct], tokens,
                                         answers), strict=True):
                col.append(val)
        for tr in pt["traces"]:
            for col, val in zip(t_cols, (evaluation_id, idx, env, tr["shuffle_seed"], tr["question_index"],
                                         tr["is_correct"], tr["cost"], tr["answer"], json.dumps(tr["trace"])),
                                strict=True):
                col.append(val)
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("INSERT INTO evaluations (evaluation_id, run_id, candidate_id, code_hash, label, split,"
                        " protocol, status, error, elapsed_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [evaluation_id, run_id, candidate_id, code, label, split, json.dumps(protocol), status,
                         json.dumps(error) if error else None, elapsed_s])
            if points:
                con.execute("INSERT INTO evaluation_points SELECT " + ", ".join(["UNNEST(?)"] * 15), p_cols)
                con.execute("INSERT INTO outcomes SELECT " + ", ".join(["UNNEST(?)"] * 7), o_cols)
            if t_cols[0]:
                con.execute("INSERT INTO traces SELECT " + ", ".join(["UNNEST(?)"] * 9), t_cols)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def cached_points(store: Store, keys: list[str], strict_audit: bool = False) -> dict[str, dict[str, Any]]:
    """Previously evaluated points by cache key, with outcomes and traces, ready to be recorded again
    (with ``strict_audit``, only points of evaluations that passed the strict audit)."""
    if not keys:
        return {}
    with store.connect(read_only=True) as con:
        rows = con.execute("""
            SELECT p.cache_key, p.evaluation_id, p.point_index, p.env, p.pack_hash, p.config, p.beta,
                   p.description, p.accuracy, p.avg_cost, p.std_acc, p.params, p.acc_per_seed,
                   p.cost_per_seed, p.seeds
            FROM evaluation_points p JOIN evaluations e USING (evaluation_id)
            WHERE e.status = 'ok' AND list_contains(?, p.cache_key)
              AND (NOT ? OR coalesce(json_extract_string(e.protocol, '$.audit'), '') = 'strict')
            QUALIFY row_number() OVER (PARTITION BY p.cache_key ORDER BY e.created_at) = 1""",
                           [keys, strict_audit]).fetchall()
        found: dict[str, dict[str, Any]] = {}
        for r in rows:
            where = [r[1], r[2], r[3]]  # evaluation, point, env
            outcomes = con.execute("SELECT correct, tokens, answers FROM outcomes WHERE evaluation_id = ? AND"
                                   " point_index = ? AND env = ? ORDER BY seed", where).fetchall()
            traces = con.execute("SELECT seed, question_index, is_correct, cost, answer, steps FROM traces"
                                 " WHERE evaluation_id = ? AND point_index = ? AND env = ?"
                                 " ORDER BY seed, question_index", where).fetchall()
            found[r[0]] = {
                "env": r[3], "pack_hash": r[4], "config": json.loads(r[5]), "beta": r[6], "description": r[7],
                "accuracy": r[8], "avg_cost": r[9], "std_acc": r[10], "params": json.loads(r[11]),
                "acc_per_seed": r[12], "cost_per_seed": r[13], "seeds": r[14], "cache_key": r[0],
                "correct": [[int(c) for c in o[0]] for o in outcomes], "tokens": [o[1] for o in outcomes],
                "answers": [o[2] for o in outcomes],
                "traces": [{"shuffle_seed": t[0], "question_index": t[1], "is_correct": t[2], "cost": t[3],
                            "answer": t[4], "trace": json.loads(t[5])} for t in traces],
            }
    return found


def get_evaluation(store: Store, evaluation_id: str) -> EvaluationRow:
    """An evaluation's metadata and point summaries (no per-seed outcomes); StoreError when unknown."""
    found = get_evaluations(store, [evaluation_id])
    if evaluation_id not in found:
        raise StoreError(f"unknown evaluation {evaluation_id!r}")
    return found[evaluation_id]


def get_evaluations(store: Store, evaluation_ids: list[str]) -> dict[str, EvaluationRow]:
    """Many evaluations with their points in two queries, by id (unknown ids are left out)."""
    if not evaluation_ids:
        return {}
    with store.connect(read_only=True) as con:
        evs = con.execute(f"SELECT {', '.join(_EVAL_COLS)} FROM evaluations WHERE list_contains(?, evaluation_id)",
                          [evaluation_ids]).fetchall()
        pts = con.execute(f"SELECT evaluation_id, {', '.join(_POINT_COLS)} FROM evaluation_points"
                          " WHERE list_contains(?, evaluation_id) ORDER BY evaluation_id, point_index, env",
                          [evaluation_ids]).fetchall()
    points: dict[str, list[PointRow]] = {}
    for r in pts:
        d = dict(zip(_POINT_COLS, r[1:], strict=True))
        d["config"], d["params"] = json.loads(d["config"] or "{}"), json.loads(d["params"] or "{}")
        points.setdefault(r[0], []).append(PointRow.model_validate(d))
    out = {}
    for r in evs:
        d = dict(zip(_EVAL_COLS, r, strict=True))
        d["protocol"] = json.loads(d["protocol"] or "{}")
        d["error"] = json.loads(d["error"]) if d["error"] else None
        d["created_at"] = str(d["created_at"])
        out[d["evaluation_id"]] = EvaluationRow(**d, points=points.get(d["evaluation_id"], []))
    return out


_EVAL_COLS = ("evaluation_id", "run_id", "candidate_id", "code_hash", "label", "split", "protocol", "status", "error",
              "elapsed_s", "created_at")
_POINT_COLS = ("point_index", "env", "config", "beta", "description", "accuracy", "avg_cost", "std_acc", "params")


def get_outcomes(store: Store, evaluation_id: str, env: str | None = None) -> list[OutcomeRow]:
    """Per-seed outcomes (correct, tokens, answers per question) of an evaluation."""
    sql = ("SELECT o.point_index, o.env, p.beta, o.seed, o.correct, o.tokens, o.answers FROM outcomes o"
           " JOIN evaluation_points p ON p.evaluation_id = o.evaluation_id AND p.point_index = o.point_index"
           " AND p.env = o.env WHERE o.evaluation_id = ?")
    args: list[Any] = [evaluation_id]
    if env is not None:
        sql += " AND o.env = ?"
        args.append(env)
    with store.connect(read_only=True) as con:
        rows = con.execute(sql + " ORDER BY o.env, o.point_index, o.seed", args).fetchall()
    return [OutcomeRow(point_index=r[0], env=r[1], beta=r[2], seed=r[3], correct=r[4], tokens=r[5], answers=r[6])
            for r in rows]


def get_traces(store: Store, evaluation_id: str, *, env: str | None = None, beta: float | None = None,
               question_index: int | None = None, failures_only: bool = False, offset: int = 0,
               limit: int = 20) -> tuple[list[TraceRow], int]:
    """Sampled traces of an evaluation with filters, paginated; returns (page, total matching)."""
    where = ["t.evaluation_id = ?"]
    args: list[Any] = [evaluation_id]
    if env is not None:
        where.append("t.env = ?")
        args.append(env)
    if beta is not None:
        where.append("abs(p.beta - ?) < 1e-9")
        args.append(beta)
    if question_index is not None:
        where.append("t.question_index = ?")
        args.append(question_index)
    if failures_only:
        where.append("NOT t.is_correct")
    body = (" FROM traces t JOIN evaluation_points p ON p.evaluation_id = t.evaluation_id AND"
            " p.point_index = t.point_index AND p.env = t.env WHERE " + " AND ".join(where))
    with store.connect(read_only=True) as con:
        total = con.execute("SELECT count(*)" + body, args).fetchone()[0]
        rows = con.execute("SELECT t.env, p.beta, t.point_index, t.seed, t.question_index, t.is_correct, t.cost,"
                           " t.answer, t.steps" + body + " ORDER BY t.env, t.point_index, t.seed, t.question_index"
                           " LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
    page = [TraceRow(env=r[0], beta=r[1], point_index=r[2], seed=r[3], question_index=r[4], is_correct=r[5],
                     cost=r[6], answer=r[7], steps=json.loads(r[8]) or []) for r in rows]
    return page, total


# ---- discovery runs (graph/): runs, candidates, diagnoses, spend, read back ------------------------------
# Written by store/ledger.py only (the run ledger, with its status enums); the row models are store/rows.py's.

_RUN_COLS = ("run_id", "created_at", "status", "config", "search_envs", "heldout_envs", "best_candidate", "report",
             "finished_at", "error", "wall_s")
CANDIDATE_COLS = ("candidate_id", "run_id", "round", "attempt", "code_hash", "source", "parent", "origin", "name",
                  "rationale", "status", "check_result", "critic", "evaluation_id", "search_accuracy", "genome",
                  "slot", "stage", "screen_evaluation_id", "created_at")
_CANDIDATE_JSON = ("check_result", "critic", "genome")


def _run_row(row: tuple) -> RunRow:
    d = dict(zip(_RUN_COLS, row, strict=True))
    d["config"] = json.loads(d["config"] or "{}")
    d["report"] = json.loads(d["report"]) if d["report"] else None
    d["created_at"] = str(d["created_at"])
    d["finished_at"] = str(d["finished_at"]) if d["finished_at"] else None
    return RunRow.model_validate(d)


def get_run(store: Store, run_id: str) -> RunRow:
    """A run's row; StoreError when unknown."""
    with store.connect(read_only=True) as con:
        row = con.execute(f"SELECT {', '.join(_RUN_COLS)} FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise StoreError(f"unknown run {run_id!r} (see `autotts-graph report --list`)")
    return _run_row(row)


def list_runs(store: Store) -> list[RunRow]:
    """Every run, newest first."""
    with store.connect(read_only=True) as con:
        rows = con.execute(f"SELECT {', '.join(_RUN_COLS)} FROM runs ORDER BY created_at DESC, run_id").fetchall()
    return [_run_row(r) for r in rows]


def candidates(store: Store, run_id: str, candidate_ids: list[str] | None = None) -> list[CandidateRow]:
    """A run's candidates (or the named ones) in a reproducible order: generation, slot, attempt, then creation.
    Candidates of one generation are created concurrently: their creation times are not an order a seeded run
    may depend on."""
    sql, args = f"SELECT {', '.join(CANDIDATE_COLS)} FROM candidates WHERE run_id = ?", [run_id]
    if candidate_ids is not None:
        sql += " AND list_contains(?, candidate_id)"
        args.append(candidate_ids)
    with store.connect(read_only=True) as con:
        rows = con.execute(sql + " ORDER BY round, coalesce(slot, 0), coalesce(attempt, 0), created_at, candidate_id",
                           args).fetchall()
    out = []
    for r in rows:
        d = dict(zip(CANDIDATE_COLS, r, strict=True))
        for col in _CANDIDATE_JSON:
            d[col] = json.loads(d[col]) if d[col] else None
        d["created_at"] = str(d["created_at"])
        out.append(CandidateRow.model_validate(d))
    return out


def get_candidate(store: Store, run_id: str, candidate_id: str) -> CandidateRow:
    """One candidate of a run; StoreError when the run has no such candidate."""
    found = candidates(store, run_id, [candidate_id])
    if not found:
        raise StoreError(f"unknown candidate {candidate_id!r} in run {run_id!r}")
    return found[0]


def list_candidates(store: Store, run_id: str) -> list[dict[str, Any]]:
    """``candidates`` as plain dicts, for the one reader not yet on the rows (graph/agents/tools.py)."""
    return [c.model_dump() for c in candidates(store, run_id)]


def find_evaluation(store: Store, *, run_id: str, candidate_id: str, split: str,
                    label_prefix: str | None = None) -> str | None:
    """The id of the latest finished evaluation of a run's candidate on a split (None if there is none);
    ``label_prefix`` picks one kind (the cascade labels its screens ``screen …``)."""
    sql = "SELECT evaluation_id FROM evaluations WHERE run_id = ? AND candidate_id = ? AND split = ?"
    args: list[Any] = [run_id, candidate_id, split]
    if label_prefix is not None:
        sql += " AND starts_with(label, ?)"
        args.append(label_prefix)
    with store.connect(read_only=True) as con:
        row = con.execute(sql + " ORDER BY created_at DESC LIMIT 1", args).fetchone()
    return row[0] if row else None


def count_evaluations(store: Store, *, run_id: str, candidate_id: str | None = None,
                      split: str | None = None) -> int:
    """How many evaluations a run (or one of its candidates, on a split) recorded."""
    sql, args = "SELECT count(*) FROM evaluations WHERE run_id = ?", [run_id]
    for col, val in (("candidate_id", candidate_id), ("split", split)):
        if val is not None:
            sql += f" AND {col} = ?"
            args.append(val)
    with store.connect(read_only=True) as con:
        return int(con.execute(sql, args).fetchone()[0])


def run_evaluations(store: Store, run_id: str, candidate_id: str | None = None) -> list[EvaluationSummary]:
    """Every evaluation recorded under a run (or one of its candidates): screens, full evaluations, held-out
    ones; without points, oldest first (the point summaries are ``evaluation_points``')."""
    sql, args = "SELECT evaluation_id, split, status, candidate_id, label FROM evaluations WHERE run_id = ?", [run_id]
    if candidate_id is not None:
        sql += " AND candidate_id = ?"
        args.append(candidate_id)
    with store.connect(read_only=True) as con:
        rows = con.execute(sql + " ORDER BY created_at, evaluation_id", args).fetchall()
    return [EvaluationSummary(evaluation_id=r[0], split=r[1], status=r[2], candidate_id=r[3], label=r[4])
            for r in rows]


def get_diagnoses(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """Diagnoses of a run by candidate id (each the diagnostician's JSON document, graph/agents/roles.Diagnosis)."""
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT candidate_id, diagnosis FROM diagnoses WHERE run_id = ? ORDER BY created_at",
                           [run_id]).fetchall()
    return {r[0]: json.loads(r[1]) for r in rows}


def _spend(sql: str, args: list[Any], store: Store) -> dict[str, SpendTotals]:
    with store.connect(read_only=True) as con:
        rows = con.execute(sql, args).fetchall()
    return {r[0]: SpendTotals(llm_tokens=int(r[1] or 0), usd=float(r[2] or 0), seconds=float(r[3] or 0),
                              calls=int(r[4])) for r in rows}


def candidate_spend(store: Store, run_id: str) -> dict[str, SpendTotals]:
    """Spend of a run per candidate (lane nodes only)."""
    return _spend("SELECT candidate_id, sum(llm_tokens), sum(usd), sum(seconds), count(*) FROM spend WHERE run_id = ?"
                  " AND candidate_id IS NOT NULL GROUP BY candidate_id ORDER BY candidate_id", [run_id], store)


def run_spend(store: Store, run_id: str) -> dict[str, SpendTotals]:
    """Spend of a run per node."""
    return _spend("SELECT node, sum(llm_tokens), sum(usd), sum(seconds), count(*) FROM spend WHERE run_id = ?"
                  " GROUP BY node ORDER BY node", [run_id], store)


def spend_by_run(store: Store) -> dict[str, SpendTotals]:
    """Spend summed per run, for every run (one query)."""
    return _spend("SELECT run_id, sum(llm_tokens), sum(usd), sum(seconds), count(*) FROM spend GROUP BY run_id"
                  " ORDER BY run_id", [], store)


def run_totals(store: Store) -> dict[str, RunTotals]:
    """Every run's counts (candidates and generations proposed, archive members screened and fully evaluated, the
    best full fitness) in two queries."""
    with store.connect(read_only=True) as con:
        cands = con.execute("SELECT run_id, count(DISTINCT round), count(*) FROM candidates GROUP BY run_id").fetchall()
        arch = con.execute("SELECT run_id, count(*), count(*) FILTER (WHERE stage >= 2),"
                           " max(fitness) FILTER (WHERE stage >= 2) FROM archive WHERE migrated_from IS NULL"
                           " GROUP BY run_id").fetchall()
    out = {r[0]: RunTotals(run_id=r[0], generations=r[1], candidates=r[2]) for r in cands}
    for run_id, screened, full, best in arch:
        row = out.setdefault(run_id, RunTotals(run_id=run_id))
        row.screened, row.fully_evaluated, row.best_fitness = screened, full, best
    return out


# ---- the program archive (graph/archive.py): MAP-Elites niches x islands -----------------------------------

ARCHIVE_COLS = tuple(ArchiveRow.model_fields)


def record_archive(store: Store, rows: list[ArchiveRow]) -> None:
    """Insert or replace archive members, keyed by (run, candidate, island): a fan-in re-run after a crash
    writes the same rows, and a migrant is a second row of the same candidate on another island."""
    if not rows:
        return
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for row in rows:
                con.execute("DELETE FROM archive WHERE run_id = ? AND candidate_id = ? AND island = ?",
                            [row.run_id, row.candidate_id, row.island])
                con.execute(f"INSERT INTO archive ({', '.join(ARCHIVE_COLS)}) VALUES "
                            f"({', '.join(['?'] * len(ARCHIVE_COLS))})", [getattr(row, c) for c in ARCHIVE_COLS])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def list_archive(store: Store, run_id: str) -> list[ArchiveRow]:
    """A run's archive members in a reproducible order (generation, slot, island)."""
    with store.connect(read_only=True) as con:
        rows = con.execute(f"SELECT {', '.join(ARCHIVE_COLS)} FROM archive WHERE run_id = ?"
                           " ORDER BY generation, slot, island", [run_id]).fetchall()
    return [ArchiveRow.model_validate(dict(zip(ARCHIVE_COLS, r, strict=True))) for r in rows]


def evaluation_points(store: Store, evaluation_ids: list[str]) -> dict[str, EvaluationSummary]:
    """Split, status and point summaries of many evaluations in one query, by id."""
    if not evaluation_ids:
        return {}
    with store.connect(read_only=True) as con:
        evs = con.execute("SELECT evaluation_id, split, status, candidate_id, label FROM evaluations"
                          " WHERE list_contains(?, evaluation_id)", [evaluation_ids]).fetchall()
        pts = con.execute("SELECT evaluation_id, env, beta, accuracy, avg_cost FROM evaluation_points"
                          " WHERE list_contains(?, evaluation_id) ORDER BY evaluation_id, point_index, env",
                          [evaluation_ids]).fetchall()
    out = {r[0]: EvaluationSummary(evaluation_id=r[0], split=r[1], status=r[2], candidate_id=r[3], label=r[4])
           for r in evs}
    for eid, env, beta, acc, cost in pts:
        out[eid].points.append(PointSummary(env=env, beta=beta, accuracy=acc, avg_cost=cost))
    return out
