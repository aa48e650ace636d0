"""The history half of the store: runs, candidates, evaluations (points, per-seed outcomes, traces),
diagnoses and spend. Everything a discovery run did is kept here."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from .db import Store, StoreError


def new_id(prefix: str) -> str:
    """A short unique id such as ``ev-3f2a9c1b0d``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def code_hash(source: str) -> str:
    """Hash of a controller source (trailing whitespace per line ignored)."""
    normalised = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(normalised.encode()).hexdigest()[:16]


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


def cached_points(store: Store, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Previously evaluated points by cache key, with outcomes and traces, ready to be recorded again."""
    if not keys:
        return {}
    with store.connect(read_only=True) as con:
        rows = con.execute("""
            SELECT p.cache_key, p.evaluation_id, p.point_index, p.env, p.pack_hash, p.config, p.beta,
                   p.description, p.accuracy, p.avg_cost, p.std_acc, p.params, p.acc_per_seed,
                   p.cost_per_seed, p.seeds
            FROM evaluation_points p JOIN evaluations e USING (evaluation_id)
            WHERE e.status = 'ok' AND list_contains(?, p.cache_key)
            QUALIFY row_number() OVER (PARTITION BY p.cache_key ORDER BY e.created_at) = 1""", [keys]).fetchall()
        found: dict[str, dict[str, Any]] = {}
        for r in rows:
            ev, idx = r[1], r[2]
            outcomes = con.execute("SELECT correct, tokens, answers FROM outcomes WHERE evaluation_id = ? AND"
                                   " point_index = ? ORDER BY seed", [ev, idx]).fetchall()
            traces = con.execute("SELECT seed, question_index, is_correct, cost, answer, steps FROM traces"
                                 " WHERE evaluation_id = ? AND point_index = ? ORDER BY seed, question_index",
                                 [ev, idx]).fetchall()
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


def get_evaluation(store: Store, evaluation_id: str) -> dict[str, Any]:
    """An evaluation's metadata and point summaries (no per-seed outcomes)."""
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT evaluation_id, run_id, candidate_id, code_hash, label, split, protocol, status,"
                          " error, elapsed_s, created_at FROM evaluations WHERE evaluation_id = ?",
                          [evaluation_id]).fetchone()
        if row is None:
            raise StoreError(f"unknown evaluation {evaluation_id!r}")
        points = con.execute("SELECT point_index, env, config, beta, description, accuracy, avg_cost, std_acc,"
                             " params FROM evaluation_points WHERE evaluation_id = ? ORDER BY point_index, env",
                             [evaluation_id]).fetchall()
    keys = ("evaluation_id", "run_id", "candidate_id", "code_hash", "label", "split", "protocol", "status",
            "error", "elapsed_s", "created_at")
    out = dict(zip(keys, row, strict=True))
    out["protocol"] = json.loads(out["protocol"] or "{}")
    out["error"] = json.loads(out["error"]) if out["error"] else None
    out["created_at"] = str(out["created_at"])
    out["points"] = [{"point_index": p[0], "env": p[1], "config": json.loads(p[2]), "beta": p[3],
                      "description": p[4], "accuracy": p[5], "avg_cost": p[6], "std_acc": p[7],
                      "params": json.loads(p[8])} for p in points]
    return out


def get_outcomes(store: Store, evaluation_id: str, env: str | None = None) -> list[dict[str, Any]]:
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
    return [{"point_index": r[0], "env": r[1], "beta": r[2], "seed": r[3], "correct": r[4], "tokens": r[5],
             "answers": r[6]} for r in rows]


def get_traces(store: Store, evaluation_id: str, *, env: str | None = None, beta: float | None = None,
               question_index: int | None = None, failures_only: bool = False, offset: int = 0,
               limit: int = 20) -> tuple[list[dict[str, Any]], int]:
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
    page = [{"env": r[0], "beta": r[1], "point_index": r[2], "seed": r[3], "question_index": r[4],
             "is_correct": r[5], "cost": r[6], "answer": r[7], "steps": json.loads(r[8])} for r in rows]
    return page, total
