"""The grammar of controller mechanisms the offline proposer searches over.

A :class:`Genome` picks one mechanism per decision the contract asks a controller to make — how to widen,
whom to follow, how to allocate depth, when to prune, when to stop, how to aggregate — and carries a
β-ramp for every hyper-parameter those mechanisms use. A ramp is ``lo + (hi - lo) * beta ** power``,
clipped to the knob's range and rounded; each knob has a declared direction ("up" = more budget with more
β, "down" = less eager with more β) and the validator orders ``lo``/``hi`` to match it, so every schedule
the grammar can express is monotone by construction (clipping and rounding are monotone too).

Mutation is driven by the diagnostician's actions (``stricter_stop`` raises the stopping bar, ``more_width``
opens more branches, ...) plus seeded exploration; crossover mixes mechanisms of two parents. Everything is
a pure function of the inputs and an explicit ``random.Random``, so a run is reproducible from its seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Literal

from autotts_graph.sandbox.runtime.validate import BETA_GRID  # the contract's grid: a knob set is its values here
from pydantic import BaseModel, Field, model_validator

WidenRule = Literal["low_confidence", "disagreement", "steady", "rolling", "adaptive"]
LeaderRule = Literal["completed", "latest"]
DepthRule = Literal["uniform", "consensus", "deepest", "bursts"]
PruneRule = Literal["none", "disagreement", "off_track"]
CutoffRule = Literal["none", "median_length"]
ExitRule = Literal["none", "agree"]
StopRule = Literal["beta_conf", "stability", "ema", "quorum", "bayes", "weighted"]
AggregateRule = Literal["majority", "depth_weighted", "length_weighted", "stability_weighted", "short_stable"]

MECHANISMS: dict[str, tuple[str, ...]] = {
    "widen": ("low_confidence", "disagreement", "steady", "rolling", "adaptive"),
    "leader": ("completed", "latest"),
    "depth": ("uniform", "consensus", "deepest", "bursts"),
    "prune": ("none", "disagreement", "off_track"),
    "cutoff": ("none", "median_length"),
    "exit": ("none", "agree"),
    "stop": ("beta_conf", "stability", "ema", "quorum", "bayes", "weighted"),
    "aggregate": ("majority", "depth_weighted", "length_weighted", "stability_weighted", "short_stable"),
}
# Mechanisms that open a new branch whenever a live one finishes or is dropped (a window of live branches).
ROLLING = ("rolling", "adaptive")
# Aggregations that weigh each completed answer by what its branch showed (length, stability).
WEIGHTED_AGGREGATES = ("length_weighted", "stability_weighted", "short_stable")


class KnobSpec(BaseModel):
    """How one hyper-parameter may move with β."""

    direction: Literal["up", "down"]  # up: non-decreasing in β (more budget); down: non-increasing
    integer: bool
    low: float  # clip range of the knob's value
    high: float
    step: float  # typical mutation step of lo / hi
    doc: str


KNOBS: dict[str, KnobSpec] = {
    "n_init": KnobSpec(direction="up", integer=True, low=1, high=64, step=1,
                       doc="branches opened before the first step"),
    "max_branches": KnobSpec(direction="up", integer=True, low=1, high=64, step=6,
                             doc="cap on branches ever opened (the 64 ceiling is used adaptively)"),
    "widen_burst": KnobSpec(direction="up", integer=True, low=1, high=8, step=1,
                            doc="branches opened per widening event"),
    "widen_conf": KnobSpec(direction="up", integer=False, low=0.5, high=0.995, step=0.02,
                           doc="pool confidence below which (and not rising) a low-confidence widening fires"),
    "agree_share": KnobSpec(direction="up", integer=False, low=0.3, high=1.0, step=0.05,
                            doc="leader share among live answers below which a disagreement widening fires"),
    "warm_up": KnobSpec(direction="up", integer=True, low=0, high=30, step=1,
                        doc="step from which pruning, stopping and alignment are allowed"),
    "burst": KnobSpec(direction="up", integer=True, low=1, high=6, step=1,
                      doc="chunks per step for a favoured branch"),
    "patience": KnobSpec(direction="up", integer=True, low=1, high=40, step=2,
                         doc="consecutive deviant steps before a branch is pruned"),
    "min_alive": KnobSpec(direction="up", integer=True, low=1, high=16, step=1,
                          doc="live branches pruning always keeps"),
    "min_complete": KnobSpec(direction="up", integer=True, low=1, high=32, step=1,
                             doc="completed branches needed before stopping"),
    "conf_thresh": KnobSpec(direction="up", integer=False, low=0.5, high=0.9995, step=0.01,
                            doc="Beta-majority confidence needed to stop"),
    "window": KnobSpec(direction="up", integer=True, low=1, high=60, step=2,
                       doc="steps the winner must stay unchanged (stability) / EMA trend window (ema)"),
    "ema_alpha": KnobSpec(direction="down", integer=False, low=0.05, high=0.95, step=0.05,
                          doc="EMA weight of the newest confidence (smaller = more momentum)"),
    "slack": KnobSpec(direction="down", integer=False, low=0.0, high=0.2, step=0.01,
                      doc="allowed fall of the confidence EMA over the window at a stop"),
    "quorum": KnobSpec(direction="up", integer=True, low=1, high=40, step=1,
                       doc="completed votes the leader needs to stop"),
    "margin": KnobSpec(direction="up", integer=True, low=0, high=20, step=1,
                       doc="lead over the runner-up (in completed votes) needed to stop"),
    "width": KnobSpec(direction="up", integer=True, low=1, high=16, step=1,
                      doc="live branches advanced side by side; a new one opens as each finishes or is dropped"),
    "widen_gain": KnobSpec(direction="up", integer=False, low=0.0, high=16.0, step=1.0,
                           doc="extra live branches per unit of disagreement among the completed answers"),
    "drop": KnobSpec(direction="up", integer=False, low=1.0, high=8.0, step=0.25,
                     doc="a live branch longer than `drop` x the median length of the finished ones is dropped"),
    "exit_run": KnobSpec(direction="up", integer=True, low=2, high=40, step=2,
                         doc="consecutive equal probe answers after which a branch exits early with that answer"),
    "length_power": KnobSpec(direction="down", integer=False, low=0.0, high=4.0, step=0.25,
                             doc="vote weight (median length / branch length) ** power: shorter branches weigh more"),
    "stab_power": KnobSpec(direction="down", integer=False, low=0.0, high=4.0, step=0.25,
                           doc="vote weight (stable share of the branch) ** power: answers held longer weigh more"),
}

# Which knobs each mechanism reads; the generated schedule holds exactly the active ones (parsimony).
MECHANISM_KNOBS: dict[tuple[str, str], tuple[str, ...]] = {
    ("widen", "low_confidence"): ("n_init", "widen_burst", "widen_conf"),
    ("widen", "disagreement"): ("n_init", "widen_burst", "agree_share"),
    ("widen", "steady"): ("n_init", "widen_burst"),
    ("widen", "rolling"): ("width",),
    ("widen", "adaptive"): ("width", "widen_gain"),
    ("depth", "consensus"): ("burst",),
    ("depth", "deepest"): ("burst",),
    ("depth", "bursts"): ("burst",),
    ("prune", "disagreement"): ("patience", "min_alive"),
    ("prune", "off_track"): ("patience", "min_alive"),
    ("cutoff", "median_length"): ("drop",),
    ("exit", "agree"): ("exit_run",),
    ("stop", "beta_conf"): ("conf_thresh",),
    ("stop", "stability"): ("window",),
    ("stop", "ema"): ("conf_thresh", "window", "ema_alpha", "slack"),
    ("stop", "quorum"): ("quorum", "margin"),
    ("stop", "bayes"): ("conf_thresh",),
    ("stop", "weighted"): ("conf_thresh",),
    ("aggregate", "length_weighted"): ("length_power",),
    ("aggregate", "stability_weighted"): ("stab_power",),
    ("aggregate", "short_stable"): ("length_power", "stab_power"),
}
ALWAYS_KNOBS = ("max_branches", "warm_up", "min_complete")
NEWER = ("cutoff", "exit")  # decisions whose "none" leaves a first-grammar genome's mechanism list unchanged


class Ramp(BaseModel):
    """``lo + (hi - lo) * beta ** power`` — the value at β = 0 is ``lo``, at β = 1 is ``hi``."""

    lo: float
    hi: float
    power: float = Field(default=1.0, gt=0.0)  # the genome clips it to [0.25, 4]

    def slope(self) -> float:
        """``hi - lo`` rounded as the generated source writes it, so both compute the same floats."""
        return round(self.hi - self.lo, 6)

    def value(self, beta: float, spec: KnobSpec) -> float | int:
        """The knob's value at β, computed exactly as the generated source computes it."""
        raw = self.lo + self.slope() * beta ** self.power
        if spec.integer:
            return int(min(spec.high, max(spec.low, round(raw))))
        return min(spec.high, max(spec.low, round(raw, 4)))


