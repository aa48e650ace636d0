"""The program database of a discovery run: a MAP-Elites archive with islands, kept in the store.

Every candidate whose screen (stage 1 of the cascade) passed the judge enters the archive of its island in
a niche = cost band x scaling band x mechanism family:

- the cost band is ``floor(2 log2(tokens per question))`` (half-octave bands) of its screen curve's mean over β
  and environments (every member has a screen, so members are placed on the same footing whether or not they
  went on): at one band per octave a 12-generation run's 96 candidates all fell into 2 adjacent bands;
- the scaling band is how much more the screen spends at its largest β than at its smallest
  (``SCALING_EDGES`` on the log2 of the ratio): a controller that ignores β (flat) and one that keeps buying
  samples (steep) behave differently even at the same mean cost, and should not compete for one cell;
- the family is the proposer's mechanism mix (``genome.family`` when the genome module has it, else the
  genome's ``describe()``), and ``llm`` for code without a genome.

A cell's elite is its best fully evaluated (stage 2) member by fitness. Parents are drawn per slot from the
elites of the slot's island, by rank with some uniform exploration; inspirations are the best elites and the
ones most different from the parent. Every ``migrate_every`` generations each island's best own elite moves
to the next island (ring): only a member born there (a migrant never moves on) and only one the destination
does not hold yet, so the run's best does not circle the ring until every island shows the same elite. All
draws use RNGs seeded by (run seed, generation, slot) and every order is by (generation, slot), never by
timing: a run with a given ``--seed`` is reproducible.

The archive is the ``archive`` table of the store (``history.record_archive``/``list_archive``): it
survives a resume and can be queried like the rest of the history.
"""

from __future__ import annotations

import math
import random
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.rows import ArchiveRow

from . import evidence
from .agents.roles import BaselinePoint, CurvePoint, Diagnosis, HistoryEntry
from .configuration import RunConfig

BANDS_PER_OCTAVE = 2
# log2(tokens at the largest β / tokens at the smallest) bounds of the scaling bands s0 (flat: under 1.4x) .. s3
# (steep: 8x and more).
SCALING_EDGES = (0.5, 1.5, 3.0)
LLM_FAMILY = "llm"
# Candidate statuses as agents see them; "screened" (stage 1 only) is an evaluated candidate with stage 1.
FINAL_STATUS = {"evaluated": "evaluated", "screened": "evaluated", "check_failed": "check_failed",
                "rejected": "rejected", "crashed": "crashed", "flagged": "crashed"}


# --------------------------------------------------------------------------- niches

def family(genome: dict[str, Any] | None) -> str:
    """The mechanism family of a candidate: ``genome.family(genome)`` when that exists, else the genome's
    one-line description of its mechanisms, else ``llm`` (code without a genome)."""
    if not genome:
        return LLM_FAMILY
    from .agents import genome as genome_mod

    fn = getattr(genome_mod, "family", None)
    if fn is not None:
        try:
            return str(fn(genome))
        except Exception:  # noqa: BLE001 - a dict the helper does not take: try the model
            try:
                return str(fn(genome_mod.Genome.model_validate(genome)))
            except Exception:  # noqa: BLE001
                pass
    try:
        return genome_mod.Genome.model_validate(genome).describe()
    except Exception:  # noqa: BLE001 - a genome from another grammar version
        return LLM_FAMILY


def mean_tokens(curve: list[CurvePoint]) -> float | None:
    """Tokens per question of a curve: mean over β of the mean over environments."""
    rows = evidence.mean_curve(curve)
    return sum(r[2] for r in rows) / len(rows) if rows else None


def cost_band(tokens: float | None) -> int:
    """Log-spaced cost band (``BANDS_PER_OCTAVE`` per doubling of tokens per question)."""
    return int(math.floor(math.log2(max(tokens or 1.0, 1.0)) * BANDS_PER_OCTAVE))


