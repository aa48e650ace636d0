"""The judge: scores a controller's raw action records on the host, out of the controller's reach.

Inside the box the runtime returns, per solve, only what the controller did: the answer (a code into the
pack's vocabulary, -1 for None), how many probe reads each opened branch got, and which branches were
read in full (``sandbox/runtime/evaluate.py``). Everything the box says is untrusted. The judge:

- re-prices every solve from its own copy of the pack: a branch's cost depends only on its read count and
  full-read flag (replay spec §2.3: probe reads cost Δ until the branch is exhausted, every read after
  that re-charges the remainder, a full read costs the branch's tokens), so the order of the actions
  does not matter and any record the box could forge prices like an honest run of those same actions;
- checks the record is one an honest runtime could produce: opened branches form a prefix of the
  shuffled order, nothing outside the question's branches is touched;
- accepts an answer only if the recorded reads revealed it (a probe answer read or a final answer reached);
- compares answers with gold answers that never enter the box (``<pack>.key.json``);
- aggregates exactly as the reference does (replay spec §3.2), so honest figures are unchanged.

What the record cannot show is *why* the controller took its actions: reading data it had not observed
(the pack file, the question's internals) or remembering earlier questions. ``sandbox/audit.py`` catches
that by replaying sampled solves on counterfactual data.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .runtime.replay import load_pack, shuffle_order

KEY_SUFFIX = ".key.json"
MAX_TEXT = 500  # characters kept of a controller-provided description or trace string
MAX_TRACE_BYTES = 4 * 1024 * 1024  # per point: traces are evidence for diagnosis, never scores


class JudgeError(Exception):
    """The box's record is impossible or its answer was never observed: a contract error of the candidate."""


def key_path(pack: str | Path) -> Path:
    """The host-only answer key beside a pack file (never staged into the sandbox)."""
    pack = Path(pack)
    return pack.with_name(pack.stem + KEY_SUFFIX)


@dataclass(frozen=True)
class JudgePack:
    """The host's copy of one environment: branch arrays padded to ``width``, gold codes, probe codes."""

    name: str
    vocab: tuple[str, ...]
    width: int
    branches: np.ndarray  # (Q,) branches per question
    delta: np.ndarray  # (Q,) probe_freq
    n_probes: np.ndarray  # (Q, W) probes per branch (file order)
    tokens: np.ndarray  # (Q, W)
    finals: np.ndarray  # (Q, W) final answer codes
    gold: np.ndarray  # (Q,) gold code, -2 when no branch ever produced the gold answer
    gold_text: tuple[str, ...]
    probes: np.ndarray  # every probe code, branch after branch
    probe_offsets: np.ndarray  # start of each branch's probes in ``probes`` (+ the end)
    question_offsets: np.ndarray  # first branch of each question (+ the end)
    _first: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def questions(self) -> int:
        return len(self.branches)

    def first_seen(self, q: int, code: int) -> np.ndarray:
        """(W,) first probe position of ``code`` in each branch of question ``q`` (NEVER where absent)."""
        key = (q, code)
        row = self._first.get(key)
        if row is None:
            lo, hi = self.question_offsets[q], self.question_offsets[q + 1]
            start, end = self.probe_offsets[lo], self.probe_offsets[hi]
            at = np.nonzero(self.probes[start:end] == code)[0] + start
            branch = np.searchsorted(self.probe_offsets, at, side="right") - 1
            row = np.full(self.width, NEVER, dtype=np.int64)
            np.minimum.at(row, branch - lo, at - self.probe_offsets[branch])
            self._first[key] = row
        return row


_CACHE: dict[tuple[str, float], JudgePack] = {}
_CACHE_LOCK = threading.Lock()
NEVER = np.iinfo(np.int64).max // 4