def _quantise(x: float, integer: bool) -> float:
    # Integer knobs keep one decimal in lo/hi so rounding can fall at different β; floats keep 4 decimals.
    return round(x, 1) if integer else round(x, 4)


class Genome(BaseModel):
    """One point of the grammar: a mechanism per decision and a β-ramp per knob."""

    widen: WidenRule = "low_confidence"
    leader: LeaderRule = "completed"
    depth: DepthRule = "consensus"
    prune: PruneRule = "disagreement"
    cutoff: CutoffRule = "none"
    exit: ExitRule = "none"
    stop: StopRule = "ema"
    aggregate: AggregateRule = "majority"
    ramps: dict[str, Ramp] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _normalise(self) -> Genome:
        """Fill missing ramps, clip to the knob range and order lo/hi by the knob's direction.

        A weighted stop with an unweighted aggregation counts plain votes, i.e. it is ``beta_conf``: it is
        stored as such, so the two spellings of one controller share a key.
        """
        if self.stop == "weighted" and self.aggregate not in WEIGHTED_AGGREGATES:
            self.stop = "beta_conf"
        fixed: dict[str, Ramp] = {}
        for name, spec in KNOBS.items():
            ramp = self.ramps.get(name) or DEFAULT_RAMPS[name]
            lo = _quantise(min(spec.high, max(spec.low, ramp.lo)), spec.integer)
            hi = _quantise(min(spec.high, max(spec.low, ramp.hi)), spec.integer)
            if (spec.direction == "up" and hi < lo) or (spec.direction == "down" and hi > lo):
                lo, hi = hi, lo
            fixed[name] = Ramp(lo=lo, hi=hi, power=round(min(4.0, max(0.25, ramp.power)), 3))
        unknown = set(self.ramps) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        self.ramps = fixed
        return self

    def active_knobs(self) -> list[str]:
        """The knobs the chosen mechanisms read, in a stable order."""
        names = list(ALWAYS_KNOBS)
        for decision in MECHANISMS:
            for knob in MECHANISM_KNOBS.get((decision, getattr(self, decision)), ()):
                if knob not in names:
                    names.append(knob)
        return names

    def uses_leader(self) -> bool:
        """Whether any chosen mechanism follows a leader answer (otherwise ``leader`` has no effect)."""
        return self.prune != "none" or self.depth == "consensus" or self.widen == "disagreement"

    def rolling(self) -> bool:
        """Whether widening keeps a window of live branches (a new one opens as each finishes or drops)."""
        return self.widen in ROLLING

    def mechanisms(self) -> tuple[str, ...]:
        """The mechanism per decision, ``-`` for the leader when nothing follows one."""
        return tuple(getattr(self, d) if d != "leader" or self.uses_leader() else "-" for d in MECHANISMS)

    def knob_set(self) -> dict[str, tuple[float, float, float]]:
        """(lo, hi, power) of every active ramp: with :meth:`mechanisms`, what makes a controller distinct."""
        return {k: (self.ramps[k].lo, self.ramps[k].hi, self.ramps[k].power) for k in self.active_knobs()}

    def schedule(self, beta: float) -> dict[str, float | int]:
        """The generated controller's ``schedule(beta)``, computed here (used by tests and the critic)."""
        return {k: self.ramps[k].value(beta, KNOBS[k]) for k in self.active_knobs()}

    def key(self) -> str:
        """A short content hash of what the generated controller does: its mechanisms (active parts only) and
        the values of its active knobs over the β grid 0, 0.1, ..., 1.

        Ramps that round to the same schedule on the grid make the same controller there, so they share a key:
        "never re-propose a mechanism mix and knob set" holds for behaviour, not for spelling.
        """
        mech = list(self.mechanisms())
        # Decisions added after the first grammar are left out at their default.
        mech = [m for d, m in zip(MECHANISMS, mech, strict=True) if d not in NEWER or m != "none"]
        table = {k: [self.ramps[k].value(b, KNOBS[k]) for b in BETA_GRID] for k in self.active_knobs()}
        return hashlib.sha256(json.dumps({"mech": mech, "schedule": table}, sort_keys=True).encode()).hexdigest()[:10]

    def describe(self) -> str:
        """One line naming the mechanisms, e.g. ``widen=low_confidence depth=consensus ...``."""
        return " ".join(f"{d}={getattr(self, d)}" for d in MECHANISMS
                        if (d != "leader" or self.uses_leader()) and (d not in NEWER or getattr(self, d) != "none"))


