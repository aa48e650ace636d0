"""Audits: does the controller act only on what it observed, and not on what it knows of the answers?

The judge (``sandbox/judge.py``) re-prices what a controller did, but cannot see why it did it. An audit
replays a secret random sample of the evaluation's solves on a changed copy of the environment that an
honest controller cannot tell apart from the real one, and compares the actions (every branch's reads,
every full read) and the answer with the original run's. An honest controller, which acts only on what the
primitives returned in the current solve and treats answers as opaque labels, acts identically; any
difference flags the candidate. Each audit is one implementation of one protocol (``Audit``: build the
changed pack for the sampled solves, then ``differences`` compares), side by side:

- ``CounterfactualAudit``: everything the sampled solves did *not* observe is replaced by other real
  branches. It catches reading the pack file or the question's internals, and memory across solves.
- ``RelabellingAudit``: every answer string of the environment is renamed by a secret random bijection
  that keeps equality, first-seen order, lexicographic order and the error token, and whose names look
  like that environment's answers. It catches an answer key carried in the source (memorised answers).

Power: the sampled solves are drawn uniformly over (point, seed, question), so a controller that deviates
on a share ``d`` of its solves escapes one audit with probability at most ``(1 - d) ** n`` for ``n``
audited solves (stratified over environments in proportion to their solves, which can only lower it).
``solves_needed`` turns a deviation rate and a power into ``n``: 44 solves catch a 10 % deviation with
99 % probability (every evaluation), 228 catch a 2 % one (the selected controller, before its figures are
reported). The sampled solves of one point run in a secret random order on one warm controller, so an audited
solve comes at a random point of the controller's life: a controller that remembers earlier solves or counts
its calls acts otherwise than it did in the evaluation. Both audits replay the same sample, in one sandbox
task per environment (one pack per audit).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .judge import JudgeError, JudgePack, Solves, decode_ints, judge_solves, load_judge_pack
from .runtime.replay import shuffle_order

Solve = tuple[int, int, int]  # (point index, seed, question)
AuditLevel = Literal["standard", "strict"]
POWER = 0.99
# The share of its solves on which a deviating controller must be caught with probability POWER.
DEVIATION = {"standard": 0.10, "strict": 0.02}
ERROR_TOKEN = "ERR"  # the replay format's "no answer could be extracted": a controller may treat it specially


def solves_needed(deviation: float, power: float = POWER) -> int:
    """Audited solves that catch a controller deviating on ``deviation`` of its solves with ``power``."""
    return math.ceil(math.log(1 - power) / math.log(1 - deviation))


def audit_budget(level: AuditLevel, sizes: dict[str, int]) -> dict[str, int]:
    """Audited solves per environment: the level's ``solves_needed`` shared in proportion to each
    environment's solves (rounded up), never more than the environment has."""
    need, total = solves_needed(DEVIATION[level]), sum(sizes.values())
    return {env: min(n, math.ceil(need * n / total)) for env, n in sizes.items()} if total else {}


@dataclass(frozen=True)
class Observed:
    """What one original solve did: its reads and full reads by shuffled position, and its answer code
    (-1 for None)."""

    reads: np.ndarray
    full: np.ndarray
    answer: int


@dataclass(frozen=True)
class AuditPlan:
    """The changed pack one audit's solves replay on (in a folder of its own, removed by ``cleanup``)."""

    audit: Audit
    pack: Path
    workdir: tempfile.TemporaryDirectory

    def cleanup(self) -> None:
        self.workdir.cleanup()