def scaling_band(curve: list[CurvePoint]) -> int:
    """How the curve's cost grows with β: the number of ``SCALING_EDGES`` that log2(tokens at its largest β /
    tokens at its smallest) reaches, on the mean over environments (0 with a single β)."""
    rows = evidence.mean_curve(curve)
    if len(rows) < 2 or rows[0][2] <= 0:
        return 0
    ratio = math.log2(max(rows[-1][2], 1.0) / max(rows[0][2], 1.0))
    return sum(ratio >= edge for edge in SCALING_EDGES)


def niche_of(band: int, fam: str, scaling: int = 0) -> str:
    return f"c{band}|s{scaling}|{fam}"


def curve_niche(curve: list[CurvePoint], genome: dict[str, Any] | None) -> str:
    """The niche of a candidate with this screen curve and genome (where ``member_row`` places it)."""
    return niche_of(cost_band(mean_tokens(curve)), family(genome), scaling_band(curve))


def scaling_of(niche: str) -> str:
    """The scaling band part of a niche (``s2``; empty for a niche written before it existed)."""
    parts = niche.split("|")
    return parts[1] if len(parts) == 3 else ""


def n_islands(cfg: RunConfig) -> int:
    """Islands in use: at most one per slot."""
    return max(1, min(cfg.islands, cfg.lanes_per_generation()))


def island_of(cfg: RunConfig, slot: int) -> int:
    return slot % n_islands(cfg)


# --------------------------------------------------------------------------- the archive view

# One archive row is a member: the store's own row model (with its ``order``), no copy of it.
Member = ArchiveRow


def _by_fitness(m: Member) -> tuple:
    return (-(m.fitness if m.fitness is not None else -math.inf), m.order)


def _by_screen(m: Member) -> tuple:
    return (-(m.screen_fitness if m.screen_fitness is not None else -math.inf), m.order)


