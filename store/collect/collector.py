"""Collection orchestration: sample, force, probe, store per batch, resume, build the environment.

Partial results live in the collector's own tables of the store file, keyed by
(spec_hash, dataset, question_index, branch_index). Each batch is committed in one transaction, so a
killed collection loses at most the batch in flight and a restart skips every stored branch. When
every question has its branches, the AutoTTS records are built and imported with ``origin="collect"``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import import_records, validate_records
from pydantic import BaseModel, Field

from .backend import Backend, ChatTokenizer, CollectError, ProbeRequest, SampleRequest, Sampling
from .canonicalize import Canonicalizer
from .extract import ERR, extract_final_answer, extract_probe_answer
from .spec import Canonicalize, CollectSpec, branch_seed

_TABLES = [
    """CREATE TABLE IF NOT EXISTS collect_specs (
        spec_hash VARCHAR, spec JSON, created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS collect_questions (
        spec_hash VARCHAR, dataset VARCHAR, question_index INTEGER, question_id VARCHAR, question VARCHAR,
        gold_answer VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS collect_branches (
        spec_hash VARCHAR, dataset VARCHAR, question_index INTEGER, branch_index INTEGER, seed BIGINT,
        prompt_tokens INTEGER, token_ids INTEGER[], think_tokens INTEGER, forced BOOLEAN, finished BOOLEAN,
        probe_cuts INTEGER[], probe_texts VARCHAR[], probe_answers VARCHAR[], final_answer VARCHAR,
        branch_tokens BIGINT, seconds DOUBLE, created_at TIMESTAMP DEFAULT current_timestamp)""",
]
_BRANCH_COLS = ("spec_hash", "dataset", "question_index", "branch_index", "seed", "prompt_tokens",
                "token_ids", "think_tokens", "forced", "finished", "probe_cuts", "probe_texts",
                "probe_answers", "final_answer", "branch_tokens", "seconds")


class QuestionItem(BaseModel):
    """One line of the questions file."""

    question: str
    answer: str
    id: str | None = None


class CollectOptions(BaseModel):
    """What to collect and how to build the environment (none of it changes a branch's content)."""

    dataset: str = Field(min_length=1)
    env_model: str = Field(min_length=1, description="model part of the environment name <model>/<dataset>")
    n_branches: int = Field(128, gt=0)
    batch_size: int = Field(8, gt=0, description="branches per committed batch")
    canonicalize: Canonicalize = "none"
    replace: bool = False
    source: str = ""
    split: Literal["search", "heldout"] = "search"


class CollectResult(BaseModel):
    """What a collection did."""

    env: str
    created: bool
    spec_hash: str
    questions: int
    branches: int
    generated_branches: int
    reused_branches: int
    generated_tokens: int
    probe_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        """Sampled branch tokens per second of this run (0 when nothing was generated)."""
        return self.generated_tokens / self.seconds if self.seconds > 0 and self.generated_tokens else 0.0


@dataclass
class ProgressEvent:
    """Sent after every committed batch (and once before the first)."""

    done: int
    total: int
    generated_tokens: int
    elapsed_s: float


def read_questions(path: Path) -> list[QuestionItem]:
    """Parse a JSONL file of ``{"question", "answer"[, "id"]}``; one-line errors name the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CollectError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectError(f"{path}: cannot read ({exc})") from None
    items: list[QuestionItem] = []
    ids: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CollectError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CollectError(f"{path}:{n}: expected an object with 'question' and 'answer'")
        for key in ("question", "answer"):
            if key not in obj:
                raise CollectError(f"{path}:{n}: missing field '{key}'")
        if not isinstance(obj["question"], str) or not obj["question"].strip():
            raise CollectError(f"{path}:{n}: 'question' must be a non-empty string")
        if not isinstance(obj["answer"], str | int | float) or isinstance(obj["answer"], bool):
            raise CollectError(f"{path}:{n}: 'answer' must be a string or a number")
        qid = None if obj.get("id") is None else str(obj["id"])
        if qid is not None:
            if qid in ids:
                raise CollectError(f"{path}:{n}: duplicate id {qid!r}")
            ids.add(qid)
        items.append(QuestionItem(question=obj["question"], answer=str(obj["answer"]).strip(), id=qid))
    if not items:
        raise CollectError(f"{path}: no questions")
    return items


def ensure_tables(store: Store) -> None:
    """Create the collector's tables in the store file (idempotent)."""
    with store.connect() as con:
        for statement in _TABLES:
            con.execute(statement)


def stored_branches(store: Store, spec_hash: str, dataset: str) -> set[tuple[int, int]]:
    """(question_index, branch_index) of every branch already collected under this spec."""
    ensure_tables(store)
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT question_index, branch_index FROM collect_branches"
                           " WHERE spec_hash = ? AND dataset = ?", [spec_hash, dataset]).fetchall()
    return {(int(q), int(b)) for q, b in rows}


def _register(store: Store, spec: CollectSpec, dataset: str, questions: list[QuestionItem]) -> None:
    h = spec.spec_hash
    with store.connect() as con:
        if con.execute("SELECT 1 FROM collect_specs WHERE spec_hash = ?", [h]).fetchone() is None:
            con.execute("INSERT INTO collect_specs (spec_hash, spec) VALUES (?, ?)",
                        [h, json.dumps(spec.model_dump(mode="json"))])
        known = {int(r[0]): r[1:] for r in con.execute(
            "SELECT question_index, question_id, question, gold_answer FROM collect_questions"
            " WHERE spec_hash = ? AND dataset = ?", [h, dataset]).fetchall()}
        for qi, q in enumerate(questions):
            row = (q.id, q.question, q.answer)
            if qi in known and tuple(known[qi]) != row:
                raise CollectError(
                    f"question {qi} differs from the one already collected for dataset {dataset!r} under spec"
                    f" {h}; use another --dataset name for a different questions file")
            if qi not in known:
                con.execute("INSERT INTO collect_questions VALUES (?, ?, ?, ?, ?, ?)", [h, dataset, qi, *row])


class _Protocol:
    """The per-batch protocol: sample, finish cut or over-budget branches, probe, extract."""

    def __init__(self, spec: CollectSpec, backend: Backend, tokenizer: ChatTokenizer,
                 questions: list[QuestionItem]) -> None:
        g = spec.generation
        self.spec = spec
        self.backend = backend
        self.tok = tokenizer
        # None: the model has no thinking phase (the whole reply is the reasoning, probed throughout).
        self.think_end = tokenizer.single_token(g.think_end) if g.think_end else None
        self.force_ids = tokenizer.encode(g.force_text)
        self.suffix_ids = tokenizer.encode(spec.probe.suffix)
        self.sampling = Sampling(g.temperature, g.top_p, g.top_k)
        self.prompts = [tokenizer.prompt_ids(q.question, g.instruction, g.enable_thinking) for q in questions]
        self.qids = [q.id if q.id is not None else str(i) for i, q in enumerate(questions)]
        self.probe_tokens = 0

    def run(self, spec_hash: str, dataset: str, keys: list[tuple[int, int]]) -> list[tuple]:
        g, p = self.spec.generation, self.spec.probe
        t0 = time.perf_counter()
        seeds = [branch_seed(g.seed, self.qids[qi], bi) for qi, bi in keys]
        first = self.backend.sample([SampleRequest(self.prompts[qi], g.think_budget, s, self.sampling)
                                     for (qi, _), s in zip(keys, seeds, strict=True)])
        gens = [r.token_ids for r in first]
        finished = [r.stopped for r in first]
        think_lens = [len(x) for x in gens]
        forced = [False] * len(keys)
        follow: list[int] = []
        for j, r in enumerate(first):
            if r.stopped:
                continue
            if self.think_end is not None and self.think_end in r.token_ids:
                # The answer was being written when the budget ran out: let it finish.
                think_lens[j] = r.token_ids.index(self.think_end)
            else:
                forced[j] = True
                gens[j] = gens[j] + self.force_ids
            follow.append(j)
        if follow:
            more = self.backend.sample([
                SampleRequest(self.prompts[keys[j][0]] + gens[j], g.answer_budget,
                              branch_seed(g.seed, self.qids[keys[j][0]], keys[j][1], phase=1), self.sampling)
                for j in follow])
            for j, r in zip(follow, more, strict=True):
                gens[j] = gens[j] + r.token_ids
                finished[j] = r.stopped
        for j, gen in enumerate(gens):
            if self.think_end is not None and not forced[j] and finished[j] and self.think_end in gen:
                think_lens[j] = gen.index(self.think_end)
        finals = [extract_final_answer(self.tok.decode(self._answer_part(gen))) for gen in gens]
        # A model without a thinking phase that ended without a boxed answer is asked for it once more, as a
        # probe at the end of its reply (a thinking model's reply is judged by its own box, as AutoTTS does).
        ask_final = [self.think_end is None and final == ERR for final in finals]
        probes = []
        for j, ((qi, _), gen) in enumerate(zip(keys, gens, strict=True)):
            # Probe after every delta thinking tokens, strictly inside the thinking.
            depths = range(1, (think_lens[j] - 1) // p.probe_every + 1)
            cuts = [len(self.prompts[qi]) + k * p.probe_every for k in depths]
            if ask_final[j]:
                cuts.append(len(self.prompts[qi]) + len(gen))
            probes.append(ProbeRequest(self.prompts[qi] + gen, cuts, self.suffix_ids, p.max_tokens))
        answers = self.backend.probe(probes)
        seconds = (time.perf_counter() - t0) / max(1, len(keys))
        rows = []
        for j, ((qi, bi), gen) in enumerate(zip(keys, gens, strict=True)):
            texts = [self.tok.decode(ids) for ids in answers[j]]
            self.probe_tokens += sum(len(ids) for ids in answers[j])
            cuts, final = probes[j].cuts, finals[j]
            if ask_final[j]:
                final, texts, cuts = extract_probe_answer(texts[-1]), texts[:-1], cuts[:-1]
            rows.append((spec_hash, dataset, qi, bi, seeds[j], len(self.prompts[qi]), gen, think_lens[j],
                         forced[j], finished[j], cuts, texts, [extract_probe_answer(t) for t in texts], final,
                         len(gen), seconds))
        return rows

    def _answer_part(self, gen: list[int]) -> list[int]:
        """The tokens after the end of thinking (all of them for a model without a thinking phase)."""
        if self.think_end is not None and self.think_end in gen:
            return gen[gen.index(self.think_end) + 1:]
        return gen


def _write(store: Store, rows: list[tuple]) -> None:
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for row in rows:
                # Delete-then-insert keeps a key unique even if two runs raced on the same batch.
                con.execute("DELETE FROM collect_branches WHERE spec_hash = ? AND dataset = ?"
                            " AND question_index = ? AND branch_index = ?", list(row[:4]))
            con.executemany(f"INSERT INTO collect_branches ({', '.join(_BRANCH_COLS)})"
                            f" VALUES ({', '.join('?' for _ in _BRANCH_COLS)})", [list(r) for r in rows])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def build_records(store: Store, spec_hash: str, dataset: str, questions: list[QuestionItem], n_branches: int,
                  probe_every: int, canonicalizer: Canonicalizer) -> list[dict]:
    """AutoTTS records (docs/replay-and-contract.md §1) from the stored branches.

    The final answer closes each probe list.
    """
    with store.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT question_index, branch_index, probe_answers, branch_tokens, final_answer"
            " FROM collect_branches WHERE spec_hash = ? AND dataset = ? AND question_index < ?"
            " AND branch_index < ? ORDER BY question_index, branch_index",
            [spec_hash, dataset, len(questions), n_branches]).fetchall()
    per_q: dict[int, list] = {}
    for qi, _bi, probes, tokens, final in rows:
        gold = questions[qi].answer
        answers = [canonicalizer.answer(gold, a) for a in [*probes, final]]
        per_q.setdefault(qi, []).append([answers, int(tokens), answers[-1]])
    records = []
    for qi, q in enumerate(questions):
        branches = per_q.get(qi, [])
        if len(branches) != n_branches:
            raise CollectError(f"question {qi} has {len(branches)} of {n_branches} branches stored;"
                               " rerun to finish")
        records.append({"question": q.question, "gold_answer": canonicalizer.gold(q.answer),
                        "probe_freq": probe_every, "each_branch": branches,
                        "final_answers_trace": [b[2] for b in branches]})
    return records


def questions_digest(questions: list[QuestionItem]) -> str:
    """Hash of the questions and gold answers (stored with the environment)."""
    canon = json.dumps([q.model_dump() for q in questions], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


BatchRunner = Callable[[list[list[tuple[int, int]]]], Iterator[tuple[list[tuple], int]]]


def run_collection(store: Store, spec: CollectSpec, questions: list[QuestionItem], options: CollectOptions,
                   backend: Backend | None, tokenizer: ChatTokenizer | None,
                   progress: Callable[[ProgressEvent], None] | None = None,
                   runner: BatchRunner | None = None) -> CollectResult:
    """Collect every missing branch batch by batch, then build and import the environment.

    The missing (question, branch) keys are cut into batches of ``options.batch_size``, always the same
    way whatever runs them. ``runner`` runs those batches elsewhere (``ray_collect.RayCollector``: one
    engine per GPU of a cluster) and yields each batch's rows with its probe token count, in any order;
    by default ``backend`` runs them here, in order. Either way only this process writes the store, one
    transaction per batch, so a killed collection resumes the same way.
    """
    t0 = time.perf_counter()
    h = spec.spec_hash
    canonicalizer = Canonicalizer(options.canonicalize)  # fails early when math-verify is missing
    ensure_tables(store)
    _register(store, spec, options.dataset, questions)
    done = stored_branches(store, h, options.dataset)
    wanted = [(qi, bi) for qi in range(len(questions)) for bi in range(options.n_branches)]
    todo = [k for k in wanted if k not in done]
    batches = [todo[start:start + options.batch_size] for start in range(0, len(todo), options.batch_size)]
    if runner is None:
        if backend is None or tokenizer is None:
            raise CollectError("a local collection needs a backend and a tokenizer")
        runner = _local_runner(_Protocol(spec, backend, tokenizer, questions), h, options.dataset)
    generated_tokens = probe_tokens = 0
    finished_count = len(wanted) - len(todo)
    if progress:
        progress(ProgressEvent(finished_count, len(wanted), 0, 0.0))
    for rows, probes in runner(batches):
        _write(store, rows)
        generated_tokens += sum(r[_BRANCH_COLS.index("branch_tokens")] for r in rows)
        probe_tokens += probes
        finished_count += len(rows)
        if progress:
            progress(ProgressEvent(finished_count, len(wanted), generated_tokens, time.perf_counter() - t0))
    records = build_records(store, h, options.dataset, questions, options.n_branches, spec.probe.probe_every,
                            canonicalizer)
    validate_records(records, f"{options.env_model}/{options.dataset}")
    env_spec = {"spec_hash": h, **spec.model_dump(mode="json"), "n_branches": options.n_branches,
                "canonicalize": options.canonicalize, "questions_sha256": questions_digest(questions),
                "questions_source": options.source}
    name, created = import_records(store, options.env_model, options.dataset, records, source=options.source,
                                   origin="collect", spec=env_spec, replace=options.replace,
                                   split=options.split)
    return CollectResult(env=name, created=created, spec_hash=h, questions=len(questions),
                         branches=len(wanted), generated_branches=len(todo),
                         reused_branches=len(wanted) - len(todo),
                         generated_tokens=generated_tokens, probe_tokens=probe_tokens,
                         seconds=time.perf_counter() - t0)


def _local_runner(protocol: _Protocol, spec_hash: str, dataset: str) -> BatchRunner:
    def run(batches: list[list[tuple[int, int]]]) -> Iterator[tuple[list[tuple], int]]:
        for keys in batches:
            before = protocol.probe_tokens
            rows = protocol.run(spec_hash, dataset, keys)
            yield rows, protocol.probe_tokens - before

    return run
