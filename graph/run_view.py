"""The typed view of one discovery run, built once from the store: what the markdown report, its PNG and the
run browser (``ui/``) all show.

A :class:`RunView` holds the run, its generations, the archive (members and cells with their elites), every
candidate as the store's :class:`CandidateRow` (one shape; its archive place, diagnosis and spend are looked
up by id), the curves of the winner and of every baseline, the verdicts against CMC and the spend. Held-out
figures enter only once the run has selected its controller (``run.selected``), and every held-out curve
says so (``split == "heldout"``): the same isolation as everywhere else.

A :class:`CandidateView` is one candidate in full (source and diff against its parent, check, critic, the
cascade's screen and gate, evaluations per environment and β, diagnosis, sampled traces, audit, spend),
built on demand.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import defaultdict
from typing import Any, Literal

from autotts_graph.store import history
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.rows import (
    ArchiveRow,
    CandidateRow,
    CandidateStatus,
    EvaluationRow,
    PointSummary,
    RunRow,
    SpendTotals,
)
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from . import archive, evidence, scoring
from .agents.roles import Diagnosis, TraceSample
from .state import STRICT_LABEL, SelectionRecord, total_of

Split = Literal["search", "heldout"]
# The hand-crafted baselines: the paper's and the field's other answer-only controllers. The frontier a
# discovered controller is checked against adds CMC (itself discovered, and the controller to beat).
HAND_CRAFTED = ("sc", "asc", "esc", "parallel_probe", "bayes", "bayes_fit", "dynasor", "certaindex", "es_cot",
                "short1", "short3", "deepconf")
FRONTIER = (*HAND_CRAFTED, "cmc")
Origin = Literal["seed", "mutation", "crossover", "diagnosis-driven edit", "LLM rewrite"]


def baseline_title(method: str) -> str:
    """A baseline's display title (``ASC``, ``short-3``); the key itself for an unknown one."""
    from autotts_graph.tools.baselines import SWEEPS

    return SWEEPS[method][0] if method in SWEEPS else method


def _point_label(method: str, config: dict[str, Any]) -> str:
    from autotts_graph.tools.baselines import METHODS, point_label

    return point_label(method, config) if method in METHODS else f"{method} {config}"


# --------------------------------------------------------------------------- curves

class Curve(BaseModel):
    """One controller's points on one split: the β sweep of a candidate, or every configuration of a baseline."""

    key: str  # "candidate:<id>" or "baseline:<method>", unique within a split
    title: str
    kind: Literal["candidate", "baseline"]
    split: Split
    evaluation_id: str
    candidate_id: str | None = None
    method: str | None = None
    points: list[PointSummary] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)  # per point: the baseline configuration's label

    @property
    def envs(self) -> list[str]:
        return sorted({p.env for p in self.points})

    def on(self, env: str) -> list[tuple[float, float, str]]:
        """(tokens, accuracy, label) on one environment, by tokens."""
        rows = [(p.avg_cost, p.accuracy, self._label(i)) for i, p in enumerate(self.points) if p.env == env]
        return sorted(rows)

    def mean(self, envs: set[str]) -> list[tuple[float, float, str]]:
        """(tokens, accuracy, label) of the mean over ``envs``: per β for a candidate, per configuration for
        a baseline (only those measured on every one of ``envs``), by tokens."""
        if self.kind == "candidate":
            rows = [(cost, acc, f"β={beta:g}" if beta is not None else "")
                    for beta, acc, cost in scoring.mean_curve([p for p in self.points if p.env in envs])]
            return sorted(rows) if {p.env for p in self.points} >= envs else []
        labelled = [{"env": p.env, "accuracy": p.accuracy, "avg_cost": p.avg_cost, "label": self._label(i)}
                    for i, p in enumerate(self.points)]
        return sorted((cost, acc, label) for label, acc, cost in scoring.baseline_means(labelled, envs))

    def _label(self, i: int) -> str:
        if self.labels:
            return self.labels[i]
        beta = self.points[i].beta
        return f"β={beta:g}" if beta is not None else ""