DEFAULT_RAMPS: dict[str, Ramp] = {
    # Close to CMC's schedule (spec §5.5.1) where CMC has the knob; the others are moderate mid-range ramps.
    "n_init": Ramp(lo=2, hi=8),
    "max_branches": Ramp(lo=4, hi=64),
    "widen_burst": Ramp(lo=1, hi=4),
    "widen_conf": Ramp(lo=0.85, hi=0.97),
    "agree_share": Ramp(lo=0.5, hi=0.8),
    "warm_up": Ramp(lo=2, hi=10),
    "burst": Ramp(lo=1, hi=3),
    "patience": Ramp(lo=3, hi=12),
    "min_alive": Ramp(lo=2, hi=2),
    "min_complete": Ramp(lo=2, hi=5),
    "conf_thresh": Ramp(lo=0.85, hi=0.97),
    "window": Ramp(lo=2, hi=8),
    "ema_alpha": Ramp(lo=0.7, hi=0.3),
    "slack": Ramp(lo=0.04, hi=0.01),
    "quorum": Ramp(lo=2, hi=8),
    "margin": Ramp(lo=1, hi=4),
    "width": Ramp(lo=2, hi=6),
    "widen_gain": Ramp(lo=2, hi=8),
    "drop": Ramp(lo=1.5, hi=3.0),
    "exit_run": Ramp(lo=10, hi=24),
    "length_power": Ramp(lo=2.0, hi=1.0),
    "stab_power": Ramp(lo=1.0, hi=0.5),
}


