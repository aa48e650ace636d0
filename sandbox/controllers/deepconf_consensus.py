"""DeepConf-consensus: the log-prob-free part of DeepConf's online adaptive sampling (arXiv 2508.15260;
more-baselines spec §5).

Full reads one at a time; once at least N_init reads are in, stop as soon as the leader's vote share
top1 / n reaches tau = 0.95; at the budget B (or when no branch is left) stop; return the majority. With unit
weights this is a share-threshold adaptive self-consistency, a degenerate DeepConf [ours]: the token
confidences, the warm-up threshold, per-trace early termination and confidence-weighted voting all need
log-probs and do not apply. Checking from the N_init-th read on is [inferred]. Ties go to the answer read first.

beta [ours]: B = round(2 + 62 beta) (2 ... 64), N_init = min(B, 2 + round(14 beta)) (2 ... 16); tau = 0.95.
"""

from autotts_runtime import Controller, majority, safe_full_read, vote_stats

TAU = 0.95


class DeepConfConsensus(Controller):
    NAME = "deepconf_consensus"

    def schedule(self, beta):
        budget = round(2 + 62 * beta)
        return {"budget": budget, "n_init": min(budget, 2 + round(14 * beta))}

    def solve(self, question):
        rec = self.trace
        budget = int(self.params["budget"])
        n_init = int(self.params["n_init"])
        rec.record("start", goal="sample until the leader's vote share reaches tau",
                   input={"budget": budget, "n_init": n_init, "tau": TAU})
        answers = []
        while len(answers) < budget:
            answer = safe_full_read(question)
            if answer is None:
                rec.record("read_stop", goal="no branch left", input={"reads": len(answers)})
                break
            answers.append(answer)
            if len(answers) < n_init:
                continue
            winner, top1, _, n = vote_stats(answers)
            share = top1 / n
            if rec.enabled:
                rec.record("share_check", input={"answer": answer, "top1": top1, "n": n}, output={"share": share},
                           decision={"stop": share >= TAU})
            if share >= TAU:
                rec.record("finish", output={"answer": winner}, decision={"reason": "vote_share_threshold"})
                return winner
        winner = majority(answers)
        rec.record("finish", output={"answer": winner}, decision={"reason": "budget_or_exhausted"})
        return winner
