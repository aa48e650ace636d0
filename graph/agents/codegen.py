"""Genome → a complete, readable controller source obeying the controller contract (spec §6).

The generated file imports only ``autotts_runtime`` (standard-library only, Python 3.9 syntax: it runs on
PyPy), defines one ``Controller`` subclass whose ``schedule(beta)`` holds exactly the knobs its mechanisms
read (each a clipped ramp that is monotone by construction, see :mod:`genome`), and a ``solve`` that contains
only the code paths of the chosen mechanisms. The inner loop follows CMC's fast style (``question.probe_more``
called directly in try/except) and keeps the list of live branches itself, so a step costs O(live branches)
even when a rolling window has read through all 64.

What a branch reveals and the mechanisms use: its latest probe answer, how many chunks it has read (its
length so far), how many consecutive reads returned the same answer (its stability), and its final answer.
Completed branches keep their length and stability for the length cut-off and the weighted votes.

Trace surface: ``start`` (the schedule), ``init_branches``, ``prune`` (only when something was pruned or
cut, with the dropped answers), ``forward`` and ``terminate_check`` at the steps where a branch completed or
the controller stops (pool winner, confidence, decision), ``update_states`` when branches were opened, and
exactly one ``finish`` on every path (answer, reason, chunks read, branches opened). The chunk count is the
controller's own effort counter — it never reads the environment's cost.
"""

from __future__ import annotations

import textwrap

from .genome import KNOBS, WEIGHTED_AGGREGATES, Genome, Ramp

MECHANISM_DOCS: dict[tuple[str, str], str] = {
    ("widen", "low_confidence"): "after warm-up/2 steps, open `widen_burst` more branches whenever the pool's "
                                 "Beta-majority confidence is below `widen_conf` and not rising",
    ("widen", "disagreement"): "after warm-up/2 steps, open `widen_burst` more branches whenever the leader "
                               "holds less than `agree_share` of the live answers",
    ("widen", "steady"): "after warm-up/2 steps, open `widen_burst` more branches every step until the cap",
    ("widen", "rolling"): "keep `width` branches advancing side by side and open a new one as soon as one "
                          "finishes or is dropped",
    ("widen", "adaptive"): "keep a window of live branches side by side, refilled as they finish or drop, "
                           "whose size grows with the disagreement among the completed answers: `width` + "
                           "`widen_gain` x (1 - leader share)",
    ("leader", "completed"): "the leader is the majority of completed (final) answers",
    ("leader", "latest"): "the leader is the majority of the latest answers of all kept branches "
                          "(intermediate probes count; the no-answer marker does not)",
    ("depth", "uniform"): "every live branch reads one chunk per step",
    ("depth", "consensus"): "after warm-up, branches agreeing with the leader read `burst` chunks per step, "
                            "the others one (favour the consensus)",
    ("depth", "deepest"): "the deeper half of the live branches reads `burst` chunks per step, the rest one "
                          "(favour the deepest, so answers complete sooner)",
    ("depth", "bursts"): "every live branch reads `burst` chunks per step (coarse bursts)",
    ("prune", "none"): "no pruning on disagreement",
    ("prune", "disagreement"): "after warm-up, a branch disagreeing with the leader for `patience` consecutive "
                               "steps is pruned; `min_alive` live branches are always kept",
    ("prune", "off_track"): "after warm-up, a branch whose answer differs from the leader and is held by no "
                            "other live branch for `patience` consecutive steps is pruned (minority clusters "
                            "survive); `min_alive` live branches are always kept",
    ("cutoff", "none"): "no length cut-off",
    ("cutoff", "median_length"): "once two branches have finished, a live branch that has read more than `drop` "
                                 "x the median length (in chunks) of the finished ones is dropped",
    ("exit", "none"): "a branch completes when its trace ends",
    ("exit", "agree"): "a branch also completes early, with that answer, once its last `exit_run` probe answers "
                       "agree (Dynasor / ES-CoT style; never on the no-answer marker)",
    ("stop", "beta_conf"): "stop once the Beta-majority confidence of the completed answers exceeds "
                           "`conf_thresh`",
    ("stop", "stability"): "stop once the completed-answer winner has been the same, with a strict lead, for "
                           "`window` consecutive steps",
    ("stop", "ema"): "stop once the EMA (weight `ema_alpha`) of the pool confidence reaches `conf_thresh` "
                     "and has not fallen by more than `slack` over the last `window` steps",
    ("stop", "quorum"): "stop once the leader has `quorum` completed votes and leads the runner-up by "
                        "`margin`",
    ("stop", "bayes"): "stop once the Bayesian posterior that the leader is the mode of the answer "
                       "distribution, from the vote counts of the completed answers, reaches `conf_thresh`",
    ("stop", "weighted"): "stop once the Beta-majority confidence of the weighted votes (the aggregation's "
                          "weights, rescaled to the number of completed answers) exceeds `conf_thresh`",
    ("aggregate", "majority"): "majority of completed answers (first seen wins ties); if none completed, "
                               "majority of the latest answers",
    ("aggregate", "depth_weighted"): "weighted vote: each completed answer weighs 1, each live branch's latest "
                                     "answer weighs probes / (probes + 8), so deep branches count more",
    ("aggregate", "length_weighted"): "weighted vote of the completed answers, each weighing (median length / "
                                      "its branch's length) ** `length_power`: shorter branches weigh more",
    ("aggregate", "stability_weighted"): "weighted vote of the completed answers, each weighing (share of its "
                                         "branch's reads that already showed it) ** `stab_power`",
    ("aggregate", "short_stable"): "weighted vote of the completed answers by length and stability: "
                                   "(median length / length) ** `length_power` x (stable share) ** `stab_power`",
}