def seed_genomes() -> list[Genome]:
    """The starting population: structurally different mixes, not only CMC-like ones.

    In order: a short-biased rolling window (a few branches side by side, a new one as each finishes,
    over-long branches dropped, a confidence stop, shorter branches weigh more); CMC-like confidence
    momentum; Bayesian stopping with disagreement-driven widening and stability-weighted votes; per-branch
    early exit (Dynasor-style) in a rolling window; then the first grammar's other known-good mixes.
    """
    return [
        Genome(widen="rolling", depth="uniform", prune="none", cutoff="median_length", stop="beta_conf",
               aggregate="length_weighted",
               ramps={"width": Ramp(lo=2, hi=6), "max_branches": Ramp(lo=4, hi=64), "warm_up": Ramp(lo=0, hi=0),
                      "min_complete": Ramp(lo=2, hi=5), "conf_thresh": Ramp(lo=0.85, hi=0.98),
                      "drop": Ramp(lo=1.5, hi=3.0), "length_power": Ramp(lo=1.0, hi=1.0)}),
        Genome(),  # confidence momentum with consensus bursts and disagreement pruning
        Genome(widen="adaptive", depth="uniform", prune="none", stop="bayes", aggregate="stability_weighted",
               ramps={"width": Ramp(lo=2, hi=5), "widen_gain": Ramp(lo=2, hi=8), "warm_up": Ramp(lo=0, hi=2),
                      "conf_thresh": Ramp(lo=0.9, hi=0.995), "min_complete": Ramp(lo=2, hi=5)}),
        Genome(widen="rolling", depth="uniform", prune="none", exit="agree", stop="quorum", aggregate="majority",
               ramps={"width": Ramp(lo=2, hi=8), "exit_run": Ramp(lo=12, hi=30), "warm_up": Ramp(lo=0, hi=0),
                      "quorum": Ramp(lo=2, hi=8), "margin": Ramp(lo=1, hi=4)}),
        Genome(widen="rolling", leader="completed", depth="consensus", prune="disagreement",
               cutoff="median_length", stop="weighted", aggregate="short_stable",
               ramps={"width": Ramp(lo=3, hi=8), "conf_thresh": Ramp(lo=0.88, hi=0.98)}),
        Genome(widen="disagreement", leader="latest", depth="deepest", prune="off_track", stop="beta_conf",
               ramps={"conf_thresh": Ramp(lo=0.9, hi=0.99), "min_complete": Ramp(lo=2, hi=6)}),
        Genome(widen="low_confidence", depth="consensus", prune="disagreement", stop="quorum",
               aggregate="depth_weighted", ramps={"quorum": Ramp(lo=2, hi=9), "margin": Ramp(lo=1, hi=5)}),
        Genome(widen="steady", leader="latest", depth="bursts", prune="none", stop="stability",
               ramps={"window": Ramp(lo=3, hi=14), "max_branches": Ramp(lo=3, hi=48)}),
    ]