class Archive:
    """A read-only view of a run's archive rows with the selection rules."""

    def __init__(self, rows: list[ArchiveRow]) -> None:
        self.members = list(rows)

    @classmethod
    def load(cls, store: Any, run_id: str) -> Archive:
        return cls(history.list_archive(store, run_id))

    # -- sizes
    def candidates(self) -> set[str]:
        return {m.candidate_id for m in self.members}

    def cells(self) -> set[tuple[int, str]]:
        """Occupied (island, niche) cells."""
        return {(m.island, m.niche) for m in self.members}

    def code_hashes(self) -> set[str]:
        return {m.code_hash for m in self.members}

    # -- elites
    def elites(self, island: int | None = None) -> list[Member]:
        """Each cell's best fully evaluated member (of one island, or of all), best first."""
        best: dict[tuple[int, str], Member] = {}
        for m in self.members:
            if m.stage < 2 or m.fitness is None or (island is not None and m.island != island):
                continue
            key = (m.island, m.niche)
            if key not in best or _by_fitness(m) < _by_fitness(best[key]):
                best[key] = m
        return sorted(best.values(), key=_by_fitness)

    def provisional(self, island: int | None = None) -> list[Member]:
        """Each cell's best screened member, best screen first (used while no cell has a full evaluation)."""
        best: dict[tuple[int, str], Member] = {}
        for m in self.members:
            if island is not None and m.island != island:
                continue
            key = (m.island, m.niche)
            if key not in best or _by_screen(m) < _by_screen(best[key]):
                best[key] = m
        return sorted(best.values(), key=_by_screen)

    def best(self) -> Member | None:
        full = self.elites()
        return full[0] if full else None

    def before(self, generation: int) -> Archive:
        """The archive as it stood when ``generation`` began: what its lanes may compare with. Siblings of
        the same generation are left out, since whether they are in yet depends on the lanes' timing."""
        view = Archive([])
        view.members = [m for m in self.members if m.generation < generation]
        return view

    def gate_reference(self, niche: str, margin: float) -> tuple[float | None, str]:
        """The lowest screen fitness a new screen in ``niche`` may have and still go on to stage 2, with why.

        A screen must come within ``margin`` of the niche's best fully evaluated member (of the run's best
        while the niche has none) and within ``3 * margin`` of the run's best: a new niche is explored while
        it is close to the best, a hopeless one is not. Screens are compared with screens (same seeds and
        β points). None (no gate) while nothing was fully evaluated.
        """
        best = self.best()
        if best is None or best.screen_fitness is None:
            return None, "nothing fully evaluated yet"
        in_niche = [m for m in self.members if m.niche == niche and m.stage >= 2 and m.screen_fitness is not None]
        ref = min(in_niche, key=_by_fitness) if in_niche else best
        where = f"niche {niche} best {ref.candidate_id}" if in_niche else \
            f"run best {best.candidate_id} (niche {niche} is empty)"
        floor = max(ref.screen_fitness - margin, best.screen_fitness - 3 * margin)
        return floor, f"{where}: screen {ref.screen_fitness:.2f}; run best screen {best.screen_fitness:.2f}"

    def same_screen(self, screen_fitness: float | None, tokens: float | None) -> Member | None:
        """A member whose screen had the same fitness and the same cost: most likely the same behaviour."""
        if screen_fitness is None or tokens is None:
            return None
        for m in sorted(self.members, key=lambda m: m.order):
            if (m.screen_fitness is not None and m.mean_tokens is not None
                    and abs(m.screen_fitness - screen_fitness) < 1e-9 and abs(m.mean_tokens - tokens) < 1e-6):
                return m
        return None

    # -- parents and inspirations
    def choose_parent(self, cfg: RunConfig, generation: int, slot: int) -> Member | None:
        """Rank-based choice among the slot's island's elites, uniform with probability ``explore_rate``."""
        island = island_of(cfg, slot)
        pool = self.elites(island) or self.elites() or self.provisional(island) or self.provisional()
        if not pool:
            return None
        rng = random.Random(f"parent:{cfg.seed}:{generation}:{slot}")
        if rng.random() < cfg.explore_rate:
            return pool[rng.randrange(len(pool))]
        weights = [1.0 / (rank + 1) ** 1.5 for rank in range(len(pool))]
        return rng.choices(pool, weights=weights, k=1)[0]

    def inspirations(self, cfg: RunConfig, parent: Member | None, k: int | None = None) -> list[Member]:
        """The best elites, then the elites most different from the parent (family, cost band, island)."""
        k = cfg.inspirations if k is None else k
        pool = [m for m in (self.elites() or self.provisional())
                if parent is None or m.candidate_id != parent.candidate_id]
        seen: set[str] = set()
        unique = []
        for m in pool:  # a migrant is the same program: show it once
            if m.candidate_id not in seen:
                seen.add(m.candidate_id)
                unique.append(m)
        n_best = (k + 1) // 2
        picked = unique[:n_best]
        anchor = parent or (picked[0] if picked else None)
        rest = [m for m in unique if m not in picked]
        if anchor is not None:
            rest.sort(key=lambda m: (-_distance(m, anchor), _by_fitness(m)))
        return picked + rest[:max(0, k - len(picked))]

    # -- migration
    def migrants(self, cfg: RunConfig, generation: int) -> list[tuple[Member, int]]:
        """(member, destination island) moves due after ``generation`` (ring: each island's best to the next)."""
        islands = n_islands(cfg)
        if islands < 2 or (generation + 1) % cfg.migrate_every:
            return []
        moves = []
        for island in range(islands):
            dest = (island + 1) % islands
            held = {m.candidate_id for m in self.members if m.island == dest}
            # The island's best own elite the destination lacks: a migrant never moves on, so the run's best
            # reaches one more island, not all of them.
            own = [m for m in self.elites(island) if m.migrated_from is None and m.candidate_id not in held]
            if own:
                moves.append((own[0], dest))
        return moves


def _distance(a: Member, b: Member) -> float:
    return ((a.family != b.family) * 1.0 + abs(a.cost_band - b.cost_band) * 0.25
            + (scaling_of(a.niche) != scaling_of(b.niche)) * 0.5 + (a.island != b.island) * 0.25)


