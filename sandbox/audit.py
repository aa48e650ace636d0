"""The counterfactual audit: does the controller act only on what it observed?

The judge (``sandbox/judge.py``) re-prices what a controller did, but cannot see why it did it. A
controller that reads the pack file or the question's private lists, or remembers other questions or
seeds, takes actions that depend on data it never observed through the primitives. The audit picks a
few solves at random (a secret per evaluation, so a controller cannot know which), builds for each a
counterfactual question where everything the controller did *not* observe in that solve is replaced by
other real branches of the same environment, and replays exactly those solves in a fresh sandbox, each
with a fresh controller. An honest controller sees the same observations, so it must take the same
actions and give the same answer; any difference flags the candidate.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .judge import JudgeError, JudgePack, Solves, decode_ints, judge_solves, load_judge_pack
from .runtime.replay import shuffle_order

DEFAULT_SOLVES = 6  # audited solves per (controller, environment); each is a different question


@dataclass(frozen=True)
class Observed:
    """What one original solve did: its reads and full reads by shuffled position, and its answer."""

    reads: np.ndarray
    full: np.ndarray
    answer: str | None


@dataclass(frozen=True)
class AuditPlan:
    """The solves to replay, as (point index, seed, question), and the counterfactual pack holding them."""

    solves: list[tuple[int, int, int]]
    pack: Path
    workdir: tempfile.TemporaryDirectory


def choose_solves(points: int, seeds: list[int], questions: int, count: int,
                  rng: random.Random) -> list[tuple[int, int, int]]:
    """``count`` solves on distinct questions (one counterfactual question each), at random points and seeds."""
    chosen = rng.sample(range(questions), min(count, questions))
    return [(rng.randrange(points), rng.choice(seeds), q) for q in chosen]


def observed_rows(judged: Solves, point: int, solves: list[tuple[int, int, int]], questions: int,
                  seeds: list[int], vocab: tuple[str, ...]) -> dict[tuple[int, int, int], Observed]:
    """The audited solves of ``point`` picked out of its judged solves (seeds x questions order)."""
    out = {}
    for p, seed, q in solves:
        if p == point:
            row = seeds.index(seed) * questions + q
            a = int(judged.answers[row])
            out[(p, seed, q)] = Observed(reads=judged.reads[row].copy(), full=judged.full[row].copy(),
                                         answer=vocab[a] if a >= 0 else None)
    return out


def observed_from_record(raw: dict[str, Any], point: int, solves: list[tuple[int, int, int]], jp: JudgePack,
                         seeds: list[int]) -> dict[tuple[int, int, int], Observed] | None:
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
        out[key] = Observed(reads=reads[row].copy(), full=full[row], answer=jp.vocab[a] if a >= 0 else None)
    return out


def same_observations(a: dict[tuple[int, int, int], Observed], b: dict[tuple[int, int, int], Observed]) -> bool:
    """Whether two sets of observed solves are identical (same solves, reads, full reads and answers)."""
    return a.keys() == b.keys() and all(
        a[k].answer == b[k].answer and np.array_equal(a[k].reads, b[k].reads) and np.array_equal(a[k].full, b[k].full)
        for k in a)


def _donor(rng: random.Random, lo: int, hi: int, total: int) -> int:
    """A branch drawn uniformly from the other questions' (outside ``lo:hi``); the question's own when it
    is the only one. Its own branches would keep its answer distribution, and with it the decisions of a
    controller that peeks at them."""
    others = total - (hi - lo)
    if others <= 0:
        return lo + rng.randrange(hi - lo)
    r = rng.randrange(others)
    return r if r < lo else r + (hi - lo)


def build_plan(pack_path: Path, gold: tuple[str, ...], observed: dict[tuple[int, int, int], Observed],
               rng: random.Random) -> AuditPlan:
    """Write the counterfactual pack for the observed solves (their questions altered, the others as they were).

    In an altered question, every branch whose final answer the solve did not reach keeps the probes it
    read (each said "not finished") and takes the rest of its probes, its length and its final answer from
    a random branch of another question. The pack is built from the real pack's arrays: the same name,
    vocabulary and format, so nothing in the box tells an audit apart.
    """
    with np.load(pack_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    q_off, p_off = arrays["question_offsets"], arrays["probe_offsets"]
    freq, tokens, finals = arrays["probe_freq"], arrays["tokens"].copy(), arrays["finals"].copy()
    total = len(tokens)
    original = [arrays["probes"][p_off[b]:p_off[b + 1]] for b in range(total)]  # donors come from these
    probes = list(original)
    for (_, seed, qi), seen in observed.items():
        lo, hi, delta = int(q_off[qi]), int(q_off[qi + 1]), int(freq[qi])
        for pos, j in enumerate(shuffle_order(seed, hi - lo)):
            b, n = lo + j, int(seen.reads[pos])
            if bool(seen.full[pos]) or n > len(original[b]):
                continue  # the final answer was revealed: the branch stays as it is
            d = _donor(rng, lo, hi, total)
            # The n probes read are kept, each having said "not finished": the branch keeps at least n probes.
            new = np.concatenate([original[b][:n], original[d][n:]])
            d_tokens, d_len = int(arrays["tokens"][d]), len(original[d])
            probes[b] = new
            tokens[b] = len(new) * delta + max(0, d_tokens - d_len * delta)
            finals[b] = arrays["finals"][d]
    lengths = np.array([len(p) for p in probes], dtype=p_off.dtype)
    arrays.update(probes=np.concatenate(probes).astype(arrays["probes"].dtype, copy=False), tokens=tokens,
                  finals=finals, probe_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(p_off.dtype))
    meta = json.loads(str(arrays.pop("meta")))
    digest = hashlib.sha256()  # the content hash exactly as store/packs.py computes it
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    meta["content_hash"] = digest.hexdigest()
    arrays["meta"] = np.array(json.dumps(meta))
    workdir = tempfile.TemporaryDirectory(prefix="autotts-audit-")
    # The audit compares actions, never scores: no answer key is written next to it.
    path = Path(workdir.name) / f"{meta['content_hash']}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    path.chmod(0o644)
    return AuditPlan(solves=sorted(observed), pack=path, workdir=workdir)


def differences(plan: AuditPlan, gold: tuple[str, ...], observed: dict[tuple[int, int, int], Observed],
                raw_results: list[dict], configs: list[dict]) -> list[str]:
    """Where the audited solves' actions or answers differ from the original run (empty: consistent)."""
    jp = load_judge_pack(plan.pack, gold)
    groups: dict[int, list[tuple[int, int]]] = {}
    for point, seed, q in plan.solves:
        groups.setdefault(point, []).append((seed, q))
    if len(raw_results) != len(groups):
        return [f"the audit returned {len(raw_results)} result groups, expected {len(groups)}"]
    problems = []
    for (point, pairs), raw in zip(sorted(groups.items()), raw_results, strict=True):
        try:
            replay = judge_solves(jp, raw, pairs)
        except JudgeError as exc:
            problems.append(f"the audit replay of {configs[point]} was not a valid record: {exc}")
            continue
        for i, (seed, q) in enumerate(pairs):
            seen = observed[(point, seed, q)]
            a = int(replay.answers[i])
            answer = jp.vocab[a] if a >= 0 else None
            if answer != seen.answer:
                what = f"answered {answer!r} instead of {seen.answer!r}"
            elif not (np.array_equal(seen.reads, replay.reads[i]) and np.array_equal(seen.full, replay.full[i])):
                what = "took other actions"
            else:
                continue
            problems.append(f"{jp.name} question {q} (seed {seed}, config {configs[point]}): with the data it had "
                            f"not observed replaced, the controller {what}")
    return problems