STOP_FAMILIES = {"beta_conf": "confidence", "bayes": "confidence", "weighted": "confidence", "ema": "momentum",
                 "stability": "consensus", "quorum": "consensus"}


def family(genome: Genome | dict | None) -> str:
    """The mechanism family of a genome (the archive's niche axis): how it widens and how it stops.

    ``rolling/confidence``, ``widening/momentum``, ... (six families); ``unknown`` for a candidate without a
    genome of this grammar (an LLM-written controller).
    """
    if genome is None:
        return "unknown"
    if isinstance(genome, dict):
        try:
            genome = Genome.model_validate(genome)
        except ValueError:
            return "unknown"
    shape = "rolling" if genome.rolling() else "widening"
    return f"{shape}/{STOP_FAMILIES[genome.stop]}"


def novelty_key(genome: Genome | dict | None) -> str | None:
    """The identity "mechanism mix + knob set" that no proposal may repeat (:meth:`Genome.key`)."""
    if genome is None:
        return None
    if isinstance(genome, dict):
        try:
            genome = Genome.model_validate(genome)
        except ValueError:
            return None
    return genome.key()


# --------------------------------------------------------------------------- diagnosis-driven edits

def _shift(g: dict, knob: str, sign: int, scale: float = 1.0) -> None:
    """Move a knob's whole ramp by ``sign`` steps (both ends, so the β-range shifts, slope kept)."""
    spec = KNOBS[knob]
    r = g["ramps"][knob]
    r["lo"] += sign * spec.step * scale
    r["hi"] += sign * spec.step * scale