def member_row(run_id: str, *, candidate_id: str, island: int, generation: int, slot: int, genome: dict | None,
               screen_curve: list[CurvePoint], stage: int, fitness: float | None, screen_fitness: float | None,
               search_accuracy: float | None, code_hash: str, evaluation_id: str | None,
               screen_evaluation_id: str | None) -> ArchiveRow:
    """The archive row of a screened candidate (its niche computed from its screen)."""
    tokens = mean_tokens(screen_curve)
    band, fam = cost_band(tokens), family(genome)
    return ArchiveRow(run_id=run_id, candidate_id=candidate_id, island=island, generation=generation, slot=slot,
                      niche=curve_niche(screen_curve, genome), cost_band=band, family=fam, stage=stage, fitness=fitness,
                      screen_fitness=screen_fitness, mean_tokens=tokens, search_accuracy=search_accuracy,
                      code_hash=code_hash, evaluation_id=evaluation_id, screen_evaluation_id=screen_evaluation_id)


def migrant_row(member: Member, dest: int, generation: int) -> ArchiveRow:
    """A copy of ``member``'s row on island ``dest``."""
    return member.model_copy(update={"island": dest, "generation": generation, "migrated_from": member.island})


# --------------------------------------------------------------------------- what agents see

def history_entries(store: Any, run_id: str, *, before_generation: int | None = None,
                    own: tuple[int, int] | None = None, with_source: bool = True) -> list[HistoryEntry]:
    """The run's candidates as agents see them, with curves, diagnoses and their archive place.

    Only settled candidates are listed. With ``before_generation`` only earlier generations are, plus the
    slot ``own`` = (generation, slot)'s own earlier attempts: the other lanes of a generation run at the
    same time, and what a proposal sees must not depend on their timing. Curves come from one batched read.
    """
    keep = []
    for c in history.candidates(store, run_id):
        status = FINAL_STATUS.get(c.status)
        if status is None:
            continue
        if before_generation is not None and c.round >= before_generation:
            if own is None or (c.round, c.slot) != own:
                continue
        keep.append((c, status))
    points = history.evaluation_points(store, [c.evaluation_id for c, _ in keep if c.evaluation_id])
    diagnoses = history.get_diagnoses(store, run_id)
    placed = placements(history.list_archive(store, run_id))
    entries = []
    for c, status in keep:
        ev = points.get(c.evaluation_id or "")
        curve = evidence.curve_from_points(ev.points) if ev and ev.split == "search" else []
        notes: list[str] = []
        if c.check_result and not c.check_result.get("ok", True):
            notes += [f"check: {e}" for e in c.check_result.get("errors", [])]
        if c.critic and not c.critic.get("approve", True):
            notes += [f"critic: {r}" for r in c.critic.get("reasons", [])]
        diag = diagnoses.get(c.candidate_id)
        row = placed.get(c.candidate_id)
        entries.append(HistoryEntry(
            candidate_id=c.candidate_id, round=c.round, name=c.name, origin=c.origin, parent=c.parent,
            code_hash=c.code_hash, source=c.source if with_source else "", status=status, curve=curve,
            search_accuracy=c.search_accuracy, genome=c.genome,
            diagnosis=Diagnosis.model_validate(diag) if diag else None, notes=notes,
            fitness=row.score if row else None, niche=row.niche if row else None,
            stage=c.stage if status == "evaluated" else None))
    return entries


def placements(members: list[Member]) -> dict[str, Member]:
    """Each candidate's own archive row (a migrant is a copy on another island; the first row is its own)."""
    placed: dict[str, Member] = {}
    for m in members:
        if m.migrated_from is None or m.candidate_id not in placed:
            placed[m.candidate_id] = m
    return placed


def load_baselines(store: Any, run_id: str) -> list[BaselinePoint]:
    """The run's baseline points on the search environments, read back from its recorded evaluations."""
    from autotts_graph.tools.baselines import point_label

    report = history.get_run(store, run_id).report or {}
    points: list[BaselinePoint] = []
    for key, evaluation_id in (report.get("baseline_evaluations") or {}).items():
        method, _, split = key.partition("@")
        if split != "search":
            continue
        ev = history.get_evaluation(store, evaluation_id)
        points += [BaselinePoint(method=method, label=point_label(method, p.config), env=p.env,
                                 accuracy=p.accuracy, avg_cost=p.avg_cost, beta=p.config.get("beta"))
                   for p in ev.points]
    return points