def candidate_curve(cand: CandidateRow, ev: EvaluationRow | None) -> Curve | None:
    """A candidate's curve from one of its evaluations (None without a successful one)."""
    if ev is None or not ev.ok or not ev.points:
        return None
    split: Split = "heldout" if ev.split == "heldout" else "search"
    return Curve(key=f"candidate:{cand.candidate_id}", title=cand.title, kind="candidate", split=split,
                 evaluation_id=ev.evaluation_id, candidate_id=cand.candidate_id,
                 points=[PointSummary(env=p.env, beta=p.beta, accuracy=p.accuracy, avg_cost=p.avg_cost)
                         for p in ev.points])


def baseline_curve(method: str, split: Split, ev: EvaluationRow | None) -> Curve | None:
    """A baseline's curve (every configuration it ran) from its evaluation."""
    if ev is None or not ev.ok or not ev.points:
        return None
    return Curve(key=f"baseline:{method}", title=baseline_title(method), kind="baseline", split=split,
                 evaluation_id=ev.evaluation_id, method=method,
                 points=[PointSummary(env=p.env, beta=p.beta, accuracy=p.accuracy, avg_cost=p.avg_cost)
                         for p in ev.points],
                 labels=[_point_label(method, p.config) for p in ev.points])


# --------------------------------------------------------------------------- run-level rows

class GenerationRow(BaseModel):
    """One generation: candidates proposed, screened, fully evaluated and failed; its best and the best so far."""

    generation: int
    candidates: int = 0
    screened: int = 0
    fully_evaluated: int = 0
    failed: int = 0
    best_fitness: float | None = None  # the generation's best fully evaluated fitness
    best_so_far: float | None = None
    cells: int = 0  # (island, niche) cells occupied once the generation joined the archive (migrants included)
    niches: int = 0  # distinct niches among them, over all islands


class Cell(BaseModel):
    """One (island, niche) cell of the archive with its elite (best fully evaluated member)."""

    island: int
    niche: str
    band: str
    family: str
    members: list[str] = Field(default_factory=list)  # candidate ids, in the run's order
    elite: ArchiveRow | None = None
    best_screen: float | None = None


class DominationRow(BaseModel):
    """A β point of the mean curve and every baseline configuration that dominates it."""

    beta: float
    accuracy: float
    avg_cost: float
    dominated_by: list[str] = Field(default_factory=list)


class Edge(BaseModel):
    """Parent → child in the lineage, with how the child was made from the parent."""

    parent: str
    child: str
    origin: Origin
    mate: bool = False  # the second parent of a crossover