def _stretch(g: dict, knob: str, sign: int, scale: float = 1.0) -> None:
    """Move only the β = 1 end: a steeper (or flatter) ramp that keeps the cheap end where it is."""
    r = g["ramps"][knob]
    r["hi"] += sign * KNOBS[knob].step * scale


# Each diagnosis action as a list of alternative edits; the proposer draws one (seeded). An edit is
# (knob-or-mechanism, operation, argument). "more budget" = +1 for "up" knobs and -1 for "down" ones.
ACTION_EDITS: dict[str, list[list[tuple[str, str, object]]]] = {
    "stricter_stop": [
        [("conf_thresh", "shift", 1), ("min_complete", "stretch", 1)],
        [("min_complete", "shift", 1)],
        [("window", "shift", 1), ("slack", "shift", -1)],
        [("quorum", "shift", 1), ("margin", "stretch", 1)],
        [("ema_alpha", "shift", -1), ("conf_thresh", "stretch", 1)],
        [("exit_run", "shift", 1)],
        [("stop", "set", "beta_conf")],
        [("stop", "set", "bayes")],
    ],
    "looser_stop": [
        [("conf_thresh", "shift", -1)],
        [("min_complete", "shift", -1)],
        [("window", "shift", -1), ("quorum", "shift", -1)],
        [("ema_alpha", "shift", 1)],
        [("margin", "shift", -1)],
        [("exit_run", "shift", -1)],
        [("length_power", "shift", 1)],
    ],
    "more_width": [
        [("n_init", "shift", 1), ("widen_burst", "stretch", 1)],
        [("max_branches", "shift", 1)],
        [("widen_conf", "shift", 1), ("agree_share", "shift", 1)],
        [("width", "shift", 1), ("widen_gain", "stretch", 1)],
        [("widen", "set", "disagreement")],
        [("widen", "set", "adaptive")],
    ],
    "less_width": [
        [("n_init", "shift", -1)],
        [("max_branches", "shift", -1)],
        [("widen_burst", "shift", -1), ("widen_conf", "shift", -1)],
        [("agree_share", "shift", -1)],
        [("width", "shift", -1)],
        [("widen_gain", "shift", -1)],
    ],
    "deeper_probing": [
        [("burst", "stretch", 1)],
        [("depth", "set", "consensus")],
        [("depth", "set", "deepest")],
        [("leader", "flip", None)],
    ],
    "less_pruning": [
        [("patience", "shift", 1), ("min_alive", "stretch", 1)],
        [("warm_up", "shift", 1)],
        [("prune", "set", "off_track")],
        [("prune", "set", "none")],
        [("drop", "shift", 1)],
    ],
    "more_pruning": [
        [("patience", "shift", -1)],
        [("min_alive", "shift", -1)],
        [("prune", "set", "disagreement")],
        [("drop", "shift", -1)],
        [("cutoff", "set", "median_length")],
    ],
    "speed_up": [
        [("depth", "set", "bursts"), ("burst", "shift", 1)],
        [("max_branches", "shift", -1)],
        [("cutoff", "set", "median_length")],
    ],
    "fix_crash": [[("leader", "set", "completed")]],
}


def _apply_edit(g: dict, target: str, op: str, arg: object, scale: float) -> None:
    if target in MECHANISMS:
        options = MECHANISMS[target]
        if op == "set":
            g[target] = arg
        elif op == "flip":
            g[target] = options[(options.index(g[target]) + 1) % len(options)]
        return
    if op == "shift":
        _shift(g, target, int(arg), scale)
    else:
        _stretch(g, target, int(arg), scale)


def _changes(edit: list[tuple[str, str, object]], g: dict, active: set[str]) -> bool:
    """Whether an edit touches something the genome uses (an active knob, or a mechanism it would change)."""
    return any((t in MECHANISMS and (op != "set" or g[t] != arg)) or t in active for t, op, arg in edit)