def choose_solves(points: int, seeds: list[int], questions: int, count: int, rng: random.Random) -> list[Solve]:
    """``count`` distinct solves drawn uniformly from points x seeds x questions (all of them when there are
    fewer), in a secret random order. Each point's solves replay in that order on one warm controller, so an
    audited solve comes at a random point of its life (a controller that remembers earlier solves, or counts
    its calls, acts otherwise than in the evaluation)."""
    per_point = len(seeds) * questions
    picks = rng.sample(range(points * per_point), min(count, points * per_point))
    return [(r // per_point, seeds[r % per_point // questions], r % questions) for r in picks]


def observed_rows(judged: Solves, point: int, solves: list[Solve], questions: int,
                  seeds: list[int]) -> dict[Solve, Observed]:
    """The audited solves of ``point`` picked out of its judged solves (seeds x questions order)."""
    out = {}
    for p, seed, q in solves:
        if p == point:
            row = seeds.index(seed) * questions + q
            out[(p, seed, q)] = Observed(reads=judged.reads[row].copy(), full=judged.full[row].copy(),
                                         answer=int(judged.answers[row]))
    return out


def observed_from_record(raw: dict[str, Any], point: int, solves: list[Solve], jp: JudgePack,
                         seeds: list[int]) -> dict[Solve, Observed] | None:
    """The audited solves of ``point`` read straight from the box's record, before the judge has checked it,
    so the audit can run while the judge works; None when they do not decode. Use them only if the judge
    then accepts the record (it checks every row, these included): they are then ``observed_rows`` of it."""
    n, w = jp.questions, jp.width
    total = len(seeds) * n
    wanted = {seeds.index(seed) * n + q: (p, seed, q) for p, seed, q in solves if p == point}
    try:
        answers = decode_ints(raw.get("answers"), total, "answers")
        reads = decode_ints(raw.get("reads"), total * w, "reads").reshape(total, w)
    except JudgeError:
        return None
    full = {row: np.zeros(w, dtype=bool) for row in wanted}
    entries = raw.get("full")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, list) or not entry or type(entry[0]) is not int:
            return None
        if entry[0] in full:
            if not all(type(b) is int and 0 <= b < w for b in entry[1:]):
                return None
            full[entry[0]][entry[1:]] = True
    out = {}
    for row, key in wanted.items():
        a = int(answers[row])
        if not -1 <= a < len(jp.vocab):
            return None
        out[key] = Observed(reads=reads[row].copy(), full=full[row], answer=a)
    return out


def same_observations(a: dict[Solve, Observed], b: dict[Solve, Observed]) -> bool:
    """Whether two sets of observed solves are identical (same solves, reads, full reads and answers)."""
    return a.keys() == b.keys() and all(
        a[k].answer == b[k].answer and np.array_equal(a[k].reads, b[k].reads) and np.array_equal(a[k].full, b[k].full)
        for k in a)


# --------------------------------------------------------------------------------------------------------
# The protocol and the pack both audits write.


class Audit(Protocol):
    """One way of changing an environment that an honest controller cannot notice."""

    name: str
    changed: str  # what the flag message says was changed, e.g. "every answer renamed"

    def build(self, pack_path: Path, observed: dict[Solve, Observed], rng: random.Random) -> AuditPlan:
        """Write the changed pack the observed solves replay on."""
        ...


def _load_arrays(pack_path: Path) -> dict[str, np.ndarray]:
    with np.load(pack_path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_plan(audit: Audit, arrays: dict[str, np.ndarray]) -> AuditPlan:
    """Write ``arrays`` as a pack exactly as ``store/packs.py`` does (same name, format and content hash
    rule, so nothing in the box tells an audit apart), in a fresh directory with no answer key beside it."""
    meta = json.loads(str(arrays.pop("meta")))
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    meta["content_hash"] = digest.hexdigest()
    arrays["meta"] = np.array(json.dumps(meta))
    workdir = tempfile.TemporaryDirectory(prefix="autotts-audit-")
    path = Path(workdir.name) / f"{meta['content_hash']}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    path.chmod(0o644)
    return AuditPlan(audit=audit, pack=path, workdir=workdir)


# --------------------------------------------------------------------------------------------------------
# The counterfactual audit.


def _donor(rng: random.Random, lo: int, hi: int, total: int) -> int:
    """A branch drawn uniformly from the other questions' (outside ``lo:hi``); the question's own when it
    is the only one. Its own branches would keep its answer distribution, and with it the decisions of a
    controller that peeks at them."""
    others = total - (hi - lo)
    if others <= 0:
        return lo + rng.randrange(hi - lo)
    r = rng.randrange(others)
    return r if r < lo else r + (hi - lo)


@dataclass(frozen=True)
class CounterfactualAudit:
    """Unobserved data replaced by other questions' real branches: catches reading what was not observed."""

    name: str = "counterfactual"
    changed: str = "the data it had not observed replaced"

    def build(self, pack_path: Path, observed: dict[Solve, Observed], rng: random.Random) -> AuditPlan:
        """In an audited question, a branch whose final answer no audited solve reached keeps the probes the
        solves read (the most any of them read, each having said "not finished") and takes the rest of its
        probes, its length and its final answer from a random branch of another question. Every audited
        solve of a question then sees exactly what it saw before; the other questions stay as they were."""
        arrays = _load_arrays(pack_path)
        q_off, p_off = arrays["question_offsets"], arrays["probe_offsets"]
        freq, tokens, finals = arrays["probe_freq"], arrays["tokens"].copy(), arrays["finals"].copy()
        total = len(tokens)
        original = [arrays["probes"][p_off[b]:p_off[b + 1]] for b in range(total)]  # donors come from these
        probes = list(original)
        kept: dict[int, int] = {}  # branch -> probes the audited solves read (branches of audited questions)
        revealed: set[int] = set()
        for (_, seed, qi), seen in observed.items():
            lo, hi = int(q_off[qi]), int(q_off[qi + 1])
            for pos, j in enumerate(shuffle_order(seed, hi - lo)):
                b, n = lo + j, int(seen.reads[pos])
                if bool(seen.full[pos]) or n > len(original[b]):
                    revealed.add(b)
                kept[b] = max(kept.get(b, 0), n)
        question_of = np.searchsorted(q_off, np.arange(total), side="right") - 1
        for b in sorted(kept.keys() - revealed):
            n, qi = kept[b], int(question_of[b])
            d = _donor(rng, int(q_off[qi]), int(q_off[qi + 1]), total)
            delta = int(freq[qi])
            new = np.concatenate([original[b][:n], original[d][n:]])  # at least the n probes read
            d_tokens, d_len = int(arrays["tokens"][d]), len(original[d])
            probes[b] = new
            tokens[b] = len(new) * delta + max(0, d_tokens - d_len * delta)
            finals[b] = arrays["finals"][d]
        lengths = np.array([len(p) for p in probes], dtype=p_off.dtype)
        arrays.update(probes=np.concatenate(probes).astype(arrays["probes"].dtype, copy=False), tokens=tokens,
                      finals=finals, probe_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(p_off.dtype))
        return _write_plan(self, arrays)


# --------------------------------------------------------------------------------------------------------
# The relabelling audit.

_PIECES = re.compile(r"\d+|\\[A-Za-z]+|[A-Za-z]+|.", re.DOTALL)
LOOKALIKES = 4  # plausible strings made from each real answer
WARP_BLOCKS, WARP_ALPHA = 16, 0.3  # the random warp of where the answers go among the plausible ones


def _lookalike(text: str, rng: random.Random) -> str:
    """A string shaped like ``text``: digit runs redrawn (length within one of the original's, no new
    leading zero), short letter runs redrawn in the same case; the first character, LaTeX commands, words
    and punctuation kept (so the lookalikes start as the environment's answers do)."""
    out = []
    for piece in _PIECES.findall(text):
        first = not out
        if piece.isdigit():
            n = max(1, len(piece) + rng.randint(-1, 1))
            lead = piece[0] if first or piece[0] == "0" else str(rng.randint(1, 9))
            out.append(lead + "".join(str(rng.randint(0, 9)) for _ in range(n - 1)))
        elif piece.isalpha() and len(piece) <= 2 and piece.isascii() and not first:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            out.append("".join(rng.choice(alphabet) if c.isupper() else rng.choice(alphabet).lower()
                               for c in piece))
        else:
            out.append(piece)
    return "".join(out)


NAMES_SUFFIX = ".names.json"
_UNIVERSES: dict[tuple[str, float], tuple[str, ...]] = {}
_UNIVERSE_LOCK = threading.Lock()


def _write_private(path: Path, data: bytes) -> None:
    """Write-then-rename, owner-readable only (a concurrent reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def plausible_answers(vocab: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """Sorted strings that look like this environment's answers: its own and a few lookalikes of each (the
    error token left out: it stays itself)."""
    pool = set(vocab)
    for text in vocab:
        pool.update(_lookalike(text, rng) for _ in range(LOOKALIKES))
    pool.discard(ERROR_TOKEN)
    return tuple(sorted(pool))


def _warped_positions(room: int, count: int, gen: np.random.Generator) -> np.ndarray:
    """``count`` distinct sorted positions in ``range(room)``, spread by a random warp: blocks of the room
    get shares drawn from a Dirichlet(WARP_ALPHA) law. A uniform sample would put every answer close to its
    own quantile, so that where a renamed answer sits would say where the original one sat."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    blocks = min(WARP_BLOCKS, room)
    edges = np.linspace(0, room, blocks + 1).astype(np.int64)
    sizes = np.diff(edges)
    weight = gen.gamma(WARP_ALPHA, size=blocks) + 1e-12
    alloc = gen.multinomial(count, weight / weight.sum())
    while (alloc > sizes).any():  # a block cannot take more than it holds: the rest goes to blocks with room
        over = int((alloc - sizes).clip(0).sum())
        alloc = np.minimum(alloc, sizes)
        open_weight = np.where(alloc < sizes, weight, 0.0)
        alloc += gen.multinomial(over, open_weight / open_weight.sum())
    picks = [edges[i] + np.sort(gen.choice(int(sizes[i]), int(alloc[i]), replace=False))
             for i in range(blocks) if alloc[i]]
    return np.concatenate(picks)


def relabelling(vocab: tuple[str, ...], rng: random.Random, universe: tuple[str, ...] | None = None) -> list[str]:
    """A random bijection of ``vocab`` onto plausible answers (as a list in vocabulary order) that keeps
    equality, lexicographic order and the error token: the answers below the error token go, in order, to
    warped random positions among the plausible answers below it, and likewise above it. Codes, and with
    them the order in which answers are first seen, do not change."""
    universe = universe if universe is not None else plausible_answers(vocab, rng)
    gen = np.random.default_rng(rng.getrandbits(128))
    images: dict[str, str] = {ERROR_TOKEN: ERROR_TOKEN}
    for below in (True, False):
        originals = sorted(v for v in set(vocab) if v != ERROR_TOKEN and (v < ERROR_TOKEN) == below)
        room = [u for u in universe if (u < ERROR_TOKEN) == below]
        picks = _warped_positions(len(room), len(originals), gen)
        images.update(zip(originals, (room[i] for i in picks), strict=True))
    return [images[v] for v in vocab]


@dataclass(frozen=True)
class RelabellingAudit:
    """Every answer renamed by a secret order-preserving bijection: catches an answer key in the source."""

    name: str = "relabelling"
    changed: str = "every answer string renamed (answers are opaque labels)"

    def universe(self, pack_path: Path, vocab: tuple[str, ...]) -> tuple[str, ...]:
        """The plausible answers of a pack: drawn once per pack and kept beside it on the host
        (``<pack>.names.json``, readable by its owner only, like the answer key); which of them the answers
        go to is drawn anew by every audit."""
        ident = (str(pack_path), pack_path.stat().st_mtime)
        with _UNIVERSE_LOCK:
            hit = _UNIVERSES.get(ident)
        if hit is not None:
            return hit
        saved = pack_path.with_name(pack_path.stem + NAMES_SUFFIX)
        try:
            hit = tuple(json.loads(saved.read_text()))
        except (OSError, ValueError):
            hit = plausible_answers(vocab, random.SystemRandom())
            try:
                _write_private(saved, json.dumps(hit).encode())
            except OSError:  # a read-only pack directory: keep it in memory only
                pass
        if not set(vocab) - {ERROR_TOKEN} <= set(hit):  # not this pack's (a stale or foreign file)
            hit = plausible_answers(vocab, random.SystemRandom())
        with _UNIVERSE_LOCK:
            if len(_UNIVERSES) > 16:
                _UNIVERSES.clear()
            _UNIVERSES[ident] = hit
        return hit

    def build(self, pack_path: Path, observed: dict[Solve, Observed], rng: random.Random) -> AuditPlan:
        """The pack with its vocabulary renamed (every array of codes unchanged)."""
        arrays = _load_arrays(pack_path)
        vocab = tuple(str(v) for v in arrays["vocab"].tolist())
        renamed = relabelling(vocab, rng, self.universe(pack_path, vocab))
        arrays["vocab"] = np.array(renamed, dtype=str) if renamed else arrays["vocab"]
        return _write_plan(self, arrays)


AUDITS: tuple[Audit, ...] = (CounterfactualAudit(), RelabellingAudit())


def replay_groups(solves: list[Solve]) -> dict[int, list[tuple[int, int]]]:
    """The solves by point, in their order: how the runner replays them (``sandbox/runtime/runner.py``), one
    result per point (and per pack of the task), points in increasing order."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for point, seed, q in solves:
        groups.setdefault(point, []).append((seed, q))
    return dict(sorted(groups.items()))


def differences(plan: AuditPlan, solves: list[Solve], original: JudgePack, observed: dict[Solve, Observed],
                raw_results: list[dict], configs: list[dict]) -> list[str]:
    """Where the audited solves' actions or answers differ from the original run (empty: consistent)."""
    jp = load_judge_pack(plan.pack, original.gold_text)
    groups = replay_groups(solves)
    if len(raw_results) != len(groups):
        return [f"the audit returned {len(raw_results)} result groups, expected {len(groups)}"]

    def text(code: int) -> str | None:
        return original.vocab[code] if code >= 0 else None

    problems = []
    for (point, pairs), raw in zip(groups.items(), raw_results, strict=True):
        try:
            replay = judge_solves(jp, raw, pairs)
        except JudgeError as exc:
            problems.append(f"the audit replay of {configs[point]} was not a valid record: {exc}")
            continue
        for i, (seed, q) in enumerate(pairs):
            seen = observed[(point, seed, q)]
            a = int(replay.answers[i])
            if a != seen.answer:
                what = f"answered {text(a)!r} instead of {text(seen.answer)!r}"
            elif not (np.array_equal(seen.reads, replay.reads[i]) and np.array_equal(seen.full, replay.full[i])):
                what = "took other actions"
            else:
                continue
            problems.append(f"{jp.name} question {q} (seed {seed}, config {configs[point]}): with "
                            f"{plan.audit.changed}, the controller {what}")
    return problems


def audit_in_process(cls: type, pack_path: str | Path, config: dict[str, Any], seeds: list[int],
                     rng: random.Random, count: int | None = None) -> dict[str, list[str]]:
    """Run one point of a loaded controller class in this process, judge it and replay ``count`` sampled
    solves (all of them when None) under every audit: the problems each audit found. For trusted code (tests,
    benchmarks): the checks are those of the sandboxed path, only the isolation is missing."""
    from .judge import judge_point
    from .runtime.evaluate import evaluate_point
    from .runtime.replay import load_pack

    pack_path = Path(pack_path)
    jp = load_judge_pack(pack_path)
    raw = evaluate_point(cls, load_pack(str(pack_path)), config, list(seeds), frozenset())
    _, judged = judge_point(jp, raw, config, list(seeds), frozenset())
    solves = choose_solves(1, list(seeds), jp.questions, count or len(seeds) * jp.questions, rng)
    observed = observed_rows(judged, 0, solves, jp.questions, list(seeds))
    found = {}
    for audit in AUDITS:
        plan = audit.build(pack_path, observed, rng)
        try:
            replay = evaluate_point(cls, load_pack(str(plan.pack)), config, list(seeds), frozenset(),
                                    [(seed, q) for _, seed, q in solves])
            found[audit.name] = differences(plan, solves, jp, observed, [replay], [config])
        finally:
            plan.cleanup()
    return found
