"""Genome → a complete, readable controller source obeying the controller contract (spec §6).

The generated file imports only ``autotts_runtime``, defines one ``Controller`` subclass whose
``schedule(beta)`` holds exactly the knobs its mechanisms read (each a clipped ramp that is monotone by
construction, see :mod:`genome`), and a ``solve`` that contains only the code paths of the chosen
mechanisms. The inner loop follows CMC's fast style (``question.probe_more`` called directly in
try/except) because the β sweep of every candidate is the inner loop of discovery.

Trace surface: ``start`` (the schedule), ``init_branches``, per step ``prune`` (only when something was
pruned, with the pruned answers), ``forward`` (step, live branches, chunks read so far), ``terminate_check``
(pool winner, confidence, decision), ``update_states`` (widening), and exactly one ``finish`` on every path
(answer, reason, chunks read, branches opened). The chunk count is the controller's own effort counter —
it never reads the environment's cost.
"""

from __future__ import annotations

import textwrap

from .genome import KNOBS, Genome, Ramp

MECHANISM_DOCS: dict[tuple[str, str], str] = {
    ("widen", "low_confidence"): "after warm-up/2 steps, open `widen_burst` more branches whenever the pool's "
                                 "Beta-majority confidence is below `widen_conf` and not rising",
    ("widen", "disagreement"): "after warm-up/2 steps, open `widen_burst` more branches whenever the leader "
                               "holds less than `agree_share` of the live answers",
    ("widen", "steady"): "after warm-up/2 steps, open `widen_burst` more branches every step until the cap",
    ("leader", "completed"): "the leader is the majority of completed (final) answers",
    ("leader", "latest"): "the leader is the majority of the latest answers of all kept branches "
                          "(intermediate probes count; the no-answer marker does not)",
    ("depth", "uniform"): "every live branch reads one chunk per step",
    ("depth", "consensus"): "after warm-up, branches agreeing with the leader read `burst` chunks per step, "
                            "the others one (favour the consensus)",
    ("depth", "deepest"): "the deeper half of the live branches reads `burst` chunks per step, the rest one "
                          "(favour the deepest, so answers complete sooner)",
    ("depth", "bursts"): "every live branch reads `burst` chunks per step (coarse bursts)",
    ("prune", "none"): "no pruning",
    ("prune", "disagreement"): "after warm-up, a branch disagreeing with the leader for `patience` consecutive "
                               "steps is pruned; `min_alive` live branches are always kept",
    ("prune", "off_track"): "after warm-up, a branch whose answer differs from the leader and is held by no "
                            "other live branch for `patience` consecutive steps is pruned (minority clusters "
                            "survive); `min_alive` live branches are always kept",
    ("stop", "beta_conf"): "stop once the Beta-majority confidence of the completed answers exceeds "
                           "`conf_thresh`",
    ("stop", "stability"): "stop once the completed-answer winner has been the same, with a strict lead, for "
                           "`window` consecutive steps",
    ("stop", "ema"): "stop once the EMA (weight `ema_alpha`) of the pool confidence reaches `conf_thresh` "
                     "and has not fallen by more than `slack` over the last `window` steps",
    ("stop", "quorum"): "stop once the leader has `quorum` completed votes and leads the runner-up by "
                        "`margin`",
    ("aggregate", "majority"): "majority of completed answers (first seen wins ties); if none completed, "
                               "majority of the latest answers",
    ("aggregate", "depth_weighted"): "weighted vote: each completed answer weighs 1, each live branch's latest "
                                     "answer weighs probes / (probes + 8), so deep branches count more",
}

STOP_REASONS = {"beta_conf": "confidence_gate", "stability": "stable_winner", "ema": "ema_momentum_gate",
                "quorum": "quorum"}


def _num(x: float) -> str:
    """Shortest exact literal (``2``, ``0.85``) so the source computes the floats the genome computes."""
    if float(x).is_integer():
        return str(int(x))
    return repr(float(x))


def ramp_expression(name: str, ramp: Ramp) -> str:
    """Python expression of one knob in terms of ``beta`` (the same arithmetic as ``Ramp.value``)."""
    spec = KNOBS[name]
    slope = ramp.slope()
    if slope == 0:
        raw = _num(ramp.lo)
    else:
        term = "beta" if ramp.power == 1.0 else f"beta ** {_num(ramp.power)}"
        sign = "+" if slope > 0 else "-"
        raw = f"{_num(ramp.lo)} {sign} {_num(abs(slope))} * {term}"
    if spec.integer:
        return f"max({_num(spec.low)}, min({_num(spec.high)}, round({raw})))"
    return f"max({_num(spec.low)}, min({_num(spec.high)}, round({raw}, 4)))"


