"""The offline critic: static contract and novelty rules, each rejection with a reason a proposer can act on.

Contract present, single knob, monotone schedule over the β grid, trace surface, no forbidden imports / I/O,
no cost read-out in the decision logic, and novelty against the history and the baselines by normalised-AST
similarity. No API key, no network.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.static_checks import parse as parse_source
from autotts_graph.tools.validate import COST_READOUTS, static_issues

from .roles import CriticInput, CriticVerdict, HistoryEntry, Spend

BASELINE_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "controllers"


def normalised_tokens(source: str) -> list[str]:
    """AST node-type sequence with docstrings dropped, identifiers erased and strings blanked.

    Identifiers are erased rather than numbered by first use, so one added variable does not renumber the
    rest of the file. Numbers are kept (to three significant digits): a different schedule is a different
    controller, but a rename, a reformat or a reworded docstring is not.
    """
    try:
        tree = parse_source(source)
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
            tree = parse_source(inp.source)
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