STOP_REASONS = {"beta_conf": "confidence_gate", "stability": "stable_winner", "ema": "ema_momentum_gate",
                "quorum": "quorum", "bayes": "posterior_gate", "weighted": "weighted_confidence_gate"}


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


def _needs(g: Genome) -> tuple[bool, bool, bool]:
    """(lengths, runs, weighted): what the completed-answer bookkeeping must keep for these mechanisms."""
    weighted = g.aggregate in WEIGHTED_AGGREGATES
    runs = g.exit == "agree" or g.aggregate in ("stability_weighted", "short_stable")
    lengths = g.cutoff == "median_length" or weighted
    return lengths, runs, weighted


def generate_source(genome: Genome, title: str = "", rationale: str = "") -> str:
    """The complete controller source of a genome."""
    g = genome
    knobs = g.active_knobs()
    need_len, need_runs, weighted = _needs(g)
    doc = [f'"""{title or "Offline-discovered controller"} ({g.describe()}).', ""]
    if rationale:
        doc += [rationale, ""]
    doc.append("Mechanisms (every hyper-parameter is a monotone function of beta, see schedule()):")
    if g.rolling():
        doc.append(f"- Widening: {MECHANISM_DOCS[('widen', g.widen)]}; never more than `max_branches` "
                   "(itself capped at 64) branches in all.")
    else:
        doc.append(f"- Widening: open `n_init` branches, then {MECHANISM_DOCS[('widen', g.widen)]}; never more "
                   "than `max_branches` (itself capped at 64).")
    if g.uses_leader():
        doc.append(f"- Leader: {MECHANISM_DOCS[('leader', g.leader)]}.")
    doc.append(f"- Depth: {MECHANISM_DOCS[('depth', g.depth)]}.")
    if g.exit != "none":
        doc.append(f"- Early exit: {MECHANISM_DOCS[('exit', g.exit)]}.")
    doc.append(f"- Pruning: {MECHANISM_DOCS[('prune', g.prune)]}.")
    if g.cutoff != "none":
        doc.append(f"- Length cut-off: {MECHANISM_DOCS[('cutoff', g.cutoff)]}.")
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

    imports = {"Controller", "MAX_BRANCHES", "safe_probe_new"}
    imports.add("bayes_posterior" if g.stop == "bayes" else "beta_confidence")
    if g.stop != "weighted":
        imports.add("vote_stats")
    if g.aggregate == "depth_weighted":
        imports.add("weighted_vote")
    if g.aggregate != "depth_weighted" or (g.uses_leader() and g.leader == "latest"):
        imports.add("majority")

    out: list[str] = list(doc)
    # isort's order: constants, classes, then functions.
    ordered = sorted(imports, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    line = f"from autotts_runtime import {', '.join(ordered)}"
    if len(line) > 110:
        line = "from autotts_runtime import (\n" + "".join(f"    {n},\n" for n in ordered) + ")"
    out += ["", line, ""]
    if g.rolling():
        out.append("MAX_STEPS = 6000  # outer-step guard: each step reads a chunk; 64 branches x 81 chunks at most")
    else:
        out.append("MAX_STEPS = 400  # outer-step guard; every live branch reads at least one chunk per step")
    if (g.uses_leader() and g.leader == "latest") or g.aggregate == "depth_weighted" or g.exit == "agree":
        out.append("NO_ANSWER = 'ERR'  # the replay format's marker for a probe with no extractable answer")
    if g.aggregate == "depth_weighted":
        out.append("DEPTH_HALF = 8  # probes at which a live branch's latest answer weighs one half")
    if g.cutoff == "median_length":
        out.append("CUT_AFTER = 2  # finished branches needed before the length cut-off applies")
    out += ["", "",
            "class _Branch:",
            '    __slots__ = ("index", "latest", "finished", "pruned", "probes", "deviant", "run")',
            "",
            "    def __init__(self, index, latest, finished):",
            "        self.index = index",
            "        self.latest = latest",
            "        self.finished = finished",
            "        self.pruned = False",
            "        self.probes = 0  # probe_more reads so far; the branch has read probes + 1 chunks",
            "        self.deviant = 0",
            "        self.run = 1  # consecutive reads that returned the latest answer",
            "",
            "",
            "def _deeper_first(branch):",
            "    return -branch.probes",
            ""]
    if g.prune != "none":
        out += ["", "def _most_deviant_first(branch):", "    return -branch.deviant", ""]
    if weighted:
        out += ["", "def _weight_of(item):", "    return item[1]", ""]
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


KNOB_READS = {
    "width": 'width = p["width"]',
    "widen_gain": 'widen_gain = p["widen_gain"]',
    "widen_burst": 'widen_burst = p["widen_burst"]',
    "widen_conf": 'widen_conf = p["widen_conf"]',
    "agree_share": 'agree_share = p["agree_share"]',
    "burst": 'burst = p["burst"]',
    "patience": 'patience, min_alive = p["patience"], p["min_alive"]',
    "drop": 'drop = p["drop"]',
    "exit_run": 'exit_run = p["exit_run"]',
    "conf_thresh": 'conf_thresh = p["conf_thresh"]',
    "window": 'window = p["window"]',
    "ema_alpha": 'alpha = p["ema_alpha"]',
    "slack": 'slack = p["slack"]',
    "quorum": 'quorum, margin = p["quorum"], p["margin"]',
    "length_power": 'length_power = p["length_power"]',
    "stab_power": 'stab_power = p["stab_power"]',
}


def _weights_expr(g: Genome) -> list[str]:
    """Body of ``weights()``: one weight per completed answer."""
    if g.aggregate == "length_weighted":
        return ["        order = sorted(lengths)",
                "        median = order[len(order) // 2]",
                "        return [(median / n) ** length_power for n in lengths]"]
    if g.aggregate == "stability_weighted":
        return ["        return [(runs[i] / lengths[i]) ** stab_power for i in range(len(lengths))]"]
    return ["        order = sorted(lengths)",
            "        median = order[len(order) // 2]",
            "        return [(median / lengths[i]) ** length_power * (runs[i] / lengths[i]) ** stab_power",
            "                for i in range(len(lengths))]"]


def _solve_body(g: Genome) -> list[str]:
    need_len, need_runs, weighted = _needs(g)
    b: list[str] = []
    b += ["def solve(self, question):",
          "    rec = self.trace",
          "    p = self.params",
          '    cap = min(MAX_BRANCHES, max(1, p["max_branches"]))',
          '    warm_up, min_complete = p["warm_up"], p["min_complete"]']
    if not g.rolling():
        b.append("    widen_from = max(1, warm_up // 2)")
    for k in g.active_knobs():
        if k in KNOB_READS:
            b.append("    " + KNOB_READS[k])
    b += ['    rec.record("start", goal="adaptive widen / deepen / prune / stop", input=dict(p))',
          "    branches = []",
          "    live = []  # branches neither finished nor pruned, in opening order",
          "    completed = []  # final answers in the order their branches finished (decides ties)"]
    if need_len:
        b.append("    lengths = []  # chunks read by each completed branch")
    if need_runs:
        b.append("    runs = []  # reads at the end of each completed branch that showed its answer")
    b += ["    chunks = 0  # probe calls made: the controller's own effort count, never a cost read-out",
          "    stats = [-1, None, 0, 0, 0.0]  # completed only grows: recompute its votes when its length changes",
          ""]
    # Completion bookkeeping
    b += ["    def done(branch):",
          "        completed.append(branch.latest)"]
    if need_len:
        b.append("        lengths.append(branch.probes + 1)")
    if need_runs:
        b.append("        runs.append(branch.run)")
    b.append("")
    if weighted:
        b += ["    def weights():"] + _weights_expr(g) + [""]
        b += ["    def tally():",
              "        totals = {}",
              "        ws = weights()",
              "        for i in range(len(completed)):",
              "            totals[completed[i]] = totals.get(completed[i], 0.0) + ws[i]",
              "        return totals",
              ""]
    # Pool statistics
    b += ["    def pool():",
          "        if stats[0] != len(completed):"]
    if g.stop == "weighted":
        b += ["            if not completed:",
              "                stats[:] = [0, None, 0, 0, 0.0]",
              "                return None, 0, 0, 0.0",
              "            totals = tally()",
              "            ranked = sorted(totals.items(), key=_weight_of, reverse=True)  # ties keep first seen",
              "            scale = len(completed) / sum(totals.values())",
              "            top1 = round(ranked[0][1] * scale)",
              "            top2 = round(ranked[1][1] * scale) if len(ranked) > 1 else 0",
              "            stats[:] = [len(completed), ranked[0][0], top1, top2, beta_confidence(top1, top2)]"]
    else:
        b.append("            winner, top1, top2, _ = vote_stats(completed)")
        if g.stop == "bayes":
            b.append("            stats[:] = [len(completed), winner, top1, top2, "
                     "bayes_posterior(top1, top2, len(completed))]")
        else:
            b.append("            stats[:] = [len(completed), winner, top1, top2, beta_confidence(top1, top2)]")
    b += ["        return stats[1], stats[2], stats[3], stats[4]",
          "",
          "    def open_branch():",
          "        nonlocal chunks",
          "        opened = safe_probe_new(question)",
          "        if opened is None:",
          "            return False",
          "        answer, index, finished = opened",
          "        chunks += 1",
          "        branch = _Branch(index, answer, finished)",
          "        branches.append(branch)",
          "        if finished:",
          "            done(branch)",
          "        else:",
          "            live.append(branch)",
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
          "                answer, finished = probe_more(branch.index)",
          "            except (ValueError, IndexError):",
          "                branch.finished = True",
          "                if branch.latest is not None:",
          "                    done(branch)",
          "                return",
          "            chunks += 1",
          "            branch.probes += 1"]
    if need_runs:
        b.append("            branch.run = branch.run + 1 if answer == branch.latest else 1")
    b += ["            branch.latest = answer",
          "            branch.finished = finished",
          "            if finished:",
          "                done(branch)",
          "                return"]
    if g.exit == "agree":
        b += ["            if branch.run >= exit_run and answer != NO_ANSWER:",
              "                branch.finished = True  # early exit: its probe answers have agreed long enough",
              "                done(branch)",
              "                return"]
    b.append("")
    # Aggregation
    b.append("    def aggregate():")
    if g.aggregate == "majority":
        b += ["        if completed:",
              "            return majority(completed)",
              "        return majority([x.latest for x in branches if not x.pruned and x.latest is not None])"]
    elif g.aggregate == "depth_weighted":
        b += ["        votes = [(a, 1.0) for a in completed]",
              "        for x in branches:",
              "            if not x.pruned and not x.finished and x.latest is not None and x.latest != NO_ANSWER:",
              "                votes.append((x.latest, x.probes / (x.probes + DEPTH_HALF)))",
              "        return weighted_vote(votes)"]
    else:
        b += ["        if completed:",
              "            return max(tally().items(), key=_weight_of)[0]  # the first answer seen wins ties",
              "        return majority([x.latest for x in branches if not x.pruned and x.latest is not None])"]
    b.append("")
    first = 'p["width"]' if g.rolling() else 'p["n_init"]'
    b += [f"    for _ in range({first}):",
          "        if len(branches) >= cap or not open_branch():",
          "            break",
          '    rec.record("init_branches", output={"opened": len(branches)})',
          "    if not branches:",
          '        rec.record("finish", output={"answer": None, "chunks": chunks}, decision={"reason": "no_branches"})',
          "        return None",
          ""]
    if g.cutoff == "median_length":
        b += ["    limit_at = [-1, 0.0]  # (completed branches, length limit) of the last cut-off"]
    if g.stop == "ema":
        b += ["    ema = 0.0", "    ema_window = []"]
    if g.stop == "stability":
        b += ["    stable = 0", "    previous = None"]
    if g.widen == "low_confidence":
        b += ["    last_conf = 0.0"]
    b += ["    seen = -1  # completed answers at the last traced step (steps are traced when one completes)",
          "    for step in range(MAX_STEPS):",
          "        warm = step >= warm_up",
          "        winner, top1, top2, conf = pool()",
          "        alive = live"]
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
              "                live[:] = alive",
              "                if rec.enabled:",
              '                    rec.record("prune", input={"step": step, "leader": leader},',
              '                               output={"pruned": len(doomed),',
              '                                       "answers": [x.latest for x in doomed[:8]]},',
              '                               decision={"keep": len(alive)})']
    # Depth allocation. With uniform depth or bursts every live branch reads alike, so deeper-first is the
    # opening order already; the other rules sort a copy (``live`` keeps the opening order).
    if g.depth not in ("uniform", "bursts"):
        b.append("        alive = sorted(alive, key=_deeper_first)")
    if g.depth == "uniform":
        # advance(x, 1), inlined: this loop is where a rolling window spends its time.
        b += ["        for x in alive:",
              "            try:",
              "                answer, finished = probe_more(x.index)",
              "            except (ValueError, IndexError):",
              "                x.finished = True",
              "                if x.latest is not None:",
              "                    done(x)",
              "                continue",
              "            chunks += 1",
              "            x.probes += 1"]
        if need_runs:
            b.append("            x.run = x.run + 1 if answer == x.latest else 1")
        b += ["            x.latest = answer",
              "            if finished:",
              "                x.finished = True",
              "                done(x)"]
        if g.exit == "agree":
            b += ["            elif x.run >= exit_run and answer != NO_ANSWER:",
                  "                x.finished = True  # early exit: its probe answers have agreed long enough",
                  "                done(x)"]
    elif g.depth == "consensus":
        b += ["        for x in alive:",
              "            advance(x, burst if warm and x.latest == leader else 1)"]
    elif g.depth == "deepest":
        b += ["        cut = alive[len(alive) // 2].probes if alive else 0",
              "        for x in alive:",
              "            advance(x, burst if x.probes >= cut else 1)"]
    else:
        b += ["        for x in alive:", "            advance(x, burst)"]
    if g.cutoff == "median_length":
        b += ["        if len(lengths) >= CUT_AFTER:",
              "            if limit_at[0] != len(lengths):  # the median moves only when a branch completes",
              "                order = sorted(lengths)",
              "                limit_at[:] = [len(lengths), drop * order[len(order) // 2]]",
              "            limit = limit_at[1]",
              "            cut = [x for x in alive if not x.finished and x.probes + 1 > limit]",
              "            for x in cut:",
              "                x.pruned = True",
              "            if cut and rec.enabled:",
              '                rec.record("prune", input={"step": step, "limit": limit},',
              '                           output={"pruned": len(cut), "answers": [x.latest for x in cut[:8]]},',
              '                           decision={"rule": "median_length"})']
    b += ["        live[:] = [x for x in live if not x.finished and not x.pruned]",
          "        winner, top1, top2, conf = pool()",
          "        ready = warm and len(completed) >= min_complete"]
    if g.stop in ("beta_conf", "weighted"):
        b += ["        stop = ready and conf > conf_thresh"]
    elif g.stop == "bayes":
        b += ["        stop = ready and conf >= conf_thresh"]
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
    b += ["        if rec.enabled and (stop or seen != len(completed)):",
          "            seen = len(completed)",
          '            rec.record("forward", input={"step": step, "alive": len(alive)}, output={"chunks": chunks})',
          '            rec.record("terminate_check", input={"completed": len(completed), "conf": conf},',
          '                       output={"winner": winner}, decision={"stop": stop})',
          "        if stop:",
          "            answer = aggregate()",
          '            rec.record("finish", output={"answer": answer, "chunks": chunks, "opened": len(branches)},',
          f'                       decision={{"reason": "{STOP_REASONS[g.stop]}"}})',
          "            return answer"]
    # Widening
    if g.rolling():
        if g.widen == "adaptive":
            b += ["        target = width",
                  "        if completed:",
                  "            target += round(widen_gain * (1.0 - top1 / len(completed)))"]
        else:
            b += ["        target = width"]
        b += ["        widened = 0",
              "        while len(live) < target and len(branches) < cap and open_branch():",
              "            widened += 1"]
    else:
        if g.widen == "low_confidence":
            b += ["        want = conf < widen_conf and conf <= last_conf",
                  "        last_conf = conf"]
        elif g.widen == "disagreement":
            b += ["        held = [x.latest for x in branches if not x.pruned and x.latest is not None]",
                  "        want = leader is None or held.count(leader) < agree_share * len(held)"]
        else:
            b += ["        want = True"]
        b += ["        widened = 0",
              "        if want and step >= widen_from:",
              "            while widened < widen_burst and len(branches) < cap and open_branch():",
              "                widened += 1"]
    b += ["        if widened and rec.enabled:",
          '            rec.record("update_states", output={"widened": widened, "opened": len(branches)})',
          "        if not widened and not live:",
          "            break  # every branch finished or pruned and no new one was wanted",
          "    answer = aggregate()",
          '    rec.record("finish", output={"answer": answer, "chunks": chunks, "opened": len(branches)},',
          '               decision={"reason": "loop_end"})',
          "    return answer"]
    return b