def class_name(genome: Genome) -> str:
    """A readable class name from the stop and depth mechanisms, e.g. ``EmaConsensusController``."""
    def camel(s: str) -> str:
        return "".join(part.capitalize() for part in s.split("_"))
    return f"{camel(genome.stop)}{camel(genome.depth)}{camel(genome.widen)}Controller"


def _indent(lines: list[str], n: int) -> list[str]:
    pad = " " * n
    return [pad + line if line else line for line in lines]


def generate_source(genome: Genome, title: str = "", rationale: str = "") -> str:
    """The complete controller source of a genome."""
    g = genome
    knobs = g.active_knobs()
    doc = [f'"""{title or "Offline-discovered controller"} ({g.describe()}).', ""]
    if rationale:
        doc += [rationale, ""]
    doc.append("Mechanisms (every hyper-parameter is a monotone function of beta, see schedule()):")
    doc.append(f"- Widening: open `n_init` branches, then {MECHANISM_DOCS[('widen', g.widen)]}; never more than "
               "`max_branches` (itself capped at 64).")
    if g.uses_leader():
        doc.append(f"- Leader: {MECHANISM_DOCS[('leader', g.leader)]}.")
    doc.append(f"- Depth: {MECHANISM_DOCS[('depth', g.depth)]}.")
    doc.append(f"- Pruning: {MECHANISM_DOCS[('prune', g.prune)]}.")
    doc.append(f"- Stopping: after `warm_up` steps and at least `min_complete` completed branches, "
               f"{MECHANISM_DOCS[('stop', g.stop)]}.")
    doc.append(f"- Aggregation: {MECHANISM_DOCS[('aggregate', g.aggregate)]}.")
    doc.append("Larger beta opens more branches, probes deeper, prunes later and stops later.")
    # Wrap for readability (and so generated files pass the repository's line-length rule).
    wrapped: list[str] = []
    for line in doc:
        indent = "  " if line.startswith("- ") else ""
        wrapped += textwrap.wrap(line, width=110, subsequent_indent=indent, break_on_hyphens=False) or [""]
    doc = wrapped + ['"""']

    imports = {"Controller", "MAX_BRANCHES", "safe_probe_new", "vote_stats", "beta_confidence"}
    imports.add("weighted_vote" if g.aggregate == "depth_weighted" else "majority")
    if g.uses_leader() and g.leader == "latest":
        imports.add("majority")

    out: list[str] = list(doc)
    # isort's order: constants, classes, then functions.
    ordered = sorted(imports, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    line = f"from autotts_runtime import {', '.join(ordered)}"
    if len(line) > 110:
        line = "from autotts_runtime import (\n" + "".join(f"    {n},\n" for n in ordered) + ")"
    out += ["", line, ""]
    out.append("MAX_STEPS = 400  # outer-step guard; every live branch reads at least one chunk per step")
    if (g.uses_leader() and g.leader == "latest") or g.aggregate == "depth_weighted":
        out.append("NO_ANSWER = 'ERR'  # the replay format's marker for a probe with no extractable answer")
    if g.aggregate == "depth_weighted":
        out.append("DEPTH_HALF = 8  # probes at which a live branch's latest answer weighs one half")
    out += ["", "",
            "class _Branch:",
            '    __slots__ = ("index", "latest", "finished", "pruned", "probes", "deviant")',
            "",
            "    def __init__(self, index, latest, finished):",
            "        self.index = index",
            "        self.latest = latest",
            "        self.finished = finished",
            "        self.pruned = False",
            "        self.probes = 0",
            "        self.deviant = 0",
            "",
            "",
            "def _deeper_first(branch):",
            "    return -branch.probes",
            ""]
    if g.prune != "none":
        out += ["", "def _most_deviant_first(branch):", "    return -branch.deviant", ""]
    out += ["", f"class {class_name(g)}(Controller):",
            f'    NAME = "offline_{g.key()}"', "",
            "    def schedule(self, beta):",
            '        """Every knob is a clipped ramp in beta: non-decreasing for budget, non-increasing for '
            'eagerness."""',
            "        return {"]
    for k in knobs:
        out.append(f'            "{k}": {ramp_expression(k, g.ramps[k])},')
    out += ["        }", ""]
    out += _indent(_solve_body(g), 4)
    return "\n".join(out) + "\n"


def _solve_body(g: Genome) -> list[str]:
    b: list[str] = []
    b += ["def solve(self, question):",
          "    rec = self.trace",
          "    p = self.params",
          '    cap = min(MAX_BRANCHES, max(1, p["max_branches"]))',
          '    warm_up, min_complete = p["warm_up"], p["min_complete"]',
          "    widen_from = max(1, warm_up // 2)"]
    knob_reads = {
        "widen_burst": 'widen_burst = p["widen_burst"]',
        "widen_conf": 'widen_conf = p["widen_conf"]',
        "agree_share": 'agree_share = p["agree_share"]',
        "burst": 'burst = p["burst"]',
        "patience": 'patience, min_alive = p["patience"], p["min_alive"]',
        "conf_thresh": 'conf_thresh = p["conf_thresh"]',
        "window": 'window = p["window"]',
        "ema_alpha": 'alpha = p["ema_alpha"]',
        "slack": 'slack = p["slack"]',
        "quorum": 'quorum, margin = p["quorum"], p["margin"]',
    }
    for k in g.active_knobs():
        if k in knob_reads:
            b.append("    " + knob_reads[k])
    b += ['    rec.record("start", goal="adaptive widen / deepen / prune / stop", input=dict(p))',
          "    branches = []",
          "    completed = []  # final answers in the order their branches finished (decides ties)",
          "    chunks = 0  # probe calls made: the controller's own effort count, never a cost read-out",
          "    stats = [-1, None, 0, 0, 0.0]  # completed only grows: recompute its votes when its length changes",
          "",
          "    def pool():",
          "        if stats[0] != len(completed):",
          "            winner, top1, top2, _ = vote_stats(completed)",
          "            stats[:] = [len(completed), winner, top1, top2, beta_confidence(top1, top2)]",
          "        return stats[1], stats[2], stats[3], stats[4]",
          "",
          "    def open_branch():",
          "        nonlocal chunks",
          "        opened = safe_probe_new(question)",
          "        if opened is None:",
          "            return False",
          "        answer, index, finished = opened",
          "        chunks += 1",
          "        branches.append(_Branch(index, answer, finished))",
          "        if finished:",
          "            completed.append(answer)",
          "        return True",
          "",
          "    probe_more = question.probe_more",
          "",
          "    def advance(branch, n):",
          "        nonlocal chunks",
          "        for _ in range(n):",
          "            if branch.finished:",
          "                return",
          "            try:  # the safe probe-more wrapper, inlined: this is the hot loop",
          "                branch.latest, branch.finished = probe_more(branch.index)",
          "            except (ValueError, IndexError):",
          "                branch.finished = True",
          "                if branch.latest is not None:",
          "                    completed.append(branch.latest)",
          "                return",
          "            chunks += 1",
          "            branch.probes += 1",
          "            if branch.finished:",
          "                completed.append(branch.latest)",
          "                return",
          ""]
    # Aggregation
    b.append("    def aggregate():")
    if g.aggregate == "majority":
        b += ["        if completed:",
              "            return majority(completed)",
              "        return majority([x.latest for x in branches if not x.pruned and x.latest is not None])"]
    else:
        b += ["        votes = [(a, 1.0) for a in completed]",
              "        for x in branches:",
              "            if not x.pruned and not x.finished and x.latest is not None and x.latest != NO_ANSWER:",
              "                votes.append((x.latest, x.probes / (x.probes + DEPTH_HALF)))",
              "        return weighted_vote(votes)"]
    b.append("")
    b += ['    for _ in range(p["n_init"]):',
          "        if len(branches) >= MAX_BRANCHES or not open_branch():",
          "            break",
          '    rec.record("init_branches", output={"opened": len(branches)})',
          "    if not branches:",
          '        rec.record("finish", output={"answer": None, "chunks": chunks}, decision={"reason": "no_branches"})',
          "        return None",
          ""]
    if g.stop == "ema":
        b += ["    ema = 0.0", "    ema_window = []"]
    if g.stop == "stability":
        b += ["    stable = 0", "    previous = None"]
    if g.widen == "low_confidence":
        b += ["    last_conf = 0.0"]
    b += ["    for step in range(MAX_STEPS):",
          "        warm = step >= warm_up",
          "        winner, top1, top2, conf = pool()",
          "        alive = [x for x in branches if not x.finished and not x.pruned]"]
    if not g.uses_leader():
        pass  # no mechanism follows a leader: nothing to compute
    elif g.leader == "completed":
        b.append("        leader = winner")
    else:
        b += ["        leader = majority([x.latest for x in branches",
              "                           if not x.pruned and x.latest is not None and x.latest != NO_ANSWER])"]
    if g.prune != "none":
        b += ["        if warm and leader is not None and len(alive) > min_alive:"]
        if g.prune == "disagreement":
            b += ["            for x in alive:",
                  "                x.deviant = x.deviant + 1 if x.latest != leader else 0"]
        else:
            b += ["            held = {}",
                  "            for x in alive:",
                  "                held[x.latest] = held.get(x.latest, 0) + 1",
                  "            for x in alive:",
                  "                lonely = x.latest != leader and held[x.latest] == 1",
                  "                x.deviant = x.deviant + 1 if lonely else 0"]
        b += ["            doomed = sorted((x for x in alive if x.deviant >= patience), key=_most_deviant_first)",
              "            doomed = doomed[: len(alive) - min_alive]",
              "            if doomed:",
              "                for x in doomed:",
              "                    x.pruned = True",
              "                alive = [x for x in alive if not x.pruned]",
              "                if rec.enabled:",
              '                    rec.record("prune", input={"step": step, "leader": leader},',
              '                               output={"pruned": len(doomed),',
              '                                       "answers": [x.latest for x in doomed[:8]]},',
              '                               decision={"keep": len(alive)})']
    # Depth allocation
    b.append("        alive.sort(key=_deeper_first)")
    if g.depth == "uniform":
        b += ["        for x in alive:", "            advance(x, 1)"]
    elif g.depth == "consensus":
        b += ["        for x in alive:",
              "            advance(x, burst if warm and x.latest == leader else 1)"]
    elif g.depth == "deepest":
        b += ["        cut = alive[len(alive) // 2].probes if alive else 0",
              "        for x in alive:",
              "            advance(x, burst if x.probes >= cut else 1)"]
    else:
        b += ["        for x in alive:", "            advance(x, burst)"]
    b += ["        if rec.enabled:",
          '            rec.record("forward", input={"step": step, "alive": len(alive)}, output={"chunks": chunks})',
          "        winner, top1, top2, conf = pool()",
          "        ready = warm and len(completed) >= min_complete"]
    if g.stop == "beta_conf":
        b += ["        stop = ready and conf > conf_thresh"]
    elif g.stop == "stability":
        b += ["        stable = stable + 1 if winner is not None and winner == previous else 0",
              "        previous = winner",
              "        stop = ready and stable >= window and top1 > top2"]
    elif g.stop == "ema":
        b += ["        ema = (1.0 - alpha) * ema + alpha * conf",
              "        ema_window.append(ema)",
              "        if len(ema_window) > window:",
              "            ema_window.pop(0)",
              "        trend = ema_window[-1] - ema_window[0]",
              "        stop = ready and ema >= conf_thresh and trend >= -slack"]
    else:
        b += ["        stop = ready and top1 >= quorum and top1 - top2 >= margin"]
    b += ["        if rec.enabled:",
          '            rec.record("terminate_check", input={"completed": len(completed), "conf": conf},',
          '                       output={"winner": winner}, decision={"stop": stop})',
          "        if stop:",
          "            answer = aggregate()",
          '            rec.record("finish", output={"answer": answer, "chunks": chunks, "opened": len(branches)},',
          f'                       decision={{"reason": "{STOP_REASONS[g.stop]}"}})',
          "            return answer"]
    # Widening
    if g.widen == "low_confidence":
        b += ["        want = conf < widen_conf and conf <= last_conf",
              "        last_conf = conf"]
    elif g.widen == "disagreement":
        b += ["        live = [x.latest for x in branches if not x.pruned and x.latest is not None]",
              "        want = leader is None or live.count(leader) < agree_share * len(live)"]
    else:
        b += ["        want = True"]
    b += ["        widened = 0",
          "        if want and step >= widen_from:",
          "            while widened < widen_burst and len(branches) < cap and open_branch():",
          "                widened += 1",
          "        if rec.enabled:",
          '            rec.record("update_states", output={"widened": widened, "opened": len(branches)})',
          "        if not widened and all(x.finished or x.pruned for x in branches):",
          "            break  # every branch finished or pruned and no new one was wanted",
          "    answer = aggregate()",
          '    rec.record("finish", output={"answer": answer, "chunks": chunks, "opened": len(branches)},',
          '               decision={"reason": "loop_end"})',
          "    return answer"]
    return b
