"""Replay packs and the question environment a controller acts on (replay spec §2).

A pack is an ``.npz`` file exported from the store: answer strings interned to integer codes, per-branch
probe codes, branch tokens, final codes, probe_freq. It holds no gold answers: those stay on the host
(``<pack>.key.json``), where the judge scores what the controller returned. Loading needs the standard
library only (``npyfile``), so the runtime runs the same under CPython and PyPy.
"""

from __future__ import annotations

import json
import random

from .npyfile import load_npz

PACK_FORMAT = 2


class QuestionData:
    """One question's branches in file order; answers are shared (interned) str objects."""

    __slots__ = ("probe_freq", "probes", "tokens", "finals")

    def __init__(self, probe_freq: int, probes: tuple[tuple[str, ...], ...], tokens: tuple[int, ...],
                 finals: tuple[str, ...]) -> None:
        self.probe_freq = probe_freq
        self.probes = probes
        self.tokens = tokens
        self.finals = finals


class ReplayPack:
    """All questions of one environment (model x dataset), ready to replay; ``vocab`` lists every answer."""

    __slots__ = ("name", "content_hash", "questions", "vocab")

    def __init__(self, name: str, content_hash: str, questions: tuple[QuestionData, ...],
                 vocab: tuple[str, ...]) -> None:
        self.name = name
        self.content_hash = content_hash
        self.questions = questions
        self.vocab = vocab


def load_pack(path: str) -> ReplayPack:
    """Load a replay pack written by ``autotts_graph.store.packs``."""
    z = load_npz(str(path))
    meta = json.loads(z["meta"])
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: unsupported pack format {meta.get('format')!r}")
    vocab = z["vocab"]
    probe_freq, q_offsets, p_offsets = z["probe_freq"], z["question_offsets"], z["probe_offsets"]
    probes, tokens, finals = z["probes"], z["tokens"], z["finals"]
    questions = []
    for q in range(len(probe_freq)):
        lo, hi = q_offsets[q], q_offsets[q + 1]
        questions.append(
            QuestionData(
                probe_freq=probe_freq[q],
                probes=tuple(
                    tuple(vocab[c] for c in probes[p_offsets[b]: p_offsets[b + 1]]) for b in range(lo, hi)
                ),
                tokens=tuple(tokens[lo:hi]),
                finals=tuple(vocab[c] for c in finals[lo:hi]),
            )
        )
    return ReplayPack(name=meta["name"], content_hash=meta["content_hash"], questions=tuple(questions),
                      vocab=tuple(vocab))


_PERMUTATIONS: dict[tuple[int, int], list[int]] = {}


def shuffle_order(seed: int, n: int) -> list[int]:
    """File indices in shuffled order: CPython's Random(seed).shuffle, which depends only on n (spec §2.2)."""
    key = (seed, n)
    order = _PERMUTATIONS.get(key)
    if order is None:
        order = list(range(n))
        random.Random(seed).shuffle(order)
        _PERMUTATIONS[key] = order
    return order


class Question:
    """The environment of one question for one pass: shuffled branches, a cursor, costs (spec §2).

    Controllers see only the four primitives and the cost read-outs. Errors are ValueError/IndexError
    exactly where the spec raises them; the safe wrappers in ``primitives`` turn them into None.
    """

    # A branch's spent tokens are always heads[i] * delta (only non-final advances move either), so they
    # are not stored; the total is the ledger's sum. Both keep the innermost calls short.
    # ``_extra`` counts re-reads of exhausted branches and ``_full`` the fully read ones: with ``_heads`` they
    # are the solve's action record (``actions()``) that the host-side judge re-prices.
    __slots__ = ("_probes", "_tokens", "_finals", "_heads", "_ledger", "_cursor", "_n", "_delta", "_extra", "_full")

    def __init__(self, data: QuestionData, seed: int) -> None:
        order = shuffle_order(seed, len(data.tokens))
        probes, tokens, finals = data.probes, data.tokens, data.finals
        self._probes = [probes[j] for j in order]
        self._tokens = [tokens[j] for j in order]
        self._finals = [finals[j] for j in order]
        n = len(order)
        self._n = n
        self._heads = [0] * n
        self._ledger = [0] * n
        self._cursor = 0
        self._delta = data.probe_freq
        self._extra: dict[int, int] = {}
        self._full: list[int] = []

    @property
    def total_cost(self) -> int:
        """Tokens charged so far (the question's cost)."""
        return sum(self._ledger)

    def _advance(self, i: int) -> tuple[str, bool]:
        """Advance branch i by one chunk, charging its ledger (spec §2.3)."""
        h = self._heads[i]
        probes = self._probes[i]
        if h < len(probes):
            self._heads[i] = h + 1
            self._ledger[i] += self._delta
            return probes[h], False
        # Exhausted: the final answer and the remainder; the head stays, so a re-read re-charges.
        self._extra[i % self._n] = self._extra.get(i % self._n, 0) + 1
        charge = self._tokens[i] - h * self._delta
        if charge > 0:
            self._ledger[i] += charge
        return self._finals[i], True

    def probe_new(self) -> tuple[str, int, bool]:
        """Open the next branch and read its first chunk: (answer, branch_index, finished)."""
        c = self._cursor
        if c >= self._n:
            raise ValueError("index out of range")
        answer, finished = self._advance(c)
        self._cursor = c + 1
        return answer, c, finished

    def probe_more(self, i: int) -> tuple[str, bool]:
        """Read one more chunk of branch i (i <= cursor, as the reference allows): (answer, finished)."""
        if not i <= self._cursor:
            raise ValueError("index out of range")
        # _advance(), inlined: this is the innermost call of every probing controller.
        h = self._heads[i]
        probes = self._probes[i]
        if h < len(probes):
            self._heads[i] = h + 1
            self._ledger[i] += self._delta
            return probes[h], False
        self._extra[i % self._n] = self._extra.get(i % self._n, 0) + 1
        charge = self._tokens[i] - h * self._delta
        if charge > 0:
            self._ledger[i] += charge
        return self._finals[i], True

    def get_new_branch_final_answer(self) -> str:
        """Full read: open the next branch, pay all its tokens, return its final answer."""
        c = self._cursor
        answer = self._finals[c]  # IndexError past the last branch, as in the reference
        self._cursor = c + 1
        self._ledger[c] += self._tokens[c]
        self._full.append(c)
        return answer

    def get_seq_and_total_tokens(self) -> tuple[int, int]:
        """(0, tokens charged to opened branches). For diagnostics, never as a stopping oracle."""
        return 0, sum(self._ledger[: self._cursor])

    def get_cost_per_branch_active(self) -> list[int]:
        """Tokens charged to each opened branch, in branch-index order."""
        return self._ledger[: self._cursor]

    def ledger_consistent(self) -> bool:
        """The evaluator's cost check (spec §3.1): opened branches account for every token charged."""
        return not any(self._ledger[self._cursor:])

    def actions(self) -> tuple[list[int], list[int]]:
        """(probe reads per branch position, indices of fully read branches): what the judge re-prices.

        Reads of positions past the cursor are reported too: whatever touched them, they were read.
        """
        reads = list(self._heads)
        for i, n in self._extra.items():
            reads[i] += n
        return reads, list(self._full)
