"""Offline implementations of the three roles: no API key, no network, deterministic from a seed.

* :class:`HeuristicProposer` — a program search over the mechanism grammar of :mod:`genome`. In a population
  run the archive hands each slot a parent and inspirations: the child is a crossover with an inspiration,
  the parent's diagnosis turned into edits (``stricter_stop`` → a higher stopping bar, ``more_width`` → more
  branches, ...), a structural mutation (another mechanism for one decision), or continuous tuning of its
  β-ramps. Without a parent (generation 0) the slots start from different seed mixes. No proposal repeats a
  mechanism mix + knob set (the schedule on the β grid) of the history, the archive, or this proposer's own
  earlier proposals; mixes found clearly worse are avoided (tabu); the complete source comes from :mod:`codegen`.
* :class:`RuleCritic` — static rules: contract present, single knob, monotone schedule over the β grid,
  trace surface, no forbidden imports / I/O, no cost read-out in the decision logic, and novelty against the
  history and the baselines by normalised-AST similarity — each rejection with a reason a proposer can act on.
* :class:`StatsDiagnostician` — statistics over per-question outcomes and sampled traces: points below the
  best baseline at similar cost, tokens spent after the answer had settled, premature stops, correct
  branches pruned, never-converged questions, no scaling with β — each with counts, example ids and the
  machine-usable actions the proposer maps to genome edits.

Fitness, frontiers and domination live in :mod:`autotts_graph.graph.scoring` (re-exported here).
"""

from __future__ import annotations

import ast
import math
import random
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from autotts_graph.tools.validate import COST_READOUTS, static_issues

from ..scoring import (  # noqa: F401  (re-exported: the scoring helpers' former home)
    baseline_means,
    dominated_by,
    fitness,
    frontier_accuracy,
    mean_curve,
    non_dominated_points,
)
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
from .roles import (
    CriticInput,
    CriticVerdict,
    DiagnoseInput,
    Diagnosis,
    FailureMode,
    HistoryEntry,
    Proposal,
    ProposerInput,
    Spend,
)

BASELINE_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "controllers"
# Finish reasons that mean "ran out of branches or steps" rather than a voluntary stop (baselines included).
OPPOSITE = {"stricter_stop": "looser_stop", "looser_stop": "stricter_stop", "more_width": "less_width",
            "less_width": "more_width", "less_pruning": "more_pruning", "more_pruning": "less_pruning"}
EXHAUSTED_REASONS = frozenset({"loop_end", "no_branches", "max_steps", "max_samples_or_exhausted",
                               "max_windows_or_exhausted", "all_branches_done_or_no_active", "k_reads_or_exhausted",
                               "k_branches_or_exhausted", "cap_or_exhausted", "budget_or_exhausted",
                               "all_branches_done"})


# --------------------------------------------------------------------------- proposer

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
        if pinned is not None:
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


# --------------------------------------------------------------------------- critic

