"""Dynasor-CoT, early exit within one branch, run as EXIT@k (arXiv 2412.20993; more-baselines spec §2a).

Each branch is probed chunk by chunk (500 tokens here); it exits as soon as its last N probe answers are
identical and not 'ERR', with that answer, else it runs to its end and gives its final answer. k branches are
run this way one after the other and the majority of their exit answers (opening order) is returned; k = 1
is plain Dynasor-CoT.

Deviations, as the spec gives them: the paper's window score C >= τ is the code's τ = 1 (all N equal);
"valid" is "not 'ERR'"; the code's veto of probes containing wait/hold/but/... is dropped (no probe text
here), so this version is more eager; running it as EXIT@k with a majority over branches is [ours].

beta [ours]: N = 2 + round(14 beta) (2 ... 16), k = round(64 ** beta) (1, 2, 2, 3, 5, 8, ..., 64).
"""

from autotts_runtime import Controller, majority, safe_probe_new


class DynasorCoT(Controller):
    NAME = "dynasor_cot"

    def schedule(self, beta):
        return {"N": 2 + round(14 * beta), "k": round(64**beta)}

    def _exit(self, probe_more, opened, window):
        """Probe one opened branch until N identical valid answers or its end: (answer, reason, probes)."""
        answer, index, finished = opened
        last, streak, probes = answer, 1, 1  # streak: how many of the latest probe answers equal `last`
        while not finished:
            # The last N answers are identical iff the trailing streak is at least N.
            if streak >= window and last != "ERR":
                return last, "consistent_window", probes
            answer, finished = probe_more(index)
            if not finished:
                probes += 1
                streak = streak + 1 if answer == last else 1
                last = answer
        return answer, "branch_end", probes

    def solve(self, question):
        rec = self.trace
        window = int(self.params["N"])
        k = int(self.params["k"])
        rec.record("start", goal="EXIT@k: early-exit each branch on N identical probe answers, then vote",
                   input={"N": window, "k": k})
        exits = []
        probe_more = question.probe_more  # an opened branch's index is always valid: no safe wrapper needed
        for slot in range(k):
            opened = safe_probe_new(question)
            if opened is None:
                rec.record("open_stop", goal="no branch left", input={"branch": slot})
                break
            answer, reason, probes = self._exit(probe_more, opened, window)
            exits.append(answer)
            if rec.enabled:
                rec.record("branch_exit", input={"branch": opened[1]}, output={"answer": answer},
                           state={"probes": probes}, decision={"reason": reason})
        winner = majority(exits)
        rec.record("finish", output={"answer": winner}, decision={"reason": "k_branches_or_exhausted"})
        return winner
