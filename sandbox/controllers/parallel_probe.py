"""Parallel-Probe: open many branches, probe them in lock-step, prune the off-track, stop on a stable
majority of intermediate answers (replay spec §5.4).

beta maps to num_chains = round(2 ** (6 * beta)) (1 ... 64); T 40, prune_patience 7, warm_up 15 as in every
published configuration. Finished branches keep voting with their final answer; pruning keeps no floor.
"""

from autotts_runtime import Controller, majority, safe_probe_new


class _Chain:
    __slots__ = ("index", "finished", "pruned", "history", "off_track")

    def __init__(self, index, finished, answer):
        self.index = index
        self.finished = finished
        self.pruned = False
        self.history = [answer]
        self.off_track = 0


class ParallelProbe(Controller):
    NAME = "parallel_probe"

    def schedule(self, beta):
        return {"num_chains": max(1, round(2 ** (6 * beta))), "T": 40, "prune_patience": 7, "warm_up": 15,
                "probe_burst": 1, "max_steps": 100}

    def solve(self, question):
        rec = self.trace
        p = self.params
        num_chains, T, patience = int(p["num_chains"]), int(p["T"]), int(p["prune_patience"])
        warm_up, burst, max_steps = int(p["warm_up"]), int(p["probe_burst"]), int(p["max_steps"])
        rec.record("start", goal="probe chains in parallel until the majority is stable", input=dict(p))
        chains = []
        for _ in range(num_chains):
            opened = safe_probe_new(question)
            if opened is None:
                break
            answer, index, finished = opened
            chains.append(_Chain(index, finished, answer))
        rec.record("init_branches", output={"opened": len(chains)})
        if not chains:
            rec.record("finish", output={"answer": None}, decision={"reason": "no_branches"})
            return None
        stable = 0
        prev = None
        probe_more = question.probe_more
        for step in range(max_steps):
            if rec.enabled:
                rec.record("iteration_start", input={"step": step})
            active = []
            for chain in chains:
                if chain.pruned:
                    continue
                if not chain.finished:
                    last = chain.history[-1]
                    for _ in range(burst):
                        if chain.finished:
                            break
                        try:  # the safe probe-more wrapper, inlined: this is the hot loop
                            last, chain.finished = probe_more(chain.index)
                        except (ValueError, IndexError):
                            chain.finished = True
                            break
                    chain.history.append(last)
                active.append(chain)
            if rec.enabled:
                rec.record("forward", output={"active": len(active)})
            if not active:
                rec.record("finish", output={"answer": prev}, decision={"reason": "all_branches_done_or_no_active"})
                return prev
            winner = majority([c.history[-1] for c in active])
            gated = step >= warm_up and len(active) > 1
            if gated:
                for chain in active:
                    if not chain.finished:
                        chain.off_track = chain.off_track + 1 if chain.history[-1] != winner else 0
            if rec.enabled:
                rec.record("update_states", output={"winner": winner}, decision={"gated": gated})
            pruned = 0
            if gated:
                for chain in active:
                    if not chain.finished and chain.off_track >= patience:
                        chain.pruned = True
                        pruned += 1
                if pruned:
                    active = [c for c in active if not c.pruned]
                    if not active:
                        rec.record("finish", output={"answer": prev},
                                   decision={"reason": "all_branches_done_or_no_active"})
                        return prev
                    winner = majority([c.history[-1] for c in active])
            if rec.enabled:
                rec.record("prune", output={"pruned": pruned, "winner": winner})
            stable = stable + 1 if winner == prev else 0
            prev = winner
            if rec.enabled:
                rec.record("terminate_check", input={"stable": stable, "T": T})
            if stable >= T:
                rec.record("finish", output={"answer": winner}, decision={"reason": "stable_majority_T"})
                return winner
            if all(c.finished or c.pruned for c in chains):
                rec.record("finish", output={"answer": winner}, decision={"reason": "all_branches_done_or_no_active"})
                return winner
        rec.record("finish", output={"answer": prev}, decision={"reason": "max_steps"})
        return prev