def load_judge_pack(path: str | Path, gold: list[str] | tuple[str, ...] | None = None) -> JudgePack:
    """Load (cached by path and mtime) a pack and its answer key (or the given gold answers) for judging."""
    path = Path(path)
    ident = (str(path), path.stat().st_mtime)
    with _CACHE_LOCK:
        hit = _CACHE.get(ident)
    if hit is not None and (gold is None or hit.gold_text == tuple(gold)):
        return hit
    if gold is None:
        gold = json.loads(key_path(path).read_text())["gold"]
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        vocab = tuple(str(v) for v in z["vocab"].tolist())
        arrays = {k: z[k].astype(np.int64) for k in ("probe_freq", "question_offsets", "probe_offsets", "probes",
                                                      "tokens", "finals")}
    q_off, p_off = arrays["question_offsets"], arrays["probe_offsets"]
    q = len(arrays["probe_freq"])
    if len(gold) != q:
        raise ValueError(f"{path}: the answer key does not match the pack")
    counts = np.diff(q_off)
    width = int(counts.max()) if q else 0
    col = np.arange(len(arrays["tokens"])) - np.repeat(q_off[:-1], counts)
    row = np.repeat(np.arange(q), counts)

    def padded(values: np.ndarray, fill: int) -> np.ndarray:
        out = np.full((q, width), fill, dtype=np.int64)
        out[row, col] = values
        return out

    codes = {a: i for i, a in enumerate(vocab)}
    jp = JudgePack(name=meta["name"], vocab=vocab, width=width, branches=counts, delta=arrays["probe_freq"],
                   n_probes=padded(np.diff(p_off), 0), tokens=padded(arrays["tokens"], 0),
                   finals=padded(arrays["finals"], -1),
                   gold=np.array([codes.get(g, -2) for g in gold], dtype=np.int64), gold_text=tuple(gold),
                   probes=arrays["probes"], probe_offsets=p_off, question_offsets=q_off)
    with _CACHE_LOCK:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[ident] = jp
    return jp


def decode_ints(blob: Any, count: int, what: str) -> np.ndarray:
    """``count`` int32 values of the box's base64(zlib) encoding, as int64; JudgeError when it does not decode."""
    if not isinstance(blob, str):
        raise JudgeError(f"malformed record: {what} is not encoded")
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(blob, validate=True), count * 4 + 1)
    except (ValueError, zlib.error) as exc:
        raise JudgeError(f"malformed record: {what} does not decode ({exc})") from None
    if len(raw) != count * 4:
        raise JudgeError(f"malformed record: {what} holds {len(raw) // 4} values, expected {count}")
    return np.frombuffer(raw, dtype="<i4").astype(np.int64)


@dataclass(frozen=True)
class Solves:
    """The judged solves of one point: rows in the order the host asked for them."""

    seeds: np.ndarray  # (S,)
    questions: np.ndarray  # (S,)
    answers: np.ndarray  # (S,) codes, -1 for None
    reads: np.ndarray  # (S, W)
    full: np.ndarray  # (S, W) bool
    cost: np.ndarray  # (S,) tokens charged
    correct: np.ndarray  # (S,) bool


def _layout(jp: JudgePack, seeds: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, ...]:
    """The pack's branches in each solve's shuffled order, (S, W) each: file index, validity, probe counts,
    tokens, final codes, and Δ (S, 1). The same for every point of a sweep, so it is kept per pack."""
    key = ("layout", hash(seeds.tobytes()), hash(questions.tobytes()), len(seeds))
    hit = jp._first.get(key)
    if hit is not None:
        return hit
    index, valid = _positions(jp, seeds, questions)
    qrow = questions[:, None]
    layout = (index, valid, jp.n_probes[qrow, index], jp.tokens[qrow, index], jp.finals[qrow, index],
              jp.delta[questions][:, None])
    for stale in [k for k in jp._first if k[0] == "layout"][:-3]:  # a few sweeps' worth, no more
        jp._first.pop(stale, None)
    jp._first[key] = layout
    return layout


