"""Import, validate, export and describe AutoTTS replay environments in the store."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .db import Store, StoreError
from .packs import key_path, pack_stem, write_pack

SPLITS = ("search", "heldout")
RECORD_KEYS = ("question", "gold_answer", "probe_freq", "each_branch", "final_answers_trace")


class EnvironmentInfo(BaseModel):
    """One row of ``store ls``."""

    name: str
    model: str
    dataset: str
    n_questions: int
    n_branches: int
    probe_freq: int
    mean_branch_tokens: float
    single_branch_accuracy: float
    origin: str
    content_hash: str
    split: str


def env_name_from_path(path: Path) -> tuple[str, str]:
    """(model, dataset) from the AutoTTS layout ``<Model>/<dataset>.json[.gz]``."""
    dataset = path.name.removesuffix(".gz").removesuffix(".json")
    return path.parent.name, dataset


def read_records(path: Path) -> list[dict]:
    """Parse a replay file (``.json`` or ``.json.gz``); one-line errors name the file."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: invalid JSON ({exc})") from None
    validate_records(data, str(path))
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_records(data: Any, where: str) -> None:
    """Check the AutoTTS record format (docs/replay-and-contract.md §1); raise StoreError naming question/branch."""
    if not isinstance(data, list):
        raise StoreError(f"{where}: expected a JSON array of question records, got {type(data).__name__}")
    if not data:
        raise StoreError(f"{where}: the file holds no questions")
    for qi, rec in enumerate(data):
        at = f"{where}: question {qi}"
        if not isinstance(rec, dict):
            raise StoreError(f"{at}: expected an object, got {type(rec).__name__}")
        for key in ("gold_answer", "probe_freq", "each_branch"):
            if key not in rec:
                raise StoreError(f"{at}: missing field '{key}'")
        unknown = set(rec) - set(RECORD_KEYS)
        if unknown:
            raise StoreError(f"{at}: unknown field(s) {sorted(unknown)}")
        if not isinstance(rec.get("question", ""), str):
            raise StoreError(f"{at}: 'question' must be a string")
        if not isinstance(rec["gold_answer"], str):
            raise StoreError(f"{at}: 'gold_answer' must be a string, got {type(rec['gold_answer']).__name__}")
        if not _is_int(rec["probe_freq"]) or rec["probe_freq"] <= 0:
            raise StoreError(f"{at}: 'probe_freq' must be a positive integer, got {rec['probe_freq']!r}")
        branches = rec["each_branch"]
        if not isinstance(branches, list) or not branches:
            raise StoreError(f"{at}: 'each_branch' must be a non-empty list of branches")
        for bi, br in enumerate(branches):
            bat = f"{at}, branch {bi}"
            if not isinstance(br, list) or len(br) != 3:
                raise StoreError(f"{bat}: expected [probe_answers, branch_tokens, final_answer]")
            probes, tokens, final = br
            if not isinstance(probes, list) or not all(isinstance(a, str) for a in probes):
                raise StoreError(f"{bat}: probe_answers must be a list of strings")
            if not _is_int(tokens) or tokens < 0:
                raise StoreError(f"{bat}: branch_tokens must be a non-negative integer, got {tokens!r}")
            if not isinstance(final, str):
                raise StoreError(f"{bat}: final_answer must be a string, got {type(final).__name__}")
        trace = rec.get("final_answers_trace", [])
        if not isinstance(trace, list) or not all(isinstance(a, str) for a in trace):
            raise StoreError(f"{at}: 'final_answers_trace' must be a list of strings")


