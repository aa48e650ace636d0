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

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .judge import JudgeError, Solves, judge_solves, key_path, load_judge_pack
from .runtime.replay import load_pack, shuffle_order

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


def _counterfactual(data, seed: int, seen: Observed, rng: random.Random, donors: list) -> tuple[list, list, list]:
    """One question's branches (file order) with everything the solve did not observe replaced."""
    nb = len(data.tokens)
    order = shuffle_order(seed, nb)
    delta = data.probe_freq
    probes, tokens, finals = list(data.probes), list(data.tokens), list(data.finals)
    for pos in range(nb):
        j = order[pos]
        n, whole = int(seen.reads[pos]), bool(seen.full[pos])
        if whole or n > len(data.probes[j]):
            continue  # the final answer was revealed: the branch stays as it is
        d_probes, d_tokens, d_final = rng.choice(donors)
        # The n probes read are kept, each having said "not finished": the branch keeps at least n probes.
        new = tuple(data.probes[j][:n]) + tuple(d_probes[n:])
        probes[j] = new
        tokens[j] = len(new) * delta + max(0, d_tokens - len(d_probes) * delta)
        finals[j] = d_final
    return probes, tokens, finals


def build_plan(pack_path: Path, gold: tuple[str, ...], observed: dict[tuple[int, int, int], Observed],
               rng: random.Random) -> AuditPlan:
    """Write the counterfactual pack for the observed solves (their questions altered, the others as they were)."""
    from autotts_graph.store.packs import write_pack

    pack = load_pack(str(pack_path))
    altered = {q: (seed, seen) for (_, seed, q), seen in observed.items()}
    records = []
    for qi, data in enumerate(pack.questions):
        probes, tokens, finals = data.probes, data.tokens, data.finals
        if qi in altered:
            # Donors from the other questions only: the question's own branches would keep its answer
            # distribution, and with it the decisions of a controller that peeks at them.
            donors = [(p, t, f) for qj, d in enumerate(pack.questions) if qj != qi
                      for p, t, f in zip(d.probes, d.tokens, d.finals, strict=True)] or \
                     list(zip(data.probes, data.tokens, data.finals, strict=True))
            probes, tokens, finals = _counterfactual(data, *altered[qi], rng, donors)
        records.append({"gold_answer": gold[qi], "probe_freq": data.probe_freq,
                        "each_branch": [[list(p), int(t), f] for p, t, f in zip(probes, tokens, finals, strict=True)]})
    workdir = tempfile.TemporaryDirectory(prefix="autotts-audit-")
    # The same environment name and format as the real pack: nothing in the box tells an audit apart.
    path = write_pack(pack.name, records, workdir.name)
    key_path(path).unlink()  # the audit compares actions, never scores: no answer key is needed
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