class SplitFigures(BaseModel):
    """The winner against the baselines on one split."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    split: Split
    winner: Curve | None = None
    baselines: list[Curve] = Field(default_factory=list)
    versus_cmc: list[scoring.Verdict] = Field(default_factory=list)
    domination: list[DominationRow] = Field(default_factory=list)
    frontier_size: int = 0  # baseline configurations measured on every environment of the winner

    def curves(self) -> list[Curve]:
        return ([self.winner] if self.winner else []) + self.baselines


class SearchSettings(BaseModel):
    """How the run searched: its strategy, the ablations it ran with and its discovery seed (issue 23: a run's
    figures mean little without them)."""

    strategy: str = "evolve"
    ablations: list[str] = Field(default_factory=list)  # no-diagnosis, no-critic, no-cascade
    seed: int = 0

    @classmethod
    def of(cls, config: dict[str, Any]) -> SearchSettings:
        """From a stored run configuration (one written before a setting existed has its default)."""
        from .configuration import RunConfig

        config = config or {}
        try:
            cfg = RunConfig.model_validate(config)
        except ValidationError:  # a configuration of another version: read what is there
            return cls(strategy=str(config.get("strategy", "evolve")), seed=int(config.get("seed") or 0))
        return cls(strategy=cfg.strategy, ablations=cfg.ablations(), seed=cfg.seed)

    def line(self) -> str:
        """One line: ``strategy evolve, ablations none, discovery seed 0``."""
        return (f"strategy {self.strategy}, ablations {', '.join(self.ablations) or 'none'}, "
                f"discovery seed {self.seed}")


class RunView(BaseModel):
    """A run as every reader shows it (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run: RunRow
    candidates: list[CandidateRow] = Field(default_factory=list)
    archive: list[ArchiveRow] = Field(default_factory=list)
    generations: list[GenerationRow] = Field(default_factory=list)
    cells: list[Cell] = Field(default_factory=list)
    diagnoses: dict[str, Diagnosis] = Field(default_factory=dict)
    spend: dict[str, SpendTotals] = Field(default_factory=dict)  # per node
    candidate_spend: dict[str, SpendTotals] = Field(default_factory=dict)
    search: SplitFigures = Field(default_factory=lambda: SplitFigures(split="search"))
    heldout: SplitFigures | None = None  # only after selection
    search_curves: dict[str, Curve] = Field(default_factory=dict)  # every candidate's latest search curve
    baseline_evaluations: dict[str, str] = Field(default_factory=dict)  # "method@split" -> id, search ones only
    selection: SelectionRecord | None = None  # how the selection chose (None: a run not selected yet)
    _by_id: dict[str, CandidateRow] | None = PrivateAttr(default=None)
    _placed: dict[str, ArchiveRow] | None = PrivateAttr(default=None)

    # -- lookups
    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def best(self) -> CandidateRow | None:
        return self.candidate(self.run.best_candidate) if self.run.best_candidate else None

    def candidate(self, candidate_id: str) -> CandidateRow | None:
        if self._by_id is None:  # the view is built once and not changed after: index it on first use
            self._by_id = {c.candidate_id: c for c in self.candidates}
        return self._by_id.get(candidate_id)

    def placement(self, candidate_id: str) -> ArchiveRow | None:
        """The candidate's own archive row (None: never entered the archive)."""
        if self._placed is None:
            self._placed = archive.placements(self.archive)
        return self._placed.get(candidate_id)

    @property
    def search_settings(self) -> SearchSettings:
        """The run's strategy, ablations and discovery seed."""
        return SearchSettings.of(self.run.config or {})

    # -- totals
    @property
    def wall_s(self) -> float:
        """The run's wall time: as the graph counted it (each generation's slowest lane, not the sum of its
        lanes), else the report's, else (a run recorded before either existed) the sum of its node seconds."""
        for wall in (self.run.wall_s, (self.run.report or {}).get("wall_s")):
            if wall is not None:
                return float(wall)
        return sum(s.seconds for s in self.spend.values())

    @property
    def total_spend(self) -> SpendTotals:
        return total_of(self.spend)

    @property
    def screened(self) -> int:
        return sum(1 for m in self.archive if m.migrated_from is None)

    @property
    def fully_evaluated(self) -> int:
        return sum(1 for m in self.archive if m.migrated_from is None and m.stage >= 2)

    @property
    def best_fitness(self) -> float | None:
        best = self.placement(self.run.best_candidate) if self.run.best_candidate else None
        if best is not None and best.fitness is not None:
            return best.fitness
        full = [m.fitness for m in self.archive if m.stage >= 2 and m.fitness is not None]
        return max(full) if full else None

    def figures(self, split: Split) -> SplitFigures | None:
        return self.search if split == "search" else self.heldout

    # -- lineage
    def edge_to(self, cand: CandidateRow) -> list[Edge]:
        """The edges into ``cand``: from its parent (and from a crossover's second parent)."""
        if not cand.parent:
            return []
        origin = edge_origin(cand)
        edges = [Edge(parent=cand.parent, child=cand.candidate_id, origin=origin)]
        mate = crossover_mate(cand)
        if origin == "crossover" and mate and mate != cand.parent:
            edges.append(Edge(parent=mate, child=cand.candidate_id, origin=origin, mate=True))
        return edges

    def lineage(self, candidate_id: str) -> list[Edge]:
        """Every edge of ``candidate_id``'s ancestry (parents, crossover mates, their ancestors), root first."""
        seen: set[str] = set()
        edges: list[Edge] = []
        todo = [candidate_id]
        while todo:
            cid = todo.pop()
            if cid in seen:
                continue
            seen.add(cid)
            cand = self.candidate(cid)
            if cand is None:
                continue
            for e in self.edge_to(cand):
                edges.append(e)
                todo.append(e.parent)
        order = {c.candidate_id: i for i, c in enumerate(self.candidates)}
        return sorted(edges, key=lambda e: (order.get(e.child, -1), e.mate))

    def ancestors(self, candidate_id: str) -> list[str]:
        """The candidate and every ancestor (parents and crossover mates), in the run's order."""
        ids = {candidate_id} | {e.parent for e in self.lineage(candidate_id)}
        return [c.candidate_id for c in self.candidates if c.candidate_id in ids]

    def children(self, candidate_id: str) -> list[CandidateRow]:
        return [c for c in self.candidates if c.parent == candidate_id or crossover_mate(c) == candidate_id]


_MATE = re.compile(r"crossover with (?:inspiration )?(\S+?)[;,.)]?(?:\s|$)")


def crossover_mate(cand: CandidateRow) -> str | None:
    """The second parent of a crossover, as the proposer's rationale names it."""
    m = _MATE.search(cand.rationale or "")
    return m.group(1) if m else None


def edge_origin(cand: CandidateRow) -> Origin:
    """How a candidate was made from its parent. The proposers record it in words, not in a column: an LLM
    proposer's origin is ``llm:<model>``; the offline proposer's rationale lists its changes, where
    ``crossover with …`` and ``diagnosis → …`` mark those operators and anything else is a mutation."""
    if not cand.parent:
        return "seed"
    if cand.origin.startswith("llm"):
        return "LLM rewrite"
    if crossover_mate(cand):
        return "crossover"
    if "diagnosis →" in (cand.rationale or ""):
        return "diagnosis-driven edit"
    return "mutation"


# --------------------------------------------------------------------------- building the run view

def _generations(view: RunView) -> list[GenerationRow]:
    own = [m for m in view.archive if m.migrated_from is None]
    rows: dict[int, GenerationRow] = {}
    for c in view.candidates:
        g = rows.setdefault(c.round, GenerationRow(generation=c.round))
        g.candidates += 1
        g.failed += c.status in (CandidateStatus.CHECK_FAILED, CandidateStatus.REJECTED, CandidateStatus.CRASHED)
    for m in own:
        g = rows.setdefault(m.generation, GenerationRow(generation=m.generation))
        g.screened += 1
        if m.stage >= 2 and m.fitness is not None:
            g.fully_evaluated += 1
            g.best_fitness = m.fitness if g.best_fitness is None else max(g.best_fitness, m.fitness)
    best: float | None = None
    for gen in sorted(rows):
        top = rows[gen].best_fitness
        if top is not None:
            best = top if best is None else max(best, top)
        rows[gen].best_so_far = best
        so_far = [m for m in view.archive if m.generation <= gen]
        rows[gen].cells = len({(m.island, m.niche) for m in so_far})
        rows[gen].niches = len({m.niche for m in so_far})
    return [rows[g] for g in sorted(rows)]


def _cells(members: list[ArchiveRow]) -> list[Cell]:
    cells: dict[tuple[int, str], Cell] = {}
    for m in members:
        cell = cells.setdefault((m.island, m.niche), Cell(island=m.island, niche=m.niche, band=m.band,
                                                         family=m.family))
        cell.members.append(m.candidate_id)
        if m.stage >= 2 and m.fitness is not None and (cell.elite is None or m.fitness > cell.elite.fitness):
            cell.elite = m
        if m.screen_fitness is not None:
            cell.best_screen = m.screen_fitness if cell.best_screen is None else max(cell.best_screen,
                                                                                      m.screen_fitness)
    return sorted(cells.values(), key=lambda c: (-(c.elite.fitness if c.elite else -math.inf), c.island, c.niche))


def domination(winner: Curve | None, baselines: list[Curve]) -> tuple[list[DominationRow], int]:
    """Per β of the winner's mean curve, the frontier baseline configurations (CMC included) dominating it,
    and how many configurations were measured on all the winner's environments."""
    if winner is None:
        return [], 0
    envs = set(winner.envs)
    points = [{"env": p.env, "accuracy": p.accuracy, "avg_cost": p.avg_cost, "label": b._label(i)}
              for b in baselines if b.method in FRONTIER for i, p in enumerate(b.points)]
    if not points:
        return [], 0
    base = scoring.baseline_means(points, envs)
    rows = [DominationRow(beta=beta, accuracy=acc, avg_cost=cost, dominated_by=scoring.dominated_by_all(acc, cost,
                                                                                                       base))
            for beta, acc, cost in scoring.mean_curve(winner.points) if beta is not None]
    return rows, len(base)


def split_figures(split: Split, winner: Curve | None, baselines: list[Curve],
                  versus_cmc: list[scoring.Verdict] | None = None) -> SplitFigures:
    """The winner against the baselines on one split, with the β points the baselines dominate."""
    rows, size = domination(winner, baselines)
    return SplitFigures(split=split, winner=winner, baselines=baselines, versus_cmc=versus_cmc or [], domination=rows,
                        frontier_size=size)


def _split_figures(store: Store, split: Split, winner_cand: CandidateRow | None, winner_eval: str | None,
                   baseline_ids: dict[str, str], evaluations: dict[str, EvaluationRow]) -> SplitFigures:
    winner = candidate_curve(winner_cand, evaluations.get(winner_eval or "")) if winner_cand else None
    baselines = [c for method, ev_id in baseline_ids.items()
                 for c in [baseline_curve(method, split, evaluations.get(ev_id))] if c is not None]
    cmc = baseline_ids.get("cmc")
    verdicts = evidence.cmc_verdicts(store, winner_eval, cmc) if winner is not None and cmc else []
    return split_figures(split, winner, baselines, verdicts)


def build_run_view(store: Store, run_id: str) -> RunView:
    """The run's view, read from the store in a handful of queries (StoreError for an unknown run)."""
    with store.connect(read_only=True):  # one connection for every read below (opening one costs ~30 ms)
        return _build_run_view(store, run_id)


def _build_run_view(store: Store, run_id: str) -> RunView:
    run = history.get_run(store, run_id)
    cands = history.candidates(store, run_id)
    members = history.list_archive(store, run_id)
    diagnoses = {}
    for cid, doc in history.get_diagnoses(store, run_id).items():
        try:
            diagnoses[cid] = Diagnosis.model_validate(doc)
        except ValidationError:  # a diagnosis of another version: shown as its summary only
            diagnoses[cid] = Diagnosis(summary=str(doc.get("summary", "")) if isinstance(doc, dict) else "")
    ids = dict((run.report or {}).get("baseline_evaluations") or {})
    by_split: dict[str, dict[str, str]] = defaultdict(dict)
    for key, ev_id in ids.items():
        method, _, split = key.partition("@")
        by_split[split or "search"][method] = ev_id
    best = next((c for c in cands if c.candidate_id == run.best_candidate), None)
    best_search = history.find_evaluation(store, run_id=run_id, candidate_id=best.candidate_id,
                                          split="search") if best else None
    best_heldout = history.find_evaluation(store, run_id=run_id, candidate_id=best.candidate_id,
                                           split="heldout") if best and run.selected else None
    wanted = [*by_split["search"].values(), *(by_split["heldout"].values() if run.selected else []),
              *[x for x in (best_search, best_heldout) if x]]
    evaluations = history.get_evaluations(store, wanted)
    summaries = history.evaluation_points(store, [c.evaluation_id for c in cands if c.evaluation_id])
    view = RunView(run=run, candidates=cands, archive=members, cells=_cells(members), diagnoses=diagnoses,
                   spend=history.run_spend(store, run_id), candidate_spend=history.candidate_spend(store, run_id),
                   baseline_evaluations={f"{m}@search": e for m, e in by_split["search"].items()})
    for c in cands:
        ev = summaries.get(c.evaluation_id or "")
        if ev is not None and ev.ok and ev.split == "search" and ev.points:
            view.search_curves[c.candidate_id] = Curve(key=f"candidate:{c.candidate_id}", title=c.title,
                                                       kind="candidate", split="search",
                                                       evaluation_id=ev.evaluation_id, candidate_id=c.candidate_id,
                                                       points=ev.points)
    view.generations = _generations(view)
    chosen = (run.report or {}).get("selection")
    if chosen:
        try:
            view.selection = SelectionRecord.model_validate(chosen)
        except ValidationError:  # a record of another version: not shown
            view.selection = None
    view.search = _split_figures(store, "search", best, best_search, by_split["search"], evaluations)
    if run.selected:
        view.heldout = _split_figures(store, "heldout", best, best_heldout, by_split["heldout"], evaluations)
    return view


# --------------------------------------------------------------------------- one candidate in full

class GateDecision(BaseModel):
    """The cascade's decision on a screened candidate, recomputed from the archive as the lane saw it
    (earlier generations only, the run's ``screen_margin``): on to the full evaluation or stopped."""

    promoted: bool
    screen_fitness: float | None = None
    floor: float | None = None  # the lowest screen fitness that went on
    reference: str = ""
    twin: str | None = None  # an earlier member with the very same screen (same behaviour)


class AuditVerdict(BaseModel):
    """What the audits said of one evaluation."""

    evaluation_id: str
    label: str
    audited_solves: dict[str, int] = Field(default_factory=dict)  # audit name -> solves it replayed
    flagged: bool = False
    message: str = ""


class EnvRow(BaseModel):
    """One (environment, β) point of an evaluation."""

    env: str
    beta: float | None
    accuracy: float
    avg_cost: float
    std_acc: float = 0.0
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluationView(BaseModel):
    """One evaluation of a candidate: which stage, its status and error, its points."""

    evaluation_id: str
    label: str
    split: Split
    stage: Literal["screen", "full", "strict audit", "heldout"]
    ok: bool
    error: str | None = None
    error_details: list[str] = Field(default_factory=list)
    seeds: int | None = None
    points: list[EnvRow] = Field(default_factory=list)


class CandidateView(BaseModel):
    """One candidate in full (see the module docstring)."""

    candidate: CandidateRow
    parent: CandidateRow | None = None
    edges: list[Edge] = Field(default_factory=list)
    diff: list[str] = Field(default_factory=list)  # unified diff against the parent's source
    placement: ArchiveRow | None = None
    gate: GateDecision | None = None
    evaluations: list[EvaluationView] = Field(default_factory=list)
    diagnosis: Diagnosis | None = None
    traces: list[TraceSample] = Field(default_factory=list)
    audits: list[AuditVerdict] = Field(default_factory=list)
    spend: SpendTotals = Field(default_factory=SpendTotals)
    selected: bool = False  # the run's winner

    @property
    def added(self) -> int:
        """Lines the diff adds."""
        return sum(1 for line in self.diff if line.startswith("+") and not line.startswith("+++"))

    @property
    def removed(self) -> int:
        """Lines the diff removes."""
        return sum(1 for line in self.diff if line.startswith("-") and not line.startswith("---"))


def source_diff(parent: str, child: str, parent_name: str, child_name: str) -> list[str]:
    """The unified diff of two controller sources (lines without their newlines)."""
    return list(difflib.unified_diff(parent.splitlines(), child.splitlines(), fromfile=parent_name,
                                     tofile=child_name, lineterm="", n=3))


def gate_decision(view: RunView, member: ArchiveRow) -> GateDecision:
    """The screen's gate as the lane computed it (graph/nodes/evaluate.py), from the archive before the
    candidate's generation."""
    margin = float(view.run.config.get("screen_margin", 0.1))
    before = archive.Archive(view.archive).before(member.generation)
    floor, why = before.gate_reference(member.niche, margin)
    twin = before.same_screen(member.screen_fitness, member.mean_tokens)
    return GateDecision(promoted=member.stage >= 2, screen_fitness=member.screen_fitness, floor=floor,
                        reference=why, twin=twin.candidate_id if twin else None)


def _evaluation_view(cand: CandidateRow, ev: EvaluationRow) -> EvaluationView:
    split: Split = "heldout" if ev.split == "heldout" else "search"
    # The candidate row names its screen; without a cascade the screen is the full evaluation (stage 2).
    full = cand.stage == 2 and ev.evaluation_id == cand.evaluation_id
    stage = "heldout" if split == "heldout" else "screen" if ev.evaluation_id == cand.screen_evaluation_id \
        and not full else "strict audit" if (ev.label or "").startswith(STRICT_LABEL) else "full"
    err = ev.error or {}
    return EvaluationView(evaluation_id=ev.evaluation_id, label=ev.label or "", split=split, stage=stage,
                          ok=ev.ok, error=ev.error_line(), error_details=[str(d) for d in err.get("details", [])],
                          seeds=ev.protocol.get("seeds"),
                          points=[EnvRow(env=p.env, beta=p.beta, accuracy=p.accuracy, avg_cost=p.avg_cost,
                                         std_acc=p.std_acc, params=p.params) for p in ev.points])


def _audited(recorded: Any) -> dict[str, int]:
    """Solves each audit replayed (older stores recorded one count, of the counterfactual audit alone)."""
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items()}
    return {"counterfactual": int(recorded)} if recorded else {}