def normalised_tokens(source: str) -> list[str]:
    """AST node-type sequence with docstrings dropped, identifiers erased and strings blanked.

    Identifiers are erased rather than numbered by first use, so one added variable does not renumber the
    rest of the file. Numbers are kept (to three significant digits): a different schedule is a different
    controller, but a rename, a reformat or a reworded docstring is not.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out: list[str] = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            body[0].value.value = ""  # docstring
        out.append(type(node).__name__)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or v is None:
                out.append(repr(v))
            elif isinstance(v, (int, float)):
                out.append(f"{v:.3g}")
            else:
                out.append("S")
    return out


def ngram_profile(tokens: list[str], n: int = 4) -> Counter:
    """Multiset of the ``n``-grams of a normalised token sequence."""
    return Counter(tuple(tokens[i:i + n]) for i in range(max(0, len(tokens) - n + 1)))


def profile_similarity(a: Counter, b: Counter) -> float:
    """Dice similarity (0..1) of two n-gram multisets."""
    total = sum(a.values()) + sum(b.values())
    return 2.0 * sum((a & b).values()) / total if total else 0.0


def similarity(a: list[str], b: list[str]) -> float:
    """Similarity (0..1) of two normalised token sequences: Dice over their 4-gram multisets.

    Linear time (the critic compares every candidate with the whole history and the baselines); 1.0 for
    sources that differ only in names, strings, docstrings or layout.
    """
    if not a or not b:
        return 0.0
    return profile_similarity(ngram_profile(a), ngram_profile(b))


class RuleCritic:
    """Static contract and novelty rules with reasons a proposer can act on."""

    name = "offline-critic"

    def __init__(self, similarity_threshold: float = 0.998, baseline_threshold: float = 0.9,
                 compare_baselines: bool = True) -> None:
        self.similarity_threshold = similarity_threshold
        self.baseline_threshold = baseline_threshold
        self._profiles: dict[str, Counter] = {}  # source -> n-gram profile (history sources recur every review)
        self._baselines: dict[str, Counter] = {}
        if compare_baselines and BASELINE_DIR.is_dir():
            self._baselines = {p.stem: self._profile(p.read_text()) for p in sorted(BASELINE_DIR.glob("*.py"))
                               if not p.stem.startswith("_")}

    def spend(self) -> Spend:
        """Offline: no LLM usage."""
        return Spend()

    def review(self, inp: CriticInput) -> CriticVerdict:
        """Approve, or reject with every rule that failed."""
        reasons = [f"fix the check error: {e}" for e in inp.check_errors]
        errors, warnings = static_issues(inp.source)
        reasons += [f"static rule: {e}" for e in errors]
        try:
            tree = ast.parse(inp.source)
        except SyntaxError:
            return CriticVerdict(approve=False, reasons=reasons or ["the source does not parse"])
        reasons += _contract_reasons(tree)
        reasons += _oracle_reasons(tree)
        reasons += _schedule_reasons(inp.schedule)
        max_sim, sim_reasons = self._novelty(inp.source, inp.history)
        reasons += sim_reasons
        return CriticVerdict(approve=not reasons, reasons=reasons, max_similarity=round(max_sim, 4))

    def _profile(self, source: str) -> Counter:
        profile = self._profiles.get(source)
        if profile is None:
            profile = self._profiles[source] = ngram_profile(normalised_tokens(source))
        return profile

    def _novelty(self, source: str, history: list[HistoryEntry]) -> tuple[float, list[str]]:
        mine = self._profile(source)
        best, best_what = 0.0, ""
        reasons: list[str] = []
        for h in history:
            if not h.source:
                continue
            s = profile_similarity(mine, self._profile(h.source))
            if s > best:
                best, best_what = s, f"candidate {h.candidate_id} (round {h.round})"
        if best >= self.similarity_threshold:
            reasons.append(f"novelty: {best:.3f} normalised-AST similarity to {best_what} (threshold "
                           f"{self.similarity_threshold}); change a mechanism (how to widen, deepen, prune, stop or "
                           "aggregate) or several schedule ramps, not a rename or a single constant")
        for name, other in self._baselines.items():
            s = profile_similarity(mine, other)
            if s >= self.baseline_threshold:
                reasons.append(f"novelty: {s:.3f} similar to the baseline {name}; the contract asks for a controller "
                               "that differs substantively from SC/ASC/ESC/Parallel-Probe/CMC")
            best = max(best, s)
        return best, reasons


def _contract_reasons(tree: ast.Module) -> list[str]:
    reasons: list[str] = []
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and any((isinstance(b, ast.Name) and b.id == "Controller")
                       or (isinstance(b, ast.Attribute) and b.attr == "Controller") for b in n.bases)]
    if len(classes) != 1:
        reasons.append(f"contract: define exactly one subclass of autotts_runtime.Controller (found {len(classes)})")
        return reasons
    cls = classes[0]
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    for needed in ("schedule", "solve"):
        if needed not in methods:
            reasons.append(f"contract: {cls.name} must define {needed}() (schedule(beta) -> dict of every "
                           "hyper-parameter; solve(question) -> answer)")
    if not any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NAME" for t in n.targets)
               for n in cls.body):
        reasons.append(f"contract: {cls.name} must set a class attribute NAME")
    init = methods.get("__init__")
    if init is not None and len(init.args.args) > 2:
        reasons.append("single knob: the constructor takes only `config` (beta lives in config['beta'])")
    events = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and n.func.attr == "record" and n.args and isinstance(n.args[0], ast.Constant)}
    for event in ("start", "finish"):
        if event not in events:
            reasons.append(f"trace: record a '{event}' step (every solve starts with 'start' and ends with exactly "
                           "one 'finish')")
    for node in ast.walk(tree):
        # config may carry beta only: reads of other keys are extra knobs.
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and \
                isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "config" and node.args and \
                isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and \
                node.value.attr == "config" and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        if key is not None and key != "beta":
            reasons.append(f"single knob: config key {key!r} is read; derive it from beta in schedule() instead")
    return reasons


def _oracle_reasons(tree: ast.Module) -> list[str]:
    """Cost read-outs are allowed only as trace payloads, never in the decision logic."""
    inside_record: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record":
            inside_record.update(id(n) for n in ast.walk(node))
    reasons = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in COST_READOUTS and id(node) not in inside_record:
            reasons.append(f"oracle: line {node.lineno} uses {node.attr}() outside a trace record; the cost read-out "
                           "may not drive decisions — count your own probe calls if you need an effort measure")
    return reasons


def _schedule_reasons(schedule: dict[str, dict[str, Any]]) -> list[str]:
    if not schedule:
        return []
    betas = sorted(schedule, key=float)
    reasons = []
    keys = sorted({k for p in schedule.values() for k in p})
    for key in keys:
        values = [schedule[b].get(key) for b in betas]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            if len({repr(v) for v in values}) > 1:
                reasons.append(f"schedule: knob {key!r} is not numeric but varies with beta ({values})")
            continue
        up = all(a <= b for a, b in zip(values, values[1:], strict=False))
        down = all(a >= b for a, b in zip(values, values[1:], strict=False))
        if not (up or down):
            reasons.append(f"schedule: knob {key!r} is not monotone over the beta grid ({values}); use a clipped "
                           "ramp lo + (hi - lo) * beta ** p")
    if len(schedule) > 1 and all(schedule[betas[0]] == schedule[b] for b in betas[1:]):
        reasons.append("schedule: nothing changes with beta; budget knobs must grow with beta")
    return reasons


# --------------------------------------------------------------------------- diagnostician

def _accuracy_index(inp: DiagnoseInput) -> tuple[dict[tuple, float], dict[str, float]]:
    """Accuracy by (env, question, beta), and the largest beta evaluated per environment."""
    acc_at = {(o.env, o.question_index, o.beta): o.accuracy for o in inp.outcomes}
    top_beta: dict[str, float] = {}
    for o in inp.outcomes:
        if o.beta is not None and o.beta > top_beta.get(o.env, -1.0):
            top_beta[o.env] = o.beta
    return acc_at, top_beta


class StatsDiagnostician:
    """Failure modes from outcome statistics and sampled traces, with counts, examples and actions."""

    name = "offline-diagnostician"

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples

    def spend(self) -> Spend:
        """Offline: no LLM usage."""
        return Spend()

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis:
        """Structured failure modes; ``actions`` ordered by how much each mode costs."""
        if inp.error_kind in ("audit", "contract"):
            # The judge refused the figures: no statistics to read, the code itself must change.
            kind = "hidden_information" if inp.error_kind == "audit" else "contract_violation"
            mode = FailureMode(kind=kind, count=1, share=1.0, evidence=[(inp.error or "")[:400]],
                               suggestion="act only on what probe_new/probe_more/full reads returned in the current "
                                          "question: no reading of replay data or internals, no memory across "
                                          "questions or seeds, and return an answer the controller observed"
                               if kind == "hidden_information" else
                               "return a plain str the controller observed (or None) and touch only opened branches")
            return Diagnosis(summary=f"{kind}: {(inp.error or inp.error_kind)[:200]}", failure_modes=[mode],
                             actions=["fix_crash"], crashed=True)
        if inp.error_kind:
            kind = "timeout" if "timeout" in inp.error_kind else "crash"
            action = "speed_up" if kind == "timeout" else "fix_crash"
            mode = FailureMode(kind=kind, count=1, share=1.0, evidence=[(inp.error or "")[:400]],
                               suggestion="make every solve path terminate quickly" if kind == "timeout"
                               else "fix the error in the controller's own code (see the traceback lines)")
            return Diagnosis(summary=f"{kind}: {(inp.error or inp.error_kind)[:200]}", failure_modes=[mode],
                             actions=[action], crashed=True)
        modes: list[tuple[float, FailureMode, list[str]]] = []
        gold = {(o.env, o.question_index): o.gold for o in inp.outcomes}
        for fn in (self._below_baseline, self._no_scaling, self._premature, self._wasted, self._pruned_correct,
                   self._never_converged):
            found = fn(inp, gold)
            if found is not None:
                modes.append(found)
        modes.sort(key=lambda t: -t[0])
        actions: list[str] = []
        for _, _, acts in modes:
            for a in acts:
                if a not in actions:
                    actions.append(a)
        mc = mean_curve(inp.curve)
        head = ""
        if mc:
            lo, hi = mc[0], mc[-1]
            n_envs = len({p.env for p in inp.curve})
            head = (f"mean over {n_envs} envs: {lo[1]:.1f}% at {lo[2] / 1000:.0f}k (β={lo[0]}) "
                    f"→ {hi[1]:.1f}% at {hi[2] / 1000:.0f}k (β={hi[0]}). ")
        summary = head + ("; ".join(f"{m.kind} ×{m.count}" for _, m, _ in modes) or "no failure mode stands out")
        return Diagnosis(summary=summary, failure_modes=[m for _, m, _ in modes], actions=actions)

    # Each detector returns (severity, mode, actions) or None; severity ~ accuracy points or token share at stake.

    def _below_baseline(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        if not inp.baselines or not inp.curve:
            return None
        low_cost, high_cost, examples, evidence, deficits = 0, 0, [], [], []
        costs = sorted(p.avg_cost for p in inp.curve)
        median_cost = costs[len(costs) // 2]
        for p in inp.curve:
            rivals = [b for b in inp.baselines if b.env == p.env and b.avg_cost <= 1.1 * p.avg_cost]
            if not rivals:
                continue
            best = max(rivals, key=lambda b: (b.accuracy, -b.avg_cost))
            gap = best.accuracy - p.accuracy
            if gap > 0.5:
                deficits.append(gap)
                if p.avg_cost <= median_cost:
                    low_cost += 1
                else:
                    high_cost += 1
                examples.append(f"{p.env} β={p.beta}")
                evidence.append(f"{p.env} β={p.beta}: {p.accuracy:.1f}% at {p.avg_cost / 1000:.0f}k vs {best.label} "
                                f"{best.accuracy:.1f}% at {best.avg_cost / 1000:.0f}k")
        if not deficits:
            return None
        actions = []
        if high_cost >= low_cost:
            actions += ["stricter_stop", "more_width"]
        if low_cost:
            actions += ["less_width", "looser_stop"] if low_cost > high_cost else ["deeper_probing"]
        mode = FailureMode(kind="below_baseline", count=len(deficits), share=len(deficits) / len(inp.curve),
                           evidence=evidence[: self.max_examples], examples=examples[: self.max_examples],
                           suggestion="at high β spend where it buys accuracy (stricter stop, more width); "
                                      "at low β be cheaper (narrower start, earlier stop)")
        return statistics.fmean(deficits) * len(deficits) / len(inp.curve), mode, actions

    def _no_scaling(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        mc = mean_curve(inp.curve)
        if len(mc) < 2:
            return None
        (_, a0, c0), (_, a1, c1) = mc[0], mc[-1]
        base_top = max((b.accuracy for b in inp.baselines), default=None)
        gain = a1 - a0
        if gain >= 1.0 and c1 >= 0.3 * max((b.avg_cost for b in inp.baselines), default=c1):
            return None
        evidence = [f"mean accuracy {a0:.1f}% → {a1:.1f}% while cost {c0 / 1000:.0f}k → {c1 / 1000:.0f}k"]
        if base_top is not None:
            evidence.append(f"best baseline accuracy on any env {base_top:.1f}%")
        mode = FailureMode(kind="no_scaling", count=1, share=1.0, evidence=evidence,
                           suggestion="β=1 should be evidence-hungry: open more branches and stop later")
        return max(0.5, 2.0 - gain), mode, ["more_width", "stricter_stop"]

    def _premature(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        acc_at, top_beta = _accuracy_index(inp)
        wrong_stops, helped, examples = 0, 0, []
        for t in inp.traces:
            reason = _finish_reason(t.steps)
            if t.is_correct or reason is None or reason in EXHAUSTED_REASONS:
                continue
            wrong_stops += 1
            best = acc_at.get((t.env, t.question_index, top_beta.get(t.env)))
            here = acc_at.get((t.env, t.question_index, t.beta))
            if best is not None and here is not None and best - here >= 0.2:
                helped += 1
            examples.append(f"{t.env} q{t.question_index} β={t.beta} seed {t.seed}")
        # Outcome view: questions that more budget solves clearly more often.
        rescued = sum(1 for o in inp.outcomes if o.beta is not None and o.beta < top_beta.get(o.env, 0.0)
                      and acc_at.get((o.env, o.question_index, top_beta[o.env]), 0.0) - o.accuracy >= 0.3)
        if not wrong_stops and not rescued:
            return None
        voluntary = sum(1 for t in inp.traces if (_finish_reason(t.steps) or "loop_end") not in EXHAUSTED_REASONS)
        mode = FailureMode(kind="premature_stop", count=wrong_stops, share=wrong_stops / max(1, voluntary),
                           evidence=[f"{wrong_stops} of {voluntary} sampled voluntary stops returned a wrong answer; "
                                     f"{helped} of those questions are solved ≥20 points more often at the top β",
                                     f"{rescued} (question, β) outcomes gain ≥30 points at the top β"],
                           examples=examples[: self.max_examples],
                           suggestion="demand more completed votes or a higher confidence before stopping, "
                                      "or open more branches before trusting an early consensus")
        severity = 100.0 * (wrong_stops / max(1, len(inp.traces))) * (0.5 + helped / max(1, wrong_stops))
        return severity, mode, ["stricter_stop", "more_width"]

    def _wasted(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        shares, examples = [], []
        for t in inp.traces:
            settled, total = _settled_effort(t.steps)
            if total <= 0 or settled is None:
                continue
            share = (total - settled) / total
            if share >= 0.5:
                shares.append(share)
                examples.append(f"{t.env} q{t.question_index} β={t.beta} seed {t.seed}")
        # Outcome view: tokens at a β with no accuracy gain over the cheapest β of the same question.
        by_q: dict[tuple[str, int], list] = defaultdict(list)
        for o in inp.outcomes:
            if o.beta is not None:
                by_q[(o.env, o.question_index)].append(o)
        flat, flat_tokens, all_tokens = 0, 0.0, 0.0
        for outs in by_q.values():
            outs.sort(key=lambda o: o.beta)
            base = outs[0]
            for o in outs[1:]:
                all_tokens += o.mean_tokens
                if o.accuracy <= base.accuracy + 0.02 and o.mean_tokens > 2 * base.mean_tokens:
                    flat += 1
                    flat_tokens += o.mean_tokens - base.mean_tokens
        if not shares and not flat:
            return None
        evidence = []
        if shares:
            evidence.append(f"{len(shares)} of {len(inp.traces)} sampled solves spent ≥50% of their chunks after the "
                            f"winner had settled (mean {statistics.fmean(shares):.0%})")
        if flat:
            evidence.append(f"{flat} (question, β) outcomes cost >2× the cheapest β with no accuracy gain "
                            f"({flat_tokens / max(1.0, all_tokens):.0%} of tokens above the cheapest β)")
        mode = FailureMode(kind="wasted_tokens", count=len(shares) + flat,
                           share=len(shares) / max(1, len(inp.traces)), evidence=evidence,
                           examples=examples[: self.max_examples],
                           suggestion="stop sooner once the winner is settled, or prune settled minorities")
        severity = 10.0 * (len(shares) / max(1, len(inp.traces))) + 10.0 * flat_tokens / max(1.0, all_tokens)
        return severity, mode, ["looser_stop", "more_pruning"]

    def _pruned_correct(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        hit, lost, examples = 0, 0, []
        for t in inp.traces:
            g = gold.get((t.env, t.question_index))
            if g is None:
                continue
            pruned = [a for s in t.steps if s.get("event") == "prune"
                      for a in (_as_dict(s.get("output")).get("answers") or [])]
            if g in pruned:
                hit += 1
                if not t.is_correct:
                    lost += 1
                    examples.append(f"{t.env} q{t.question_index} β={t.beta} seed {t.seed}")
        if not hit:
            return None
        mode = FailureMode(kind="pruned_correct", count=hit, share=hit / max(1, len(inp.traces)),
                           evidence=[f"{hit} sampled solves pruned a branch holding the gold answer; {lost} of them "
                                     "ended wrong"], examples=examples[: self.max_examples],
                           suggestion="prune later (more patience), keep more branches alive, or spare minority "
                                      "clusters")
        return 100.0 * lost / max(1, len(inp.traces)) + 1.0, mode, ["less_pruning"]

    def _never_converged(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        acc_at, top_beta = _accuracy_index(inp)
        n, wrong, rescuable, examples = 0, 0, 0, []
        for t in inp.traces:
            if _finish_reason(t.steps) in EXHAUSTED_REASONS:
                n += 1
                if not t.is_correct:
                    wrong += 1
                    here = acc_at.get((t.env, t.question_index, t.beta))
                    best = acc_at.get((t.env, t.question_index, top_beta.get(t.env)))
                    # Only questions that more budget actually solves make this actionable (hopeless ones do not).
                    if here is not None and best is not None and best - here >= 0.2:
                        rescuable += 1
                        examples.append(f"{t.env} q{t.question_index} β={t.beta} seed {t.seed}")
        if not n:
            return None
        mode = FailureMode(kind="never_converged", count=n, share=n / max(1, len(inp.traces)),
                           evidence=[f"{n} of {len(inp.traces)} sampled solves ran out of branches or steps without "
                                     f"a stop; {wrong} of them ended wrong, {rescuable} on questions the top β solves "
                                     "≥20 points more often"],
                           examples=examples[: self.max_examples],
                           suggestion="probe deeper so answers complete, and widen while the pool disagrees")
        return 100.0 * rescuable / max(1, len(inp.traces)) * 0.5, mode, ["deeper_probing", "more_width"]


def _as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _finish_reason(steps: list[dict[str, Any]]) -> str | None:
    for s in reversed(steps):
        if s.get("event") == "finish":
            return str(_as_dict(s.get("decision")).get("reason") or "")
    return None


def _settled_effort(steps: list[dict[str, Any]]) -> tuple[float | None, float]:
    """(effort when the final winner last took the lead for good, total effort); effort = chunks or steps."""
    answer = None
    for s in reversed(steps):
        if s.get("event") == "finish":
            answer = _as_dict(s.get("output")).get("answer")
            break
    if answer is None:
        return None, 0.0
    effort = 0.0
    timeline: list[tuple[float, Any]] = []
    for i, s in enumerate(steps):
        out = _as_dict(s.get("output"))
        if s.get("event") == "forward":
            effort = float(out.get("chunks", i))
        elif s.get("event") == "terminate_check" and "winner" in out:
            timeline.append((effort, out["winner"]))
    if not timeline:
        return None, 0.0
    settled = None
    for e, w in timeline:
        if w == answer:
            if settled is None:
                settled = e
        else:
            settled = None
    return settled, effort