def content_hash(records: list[dict]) -> str:
    """Hash of the records' JSON value (independent of key order and formatting)."""
    canon = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def import_records(store: Store, model: str, dataset: str, records: list[dict], *, source: str = "",
                   origin: str = "import", spec: dict | None = None, replace: bool = False,
                   split: str = "search") -> tuple[str, bool]:
    """Store validated records as environment ``model/dataset`` in one transaction.

    Returns (name, created). Re-importing identical content is a no-op; different content under an
    existing name needs ``replace``. ``split`` tags the environment ``search`` or ``heldout``: held-out
    environments are hidden from agents and tools unless explicitly exposed.
    """
    if split not in SPLITS:
        raise StoreError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    name = f"{model}/{dataset}"
    validate_records(records, source or name)
    digest = content_hash(records)
    q_rows: list[list] = [[] for _ in range(7)]
    b_rows: list[list] = [[] for _ in range(6)]
    for qi, rec in enumerate(records):
        for col, val in zip(q_rows, (name, qi, rec.get("question"), rec["gold_answer"], rec["probe_freq"],
                                     rec.get("final_answers_trace"), list(rec)), strict=True):
            col.append(val)
        for bi, (probes, tokens, final) in enumerate(rec["each_branch"]):
            for col, val in zip(b_rows, (name, qi, bi, probes, tokens, final), strict=True):
                col.append(val)
    n_branches = max(len(r["each_branch"]) for r in records)
    freqs = {r["probe_freq"] for r in records}
    with store.connect() as con:
        existing = con.execute("SELECT content_hash FROM environments WHERE name = ?", [name]).fetchone()
        if existing and existing[0] == digest:
            return name, False
        if existing and not replace:
            raise StoreError(f"environment {name} already exists with different content; pass --replace to overwrite")
        con.execute("BEGIN TRANSACTION")
        try:
            for table, col in (("environments", "name"), ("questions", "env"), ("branches", "env")):
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", [name])
            con.execute(
                "INSERT INTO environments (name, model, dataset, n_questions, n_branches, probe_freq, content_hash,"
                " origin, source, spec, split) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [name, model, dataset, len(records), n_branches, freqs.pop() if len(freqs) == 1 else 0, digest,
                 origin, source, json.dumps(spec or {}), split])
            con.execute("INSERT INTO questions SELECT UNNEST(?), UNNEST(?), UNNEST(?), UNNEST(?), UNNEST(?),"
                        " UNNEST(?), UNNEST(?)", q_rows)
            con.execute("INSERT INTO branches SELECT UNNEST(?), UNNEST(?), UNNEST(?), UNNEST(?), UNNEST(?),"
                        " UNNEST(?)", b_rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return name, True


def import_path(store: Store, path: Path, model: str | None = None, dataset: str | None = None,
                replace: bool = False, split: str = "search") -> list[tuple[str, bool]]:
    """Import one file or every ``<Model>/<dataset>.json[.gz]`` below a directory.

    Every file is read and validated before anything is written, so a bad file leaves the store as it was.
    """
    if path.is_dir():
        if model or dataset:
            raise StoreError("--model/--dataset name a single file; a directory is named by its layout")
        files = sorted(p for p in path.rglob("*") if p.name.endswith((".json", ".json.gz")))
        if not files:
            raise StoreError(f"{path}: no .json or .json.gz replay files below this directory")
    elif path.exists():
        files = [path]
    else:
        raise StoreError(f"{path}: no such file or directory")
    loaded = []
    for f in files:
        m, d = env_name_from_path(f)
        loaded.append((model or m, dataset or d, read_records(f), f))
    return [import_records(store, m, d, records, source=str(f), replace=replace, split=split)
            for m, d, records, f in loaded]


def list_environments(store: Store) -> list[EnvironmentInfo]:
    """Every environment with its size and single-branch accuracy."""
    with store.connect(read_only=True) as con:
        rows = con.execute("""
            SELECT e.name, e.model, e.dataset, e.n_questions, e.n_branches, e.probe_freq,
                   avg(b.branch_tokens), avg(CASE WHEN b.final_answer = q.gold_answer THEN 1.0 ELSE 0.0 END),
                   e.origin, e.content_hash, e.split
            FROM environments e JOIN branches b ON b.env = e.name
            JOIN questions q ON q.env = b.env AND q.question_index = b.question_index
            GROUP BY ALL ORDER BY e.name""").fetchall()
    keys = list(EnvironmentInfo.model_fields)
    return [EnvironmentInfo(**dict(zip(keys, r, strict=True))) for r in rows]


def require_environments(store: Store, names: list[str]) -> None:
    """StoreError naming the first unknown environment (and what exists)."""
    known = {e.name for e in list_environments(store)}
    for name in names:
        if name not in known:
            hint = ", ".join(sorted(known)) or ("none; run `autotts-graph store fetch autotts`, `store import` or "
                                                "`store synth`")
            raise StoreError(f"unknown environment {name!r} (known: {hint})")


def set_split(store: Store, names: list[str], split: str) -> None:
    """Tag environments ``search`` or ``heldout``."""
    if split not in SPLITS:
        raise StoreError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    require_environments(store, names)
    with store.connect() as con:
        con.execute("UPDATE environments SET split = ? WHERE list_contains(?, name)", [split, names])


def export_records(store: Store, name: str) -> list[dict]:
    """The environment as AutoTTS records, the same JSON value that was imported."""
    require_environments(store, [name])
    with store.connect(read_only=True) as con:
        questions = con.execute(
            "SELECT question_index, question, gold_answer, probe_freq, final_answers_trace, key_order"
            " FROM questions WHERE env = ? ORDER BY question_index", [name]).fetchall()
        branches = con.execute(
            "SELECT question_index, probe_answers, branch_tokens, final_answer FROM branches WHERE env = ?"
            " ORDER BY question_index, branch_index", [name]).fetchall()
    per_q: dict[int, list] = {}
    for qi, probes, tokens, final in branches:
        per_q.setdefault(qi, []).append([probes, tokens, final])
    records = []
    for qi, question, gold, freq, trace, key_order in questions:
        values = {"question": question, "gold_answer": gold, "probe_freq": freq,
                  "each_branch": per_q.get(qi, []), "final_answers_trace": trace}
        records.append({k: values[k] for k in key_order})
    return records


def pack_path(store: Store, name: str) -> Path:
    """The replay pack of an environment (written on first use, then reused while its content is unchanged)."""
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT content_hash FROM environments WHERE name = ?", [name]).fetchone()
    if row is None:
        require_environments(store, [name])
    path = store.packs_dir / f"{pack_stem(name, row[0])}.npz"
    if path.exists() and key_path(path).exists():
        return path
    return write_pack(name, export_records(store, name), store.packs_dir, stem=path.stem)


class QuestionStats(BaseModel):
    """One question of an environment over its recorded branches."""

    question_index: int
    gold_answer: str | None
    branches: int
    mean_tokens: float
    mean_probes: float
    branch_accuracy: float  # share of branches whose final answer is the gold one
    err_probe_fraction: float  # share of probes that read ERR (no answer yet)
    modal_final_answer: str | None
    modal_final_correct: bool  # whether that most common final answer is the gold one


class EnvironmentDetail(EnvironmentInfo):
    """An environment with its source, its spec and per-question statistics (``store show``)."""

    source: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    questions: list[QuestionStats] = Field(default_factory=list)


def describe_environment(store: Store, name: str) -> EnvironmentDetail:
    """Summary and per-question statistics of one environment (no question text; gold answers included: this
    is the host's view, tools/environments.py decides what a tool caller sees)."""
    require_environments(store, [name])
    info = next(e for e in list_environments(store) if e.name == name)
    with store.connect(read_only=True) as con:
        rows = con.execute("""
            SELECT q.question_index, q.gold_answer, count(*), avg(b.branch_tokens),
                   avg(len(b.probe_answers)),
                   avg(CASE WHEN b.final_answer = q.gold_answer THEN 1.0 ELSE 0.0 END),
                   sum(len(list_filter(b.probe_answers, lambda x: x = 'ERR'))) / greatest(sum(len(b.probe_answers)), 1),
                   mode(b.final_answer)
            FROM questions q JOIN branches b ON b.env = q.env AND b.question_index = q.question_index
            WHERE q.env = ? GROUP BY ALL ORDER BY q.question_index""", [name]).fetchall()
        spec = con.execute("SELECT spec, source FROM environments WHERE name = ?", [name]).fetchone()
    per_question = [
        QuestionStats(question_index=r[0], gold_answer=r[1], branches=r[2], mean_tokens=round(r[3], 1),
                      mean_probes=round(r[4], 2), branch_accuracy=round(r[5], 4), err_probe_fraction=round(r[6], 4),
                      modal_final_answer=r[7], modal_final_correct=r[7] == r[1])
        for r in rows
    ]
    return EnvironmentDetail(**info.model_dump(), source=spec[1], spec=json.loads(spec[0] or "{}"),
                             questions=per_question)
