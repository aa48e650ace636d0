"""CMC, the Confidence Momentum Controller discovered in AutoTTS round r0004 (replay spec §5.5).

Branches are probed every round; those agreeing with the completed-answer winner get a deeper burst,
persistent dissenters are abandoned (two always stay alive), new branches open while the EMA of the
pool's Beta confidence is low and not rising, and the controller stops once that EMA is high and not
falling. Every knob is a function of the single beta.
"""

from autotts_runtime import Controller, beta_confidence, majority, safe_probe_new, vote_stats

HARD_BRANCH_CAP = 64
MAX_OUTER_STEPS = 500


class _Branch:
    __slots__ = ("index", "latest", "finished", "abandoned", "probe_count", "disagree")

    def __init__(self, index, latest, finished):
        self.index = index
        self.latest = latest
        self.finished = finished
        self.abandoned = False
        self.probe_count = 0
        self.disagree = 0


def _by_probe_count(branch):
    return -branch.probe_count


def _by_disagree(branch):
    return -branch.disagree


class ConfidenceMomentumController(Controller):
    NAME = "optimal_controller"

    def schedule(self, beta):
        return {
            "n_init": max(2, round(2 + 6 * beta)),
            "max_branch_use": min(64, round(4 + 60 * beta)),
            "warm_up": max(2, round(2 + 8 * beta)),
            "abandon_patience": max(3, round(3 + 9 * beta)),
            "T_ema": max(2, round(2 + 6 * beta)),
            "ema_alpha": round(0.70 - 0.40 * beta, 4),
            "conf_thresh": round(0.85 + 0.12 * beta, 4),
            "delta_slack": round(0.04 - 0.03 * beta, 4),
            "burst_aligned": max(1, round(1 + 2 * beta)),
            "widen_burst": max(1, round(1 + 3 * beta)),
            "trend_thresh": round(0.04 - 0.03 * beta, 4),
            "min_complete": max(2, round(2 + 3 * beta)),
        }

    def solve(self, question):
        rec = self.trace
        p = self.params
        alpha = p["ema_alpha"]
        keep = 1.0 - alpha
        warm_up, patience, t_ema = p["warm_up"], p["abandon_patience"], p["T_ema"]
        conf_thresh, delta_slack, trend_thresh = p["conf_thresh"], p["delta_slack"], p["trend_thresh"]
        burst_aligned, widen_burst, min_complete = p["burst_aligned"], p["widen_burst"], p["min_complete"]
        cap = min(p["max_branch_use"], HARD_BRANCH_CAP)
        widen_from = max(1, warm_up // 2)
        rec.record("start", goal="confidence-momentum search", input=dict(p))

        branches = []
        completed = []
        pool_cache = [-1, None, 0.0]  # completed only grows, so its stats change only when its length does

        def pool():
            if pool_cache[0] != len(completed):
                if completed:
                    winner, top1, top2, _ = vote_stats(completed)
                    pool_cache[1], pool_cache[2] = winner, beta_confidence(top1, top2)
                pool_cache[0] = len(completed)
            return pool_cache[1], pool_cache[2]

        def open_branch():
            opened = safe_probe_new(question)
            if opened is None:
                return False
            answer, index, finished = opened
            branches.append(_Branch(index, answer, finished))
            if finished:
                completed.append(answer)
            return True

        probe_more = question.probe_more

        for _ in range(p["n_init"]):
            if not open_branch():
                break
        rec.record("init_branches", output={"opened": len(branches)})
        if not branches:
            rec.record("finish", output={"answer": None}, decision={"reason": "no_branches"})
            return None

        ema = 0.0
        history = []
        for step in range(MAX_OUTER_STEPS):
            warm = step >= warm_up
            winner, conf = pool()
            ema = (keep * ema) + (alpha * conf)
            history.append(ema)
            if len(history) > t_ema:
                history.pop(0)
            alive = [b for b in branches if not b.abandoned and not b.finished]
            abandoned = 0
            if warm and winner is not None:
                for b in alive:
                    b.disagree = b.disagree + 1 if b.latest != winner else 0
                candidates = sorted((b for b in alive if b.disagree >= patience), key=_by_disagree)
                for b in candidates[: max(0, len(alive) - 2)]:
                    b.abandoned = True
                    abandoned += 1
                if abandoned:
                    alive = [b for b in alive if not b.abandoned]
            for b in sorted(alive, key=_by_probe_count):
                aligned = warm and winner is not None and b.latest == winner
                # Advance by the burst (the safe probe-more wrapper inlined: this is the hot loop).
                for _ in range(burst_aligned if aligned else 1):
                    try:
                        b.latest, b.finished = probe_more(b.index)
                    except (ValueError, IndexError):
                        b.finished = True
                        if b.latest is not None:
                            completed.append(b.latest)
                        break
                    b.probe_count += 1
                    if b.finished:
                        completed.append(b.latest)
                        break
            if rec.enabled:
                rec.record("forward", input={"step": step, "alive": len(alive)}, output={"abandoned": abandoned})
            winner, conf = pool()
            ema = (keep * ema) + (alpha * conf)
            history[-1] = ema
            trend = history[-1] - history[0] if len(history) >= 2 else 0.0
            stop = warm and len(completed) >= min_complete and ema >= conf_thresh and trend >= -delta_slack
            if rec.enabled:
                rec.record("terminate_check", input={"ema": ema, "trend": trend, "completed": len(completed)},
                           output={"winner": winner}, decision={"stop": stop})
            if stop:
                rec.record("finish", output={"answer": winner}, decision={"reason": "ema_momentum_gate"})
                return winner
            if all(b.finished or b.abandoned for b in branches):
                if rec.enabled:
                    rec.record("update_states", decision={"exhausted": True})
                break
            widened = 0
            if len(branches) < cap and trend <= trend_thresh and step >= widen_from and ema < conf_thresh:
                for _ in range(widen_burst):
                    if len(branches) >= cap or not open_branch():
                        break
                    widened += 1
            if rec.enabled:
                rec.record("update_states", output={"widened": widened, "spawned": len(branches)})
        if completed:
            answer = majority(completed)
        else:
            answer = majority([b.latest for b in branches if not b.abandoned and b.latest is not None])
        rec.record("finish", output={"answer": answer}, decision={"reason": "loop_end"})
        return answer
