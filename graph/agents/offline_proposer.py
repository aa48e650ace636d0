"""The offline proposer: a program search over the mechanism grammar of :mod:`genome`, seeded and reproducible.

In a population run the archive hands each slot a parent and inspirations: the child is a crossover with an
inspiration, the parent's diagnosis turned into edits (``stricter_stop`` → a higher stopping bar,
``more_width`` → more branches, ...), a structural mutation (another mechanism for one decision), or continuous
tuning of its β-ramps. Without a parent (generation 0) the slots start from different seed mixes. No proposal
repeats a mechanism mix + knob set (the schedule on the β grid) of the history, the archive, or this proposer's
own earlier proposals; mixes found clearly worse are avoided (tabu); the complete source comes from
:mod:`codegen`. No API key, no network.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from ..scoring import fitness
from .codegen import generate_source
from .genome import (
    MECHANISMS,
    Genome,
    apply_actions,
    crossover,
    explore,
    mutate,
    seed_genomes,
    tune,
)
from .offline_critic import ngram_profile, normalised_tokens, profile_similarity
from .roles import HistoryEntry, Proposal, ProposerInput, Spend

# Diagnosis actions that undo each other: a second action never reverses the first.
OPPOSITE = {"stricter_stop": "looser_stop", "looser_stop": "stricter_stop", "more_width": "less_width",
            "less_width": "more_width", "less_pruning": "more_pruning", "more_pruning": "less_pruning"}


class HeuristicProposer:
    """Program search over the mechanism grammar, steered by diagnoses; seeded and reproducible."""

    name = "offline-proposer"

    def __init__(self, seed: int = 0, explore_rate: float = 0.5, crossover_rate: float = 0.15,
                 fresh_seed_rate: float = 0.15, novelty_threshold: float = 0.998) -> None:
        self.seed = seed
        self.novelty_threshold = novelty_threshold
        self._profiles: dict[str, Counter] = {}
        self.explore_rate = explore_rate
        self.crossover_rate = crossover_rate
        self.fresh_seed_rate = fresh_seed_rate
        self._proposed: set[str] = set()  # keys proposed by this object: siblings of a generation are in flight

    def spend(self) -> Spend:
        """Offline: no LLM usage."""
        return Spend()

    def propose(self, inp: ProposerInput) -> Proposal:
        """The next candidate: a child of the archive's parent (mutation, crossover with an inspiration,
        diagnosis-driven edits, continuous tuning), or an untried seed mix when there is no parent yet."""
        rng = random.Random(f"offline-proposer:{self.seed}:{inp.seed}:{inp.round}:{inp.slot}:{inp.island}:"
                            f"{inp.attempt}")
        seen = self._seen(inp)
        scored = self._scored(inp)
        feedback = " ".join(inp.feedback).lower()
        wants_structure = any(w in feedback for w in ("similar", "novel", "duplicate"))

        notes: list[str] = []
        parent: HistoryEntry | None = None
        seeds = seed_genomes()
        untried = [g for g in seeds if g.key() not in seen]
        pinned = _genome_or_none(inp.parent)
        if inp.independent and inp.generation > 0:
            # Strategy random: nothing to learn from, so each (generation, slot, attempt) draws its own program: a
            # seed mix chosen by the slot's RNG, then one to three random edits (generation 0 takes the seed
            # mixes themselves, as every strategy does, so strategies share their first generation).
            child = seeds[rng.randrange(len(seeds))]
            for _ in range(1 + rng.randrange(3)):
                child, more = explore(child, rng, structural=True)
                notes += more
            notes.insert(0, "independent draw from a seed mix (strategy random)")
        elif pinned is not None:
            parent = inp.parent
            child, notes = self._population_child(inp, pinned, rng, wants_structure)
        elif untried and (not scored or rng.random() < self.fresh_seed_rate or inp.parent is not None):
            # Start afresh (or from a parent written outside this grammar): the slot's untried seed mix.
            child = untried[inp.slot % len(untried)] if not scored else untried[0]
            notes.append("seed population: an untried mechanism mix")
        elif not scored:
            child = explore(seeds[inp.slot % len(seeds)], rng, structural=True)[0]
            notes.append("explore from a seed mix")
        else:
            parent, child, notes = self._child(inp, scored, rng, wants_structure)
        # Never propose what the history or the archive already holds (mechanism mix + knob set), nor a near-copy
        # the critic would reject as not novel: explore further (structurally after a few tries). Also steer
        # away from mechanism mixes the history already found clearly worse than the best (a tabu list learnt
        # from the evaluations), unless that is where the parent itself lives.
        title = f"Offline generation {inp.round} controller" + (f" (slot {inp.slot})" if inp.slot else "")
        tabu = self._tabu(scored, parent)
        for tries in range(60):
            fresh = child.key() not in seen and self._max_similarity(generate_source(child), inp.history, child) < \
                self.novelty_threshold
            if fresh and (tries >= 20 or _mechanisms(child) not in tabu):
                break
            if fresh and parent is not None and _genome_or_none(parent) is not None:
                # A tabu mechanism mix: go back to the parent's mechanisms and tune its ramps instead.
                child = child.model_copy(update={d: getattr(_genome_of(parent), d) for d in MECHANISMS})
                child = Genome.model_validate(child.model_dump())
                if not any(n.startswith("tabu") for n in notes):
                    notes.append("tabu: that mechanism mix scored clearly worse before; kept the parent's")
                child, more = tune(child, rng, knobs=2)
            elif tries < 8 and not wants_structure:
                child, more = tune(child, rng, knobs=1 + tries // 3)
            else:
                child, more = explore(child, rng, structural=True)
            notes += more
        self._proposed.add(child.key())
        rationale = self._rationale(parent, scored, notes)
        source = generate_source(child, title=title, rationale=rationale)
        return Proposal(source=source, rationale=rationale, parent_id=parent.candidate_id if parent else None,
                        genome=child.model_dump())

    def _seen(self, inp: ProposerInput) -> set[str]:
        """Genome keys that may not be proposed again: the history, the archive (parent and inspirations),
        the source the feedback refers to, and what this proposer already proposed (siblings in flight)."""
        seen = {_genome_key(h.genome) for h in inp.history if h.genome}
        for h in [inp.parent, *inp.inspirations]:
            if h is not None and h.genome:
                seen.add(_genome_key(h.genome))
        if inp.last_source:
            seen.add(_source_genome_key(inp.last_source))
        seen |= self._proposed
        seen.discard(None)
        return seen  # type: ignore[return-value]

    def _population_child(self, inp: ProposerInput, genome: Genome, rng: random.Random,
                          wants_structure: bool) -> tuple[Genome, list[str]]:
        """A child of the archive's parent: crossover with an inspiration, the parent's diagnosis, a structural
        mutation, or continuous tuning of its ramps (drawn per slot)."""
        parent = inp.parent
        fit = parent.fitness if parent.fitness is not None else fitness(parent.curve, inp.baselines) \
            if parent.curve else None
        notes = [f"parent {parent.candidate_id} (generation {parent.round}"
                 + (f", fitness {fit:+.2f})" if fit is not None else ")")]
        mates = [(h, g) for h in inp.inspirations for g in [_genome_or_none(h)]
                 if g is not None and h.candidate_id != parent.candidate_id]
        actions = list(parent.diagnosis.actions) if parent.diagnosis else []
        draw = rng.random()
        if wants_structure:
            genome, edits = explore(genome, rng, structural=True)
            return genome, notes + edits
        if mates and draw < self.crossover_rate + 0.15:
            mate, other = mates[rng.randrange(len(mates))]
            genome = crossover(genome, other, rng)
            notes.append(f"crossover with inspiration {mate.candidate_id}")
            if rng.random() < 0.5:
                genome, edits = tune(genome, rng, knobs=1)
                notes += edits
            return genome, notes
        if actions and draw < 0.55:
            chosen = [actions[0]]
            extra = [a for a in actions[1:] if OPPOSITE.get(a) != actions[0]]
            if extra and rng.random() < 0.4:
                chosen.append(rng.choice(extra))
            genome, edits = apply_actions(genome, chosen, rng, max_actions=2)
            return genome, notes + [f"diagnosis → {e}" for e in edits]
        genome, edits = mutate(genome, rng, structural_rate=0.3)
        return genome, notes + edits

    @staticmethod
    def _tabu(scored: list[tuple[float, HistoryEntry, Genome]], parent: HistoryEntry | None) -> set[tuple[str, ...]]:
        """Mechanism mixes whose best evaluation trails the best candidate by more than 1.5 points of fitness."""
        if not scored:
            return set()
        best_by_mix: dict[tuple[str, ...], float] = {}
        for fit, _, g in scored:
            mix = _mechanisms(g)
            best_by_mix[mix] = max(fit, best_by_mix.get(mix, -math.inf))
        top = scored[0][0]
        own = _mechanisms(_genome_of(parent)) if parent is not None else None
        return {mix for mix, fit in best_by_mix.items() if fit < top - 1.5 and mix != own}

    def _max_similarity(self, source: str, history: list[HistoryEntry], genome: Genome | None = None) -> float:
        """Highest normalised-AST similarity to a history source (the critic's novelty measure).

        With the child's genome, only history entries of the same mechanism mix (and code without a genome)
        are compared: generated sources of different mixes differ in structure, far below any threshold.
        """
        def profile(src: str) -> Counter:
            if src not in self._profiles:
                self._profiles[src] = ngram_profile(normalised_tokens(src))
            return self._profiles[src]
        mix = _mechanisms(genome) if genome is not None else None
        others = [h for h in history if h.source and (mix is None or _mix_of(h) in (None, mix))]
        if not others:
            return 0.0
        mine = ngram_profile(normalised_tokens(source))
        return max(profile_similarity(mine, profile(h.source)) for h in others)

    def _scored(self, inp: ProposerInput) -> list[tuple[float, HistoryEntry, Genome]]:
        out = []
        for h in inp.history:
            if h.status != "evaluated" or not h.genome or not h.curve:
                continue
            try:
                g = Genome.model_validate(h.genome)
            except ValueError:
                continue  # a genome from another proposer's grammar: cannot be mutated here
            out.append((h.fitness if h.fitness is not None else fitness(h.curve, inp.baselines), h, g))
        # Stable order: fitness, then the earlier round, then the genome's content key (candidate ids are
        # random, and the history's order follows the lanes' timing).
        out.sort(key=lambda t: (-t[0], t[1].round, t[2].key()))
        return out

    def _child(self, inp: ProposerInput, scored: list[tuple[float, HistoryEntry, Genome]], rng: random.Random,
               wants_structure: bool) -> tuple[HistoryEntry, Genome, list[str]]:
        top = scored[: 3]
        pick = 0 if rng.random() < 0.6 else rng.randrange(len(top))
        fit, parent, genome = top[pick]
        notes = [f"parent {parent.candidate_id} (round {parent.round}, fitness {fit:+.2f})"]
        if len(top) > 1 and rng.random() < self.crossover_rate:
            other = top[(pick + 1 + rng.randrange(len(top) - 1)) % len(top)]
            genome = crossover(genome, other[2], rng)
            notes.append(f"crossover with {other[1].candidate_id}")
        # The parent's own diagnosis, or the latest one when the parent is the latest candidate.
        diagnosis = parent.diagnosis
        if diagnosis is None and inp.history and inp.history[-1].candidate_id == parent.candidate_id:
            diagnosis = inp.diagnosis
        actions = list(diagnosis.actions) if diagnosis else []
        if actions:
            # Act on the first (most important) action always, on another one sometimes: from the parent's own
            # list, or from the latest candidate's diagnosis when that was a different (worse) sibling.
            chosen = [actions[0]]
            latest = inp.diagnosis.actions if inp.diagnosis and inp.history and \
                inp.history[-1].candidate_id != parent.candidate_id else []
            extra = [a for a in (latest[:1] if latest and rng.random() < 0.5 else actions[1:])
                     if a != actions[0] and OPPOSITE.get(a) != actions[0]]
            if extra and rng.random() < 0.5:
                chosen.append(rng.choice(extra))
            genome, edits = apply_actions(genome, chosen, rng, max_actions=2)
            notes += [f"diagnosis → {e}" for e in edits]
        if not actions or wants_structure or rng.random() < self.explore_rate:
            genome, edits = explore(genome, rng, structural=wants_structure)
            notes += edits
        return parent, genome, notes

    @staticmethod
    def _rationale(parent: HistoryEntry | None, scored: list, notes: list[str]) -> str:
        best = f"best so far fitness {scored[0][0]:+.2f} ({scored[0][1].candidate_id})" if scored else "no history"
        origin = f"child of {parent.candidate_id}" if parent else "fresh genome"
        return f"Offline proposer: {origin}; {best}. Changes: " + "; ".join(notes) + "."


def _mechanisms(genome: Genome) -> tuple[str, ...]:
    return genome.mechanisms()


def _genome_of(entry: HistoryEntry) -> Genome:
    return Genome.model_validate(entry.genome)


def _genome_or_none(entry: HistoryEntry | None) -> Genome | None:
    """The entry's genome in this grammar, or None (no entry, no genome, or another grammar's)."""
    if entry is None or not entry.genome:
        return None
    try:
        return Genome.model_validate(entry.genome)
    except ValueError:
        return None


def _mix_of(entry: HistoryEntry) -> tuple[str, ...] | None:
    g = _genome_or_none(entry)
    return _mechanisms(g) if g is not None else None


def _genome_key(genome: dict[str, Any] | None) -> str | None:
    if not genome:
        return None
    try:
        return Genome.model_validate(genome).key()
    except ValueError:
        return None


def _source_genome_key(source: str) -> str | None:
    # The generated NAME carries the genome key ("offline_<key>"): a rejected attempt is not repeated.
    marker = 'NAME = "offline_'
    at = source.find(marker)
    if at < 0:
        return None
    return source[at + len(marker): at + len(marker) + 10]