def _positions(jp: JudgePack, seeds: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(file index of each shuffled position, validity mask), both (S, W)."""
    s, w = len(seeds), jp.width
    index = np.zeros((s, w), dtype=np.int64)
    nbs = jp.branches[questions]
    valid = np.arange(w)[None, :] < nbs[:, None]
    # One permutation per distinct (seed, branch count), written to all its rows at once: a sweep has
    # thousands of solves but only seeds x (a few) branch counts.
    pairs = np.stack([seeds, nbs], axis=1) if s else np.zeros((0, 2), dtype=np.int64)
    for seed, nb in {(int(a), int(b)) for a, b in pairs.tolist()}:
        rows = np.nonzero((seeds == seed) & (nbs == nb))[0]
        index[rows, :nb] = np.asarray(shuffle_order(seed, nb), dtype=np.int64)
    return index, valid


def judge_solves(jp: JudgePack, raw: dict[str, Any], solves: list[tuple[int, int]]) -> Solves:
    """Re-price and score the record of ``solves`` ((seed, question) in the order asked); JudgeError if forged."""
    s, w = len(solves), jp.width
    if raw.get("solves") != s or raw.get("width") != w:
        raise JudgeError(f"malformed record: {raw.get('solves')!r} solves of width {raw.get('width')!r}, "
                         f"expected {s} of width {w}")
    seeds = np.array([x[0] for x in solves], dtype=np.int64)
    questions = np.array([x[1] for x in solves], dtype=np.int64)
    answers = decode_ints(raw.get("answers"), s, "answers")
    reads = decode_ints(raw.get("reads"), s * w, "reads").reshape(s, w)
    full = np.zeros((s, w), dtype=bool)
    entries = raw.get("full")
    if not isinstance(entries, list):
        raise JudgeError("malformed record: full reads are not a list")
    for entry in entries:
        if (not isinstance(entry, list) or len(entry) < 2 or not all(type(v) is int for v in entry)
                or not 0 <= entry[0] < s or not all(0 <= b < w for b in entry[1:])
                or len(set(entry[1:])) != len(entry) - 1):
            raise JudgeError(f"malformed record: impossible full-read entry {str(entry)[:80]}")
        full[entry[0], entry[1:]] = True
    index, valid, n_probes, tokens, finals, delta = _layout(jp, seeds, questions)
    if (reads < 0).any():
        raise JudgeError("impossible record: a negative read count")
    if (reads[~valid] != 0).any() or full[~valid].any():
        raise JudgeError("impossible record: reads of branches the question does not have")
    opened = (reads > 0) | full
    gaps = opened[:, 1:] & ~opened[:, :-1]
    if gaps.any():
        r = int(np.argwhere(gaps)[0][0])
        raise JudgeError(f"impossible record on {jp.name} question {questions[r]} (seed {seeds[r]}): "
                         "a branch was read before every branch ahead of it was opened")
    probed = np.minimum(reads, n_probes)
    rereads = np.maximum(reads - n_probes, 0)
    remainder = np.maximum(tokens - n_probes * delta, 0)
    cost = (np.where(full, tokens, 0) + delta * probed + remainder * rereads) * valid
    cost = cost.sum(axis=1)
    # An answer counts only if the reads revealed it: a probe read at or before its first sighting in the
    # branch, or the final answer of a branch read past its end or in full.
    bad = (answers < -1) | (answers >= len(jp.vocab))
    if bad.any():
        raise JudgeError(f"malformed record: answer code {int(answers[bad][0])} is not in the vocabulary")
    seen = np.ones(s, dtype=bool)
    has = answers >= 0
    final_seen = ((finals == answers[:, None]) & ((reads > n_probes) | full) & valid).any(axis=1)
    # Python sets, not np.unique: its first call imports numpy.ma (~0.1 s of a one-off `eval`).
    for q in sorted(set(questions[has].tolist())):
        rows = np.nonzero(has & (questions == q))[0]
        probe_seen = np.zeros(len(rows), dtype=bool)
        for code in sorted(set(answers[rows].tolist())):
            first = jp.first_seen(int(q), int(code))
            mask = answers[rows] == code
            sel = rows[mask]
            probe_seen[mask] = ((first[index[sel]] < probed[sel]) & valid[sel]).any(axis=1)
        seen[rows] = probe_seen | final_seen[rows]
    if not seen.all():
        r = int(np.nonzero(~seen)[0][0])
        text = jp.vocab[int(answers[r])][:80]
        raise JudgeError(f"answer {text!r} on {jp.name} question {questions[r]} (seed {seeds[r]}) was never "
                         "revealed by the controller's own reads: return an answer the controller observed")
    correct = has & (answers == jp.gold[questions])
    return Solves(seeds=seeds, questions=questions, answers=answers, reads=reads, full=full, cost=cost,
                  correct=correct)


def _clean(value: Any, depth: int = 0) -> Any:
    """JSON-able, storable copy of controller-provided data: no lone surrogates, bounded strings and depth."""
    if isinstance(value, str):
        return value[:MAX_TEXT].encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 8:
        return "..."
    if isinstance(value, dict):
        return {_clean(str(k), depth + 1): _clean(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value[:512]]
    return _clean(repr(value), depth + 1)


def aggregate(correct: list[list[int]], tokens: list[list[int]]) -> dict[str, Any]:
    """The reference's arithmetic (spec §3.2) over seeds x questions outcomes: per-seed int totals divided
    by the number of questions, accuracy as numpy's mean rounded to 2 places, cost as a running float sum."""
    acc_seed = [sum(row) / len(row) for row in correct]
    cost_seed = [sum(row) / len(row) for row in tokens]
    avg_cost = 0.0
    for c in cost_seed:
        avg_cost += c
    avg_cost /= len(cost_seed)
    return {"accuracy": round(100 * float(np.mean(acc_seed)), 2), "avg_cost": avg_cost,
            "std_acc": round(100 * float(np.std(acc_seed)), 2), "acc_per_seed": acc_seed, "cost_per_seed": cost_seed}


def _storable_steps(steps: Any) -> tuple[list, int]:
    """Trace steps as they can be stored and shown, and their JSON size: honest traces pass untouched;
    lone surrogates, huge strings and deep nesting (only a hostile controller writes them) are cleaned."""
    if not isinstance(steps, list):
        return [], 2
    try:
        text = json.dumps(steps, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates cannot be encoded
        return steps, len(text)
    except (UnicodeEncodeError, RecursionError, ValueError, TypeError):
        cleaned = _clean(steps)
        return cleaned, len(json.dumps(cleaned))


def judge_point(jp: JudgePack, raw: dict[str, Any], config: dict[str, Any], seeds: list[int],
                trace_seeds: frozenset[int]) -> tuple[dict[str, Any], Solves]:
    """Score one (environment, config) over seeds x questions: the figures the store and reports show,
    and the judged solves (seeds x questions order) the audit compares against."""
    n = jp.questions
    solves = [(seed, qi) for seed in seeds for qi in range(n)]
    judged = judge_solves(jp, raw, solves)
    correct = judged.correct.reshape(len(seeds), n)
    cost = judged.cost.reshape(len(seeds), n)
    figures = aggregate(correct.tolist(), cost.tolist())
    accuracy, avg_cost = figures["accuracy"], figures["avg_cost"]
    if not (0.0 <= accuracy <= 100.0 and math.isfinite(avg_cost) and avg_cost >= 0):
        raise JudgeError(f"figures outside physical bounds: accuracy {accuracy}, cost {avg_cost}")
    vocab = jp.vocab
    answer_rows = [[vocab[a] if a >= 0 else None for a in row] for row in
                   judged.answers.reshape(len(seeds), n).tolist()]
    traces = []
    size = 0
    seed_row = {seed: i for i, seed in enumerate(seeds)}
    for t in raw.get("traces") or []:
        if not isinstance(t, dict) or type(t.get("shuffle_seed")) is not int or type(t.get("question_index")) \
                is not int or t["shuffle_seed"] not in trace_seeds or t["shuffle_seed"] not in seed_row \
                or not 0 <= t["question_index"] < n:
            continue  # the box's word on which solve a trace belongs to is checked like everything else
        steps, size_of = _storable_steps(t.get("trace"))
        size += size_of
        if size > MAX_TRACE_BYTES:
            break
        r, qi = seed_row[t["shuffle_seed"]], t["question_index"]
        traces.append({"shuffle_seed": t["shuffle_seed"], "question_index": qi, "is_correct": bool(correct[r, qi]),
                       "cost": int(cost[r, qi]), "answer": answer_rows[r][qi], "trace": steps})
    return {
        "env": jp.name,
        "config": config,
        "description": _clean(raw.get("description") if isinstance(raw.get("description"), str) else ""),
        "params": _clean(raw.get("params") if isinstance(raw.get("params"), dict) else {}),
        **figures,
        "seeds": list(seeds),
        "correct": correct.astype(int).tolist(),
        "tokens": cost.tolist(),
        "answers": answer_rows,
        "traces": traces,
    }, judged


def score_in_process(cls: type, pack_path: str | Path, config: dict[str, Any], seeds: list[int],
                     trace_seeds: frozenset[int] = frozenset({0})) -> dict[str, Any]:
    """Run a loaded controller class in this process and judge it: for trusted code (tests, benchmarks).

    The figures are those the sandboxed path produces; only the isolation is missing.
    """
    from .runtime.evaluate import evaluate_point

    raw = evaluate_point(cls, load_pack(str(pack_path)), config, list(seeds), frozenset(trace_seeds))
    return judge_point(load_judge_pack(pack_path), raw, config, list(seeds), frozenset(trace_seeds))[0]