def apply_actions(genome: Genome, actions: list[str], rng: random.Random, max_actions: int = 2) -> tuple[
        Genome, list[str]]:
    """Apply up to ``max_actions`` diagnosis actions (one drawn edit each); returns the child and what changed."""
    g = genome.model_dump()
    notes: list[str] = []
    usable = [a for a in actions if a in ACTION_EDITS]
    for action in usable[:max_actions]:
        # Prefer edits that touch something the current mechanisms actually use, so the child differs.
        options = ACTION_EDITS[action]
        active = set(genome.active_knobs())
        relevant = [e for e in options if _changes(e, g, active)] or options
        edit = relevant[rng.randrange(len(relevant))]
        scale = rng.choice((1.0, 1.5, 2.0))
        for target, op, arg in edit:
            _apply_edit(g, target, op, arg, scale)
        notes.append(f"{action}: " + ", ".join(f"{op} {t}" + (f"={arg}" if op == "set" else "")
                                                for t, op, arg in edit))
    return Genome.model_validate(g), notes


def explore(genome: Genome, rng: random.Random, structural: bool = False) -> tuple[Genome, list[str]]:
    """One seeded random edit: a different mechanism (structural) or a perturbed active ramp."""
    g = genome.model_dump()
    if structural or rng.random() < 0.3:
        decision = rng.choice(list(MECHANISMS))
        choices = [m for m in MECHANISMS[decision] if m != g[decision]]
        g[decision] = rng.choice(choices)
        return Genome.model_validate(g), [f"explore: {decision}={g[decision]}"]
    knob = rng.choice(genome.active_knobs())
    spec = KNOBS[knob]
    r = g["ramps"][knob]
    kind = rng.randrange(3)
    if kind == 0:
        r["lo"] += rng.choice((-1, 1)) * spec.step * rng.choice((1.0, 2.0))
        what = "lo"
    elif kind == 1:
        r["hi"] += rng.choice((-1, 1)) * spec.step * rng.choice((1.0, 2.0))
        what = "hi"
    else:
        r["power"] = r["power"] * rng.choice((0.67, 1.5))
        what = "power"
    return Genome.model_validate(g), [f"explore: {knob}.{what}"]


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Each decision (with the ramps its mechanism reads) from one parent or the other."""
    g = a.model_dump()
    other = b.model_dump()
    for decision in MECHANISMS:
        if rng.random() < 0.5:
            g[decision] = other[decision]
            for knob in MECHANISM_KNOBS.get((decision, other[decision]), ()):
                g["ramps"][knob] = other["ramps"][knob]
    return Genome.model_validate(g)


def tune(genome: Genome, rng: random.Random, knobs: int = 2, scale: float = 1.0) -> tuple[Genome, list[str]]:
    """Continuous tuning: Gaussian moves of ``knobs`` active ramps (either end, or the power)."""
    g = genome.model_dump()
    active = genome.active_knobs()
    notes = []
    for knob in rng.sample(active, min(knobs, len(active))):
        spec = KNOBS[knob]
        r = g["ramps"][knob]
        what = rng.choice(("lo", "hi", "both", "power"))
        if what == "power":
            r["power"] = r["power"] * math.exp(rng.gauss(0.0, 0.35 * scale))
        else:
            step = rng.gauss(0.0, spec.step * scale)
            if what in ("lo", "both"):
                r["lo"] += step
            if what in ("hi", "both"):
                r["hi"] += step if what == "both" else rng.gauss(0.0, spec.step * scale)
        notes.append(f"tune: {knob}.{what}")
    return Genome.model_validate(g), notes


def mutate(genome: Genome, rng: random.Random, structural_rate: float = 0.35) -> tuple[Genome, list[str]]:
    """One seeded mutation: a different mechanism for one decision (its knobs at their defaults when the
    parent did not use them), or continuous tuning of one to three active ramps."""
    if rng.random() < structural_rate:
        return explore(genome, rng, structural=True)
    return tune(genome, rng, knobs=rng.choice((1, 1, 2, 3)))