def _audit(ev: EvaluationRow) -> AuditVerdict:
    err = ev.error or {}
    flagged = err.get("kind") == "audit"
    return AuditVerdict(evaluation_id=ev.evaluation_id, label=ev.label or "",
                        audited_solves=_audited(ev.protocol.get("audited_solves")), flagged=flagged,
                        message=str(err.get("message", "")) if flagged else "")


def build_candidate_view(store: Store, view: RunView, candidate_id: str, *, traces: int = 6) -> CandidateView:
    """One candidate of ``view`` in full (StoreError for a candidate the run does not have). Held-out
    evaluations are shown for the selected candidate only, and only once selection is over."""
    with store.connect(read_only=True):  # one connection for every read below
        return _build_candidate_view(store, view, candidate_id, traces)


def _build_candidate_view(store: Store, view: RunView, candidate_id: str, traces: int) -> CandidateView:
    from autotts_graph.tools.context import ToolContext

    cand = view.candidate(candidate_id)
    if cand is None:
        raise StoreError(f"unknown candidate {candidate_id!r} in run {view.run_id!r}")
    parent = view.candidate(cand.parent) if cand.parent else None
    diff = source_diff(parent.source, cand.source, parent.title, cand.title) if parent else []
    selected = view.run.selected and view.run.best_candidate == candidate_id
    evs = [e for e in _candidate_evaluations(store, view.run_id, candidate_id)
           if e.split != "heldout" or selected]
    placement = view.placement(candidate_id)
    # Traces of the candidate's own evaluation (the strict audit's re-evaluation keeps none).
    search_full = next((e for e in reversed(evs) if e.ok and e.evaluation_id == cand.evaluation_id), None)
    samples: list[TraceSample] = []
    if search_full is not None and traces:
        samples = evidence.trace_samples(ToolContext(store=store, expose_gold=True), search_full.evaluation_id,
                                         limit=traces)
    return CandidateView(candidate=cand, parent=parent, edges=view.edge_to(cand), diff=diff, placement=placement,
                         gate=gate_decision(view, placement) if placement is not None else None,
                         evaluations=[_evaluation_view(cand, e) for e in evs],
                         diagnosis=view.diagnoses.get(candidate_id),
                         traces=samples, audits=[_audit(e) for e in evs],
                         spend=view.candidate_spend.get(candidate_id, SpendTotals()), selected=selected)


def _candidate_evaluations(store: Store, run_id: str, candidate_id: str) -> list[EvaluationRow]:
    ids = [e.evaluation_id for e in history.run_evaluations(store, run_id, candidate_id)]
    found = history.get_evaluations(store, ids)
    return [found[i] for i in ids if i in found]
