"""short-m@k: run k chains in lockstep, stop all of them when the first m finish, vote over those m
(arXiv 2505.17813 §4.1-4.2; more-baselines spec §4).

Open k branches (one chunk each), then advance every unfinished branch by one chunk per round, in opening
order, until m branches have finished. The majority over the finished answers in finish order is the answer,
so ties go to the shortest chain, and between equally long chains to the one opened first [ours]. Branches
after the m-th finisher in that round are not advanced [ours]. 'ERR' votes [ours]. When fewer than m finish
(every branch ran out), the vote is over those that did. The spec's sequential variant (§5.3) is not built.

m is a structural constant: 3 (short-3, the paper's recommended balance) unless the config sets ``m`` (1 for
short-1). beta [ours]: k = max(m, round(64 ** beta)).
"""

from autotts_runtime import Controller, majority, safe_probe_new


class ShortMAtK(Controller):
    NAME = "short_m_at_k"

    def schedule(self, beta):
        m = int(self.config.get("m", 3))  # structural: it names the method (short-1, short-3), not a budget
        return {"m": m, "k": max(m, round(64**beta))}

    def solve(self, question):
        rec = self.trace
        m = int(self.params["m"])
        k = int(self.params["k"])
        rec.record("start", goal="lockstep k chains, vote over the first m to finish", input={"m": m, "k": k})
        running = []  # [branch index, chunks read] of unfinished branches, opening order
        finished = []  # answers in finish order
        lengths = []  # chunks of each finished branch (for the trace)
        for _ in range(k):
            opened = safe_probe_new(question)
            if opened is None:
                break
            answer, index, done = opened
            if done:
                finished.append(answer)
                lengths.append(1)
            else:
                running.append([index, 1])
        rec.record("init_branches", output={"opened": len(running) + len(finished), "finished": len(finished)})
        rounds = 0
        probe_more = question.probe_more  # an opened branch's index is always valid: no safe wrapper needed
        while len(finished) < m and running:
            rounds += 1
            still = []
            for pos, branch in enumerate(running):
                step = probe_more(branch[0])
                branch[1] += 1
                if step[1]:
                    finished.append(step[0])
                    lengths.append(branch[1])
                    if len(finished) == m:
                        still.extend(running[pos + 1:])  # not advanced this round
                        break
                else:
                    still.append(branch)
            running = still
            if rec.enabled:
                rec.record("round", input={"round": rounds}, state={"running": len(running),
                                                                    "finished": len(finished)})
        votes = finished[:m]
        winner = majority(votes)
        rec.record("finish", output={"answer": winner, "votes": votes, "chunks": lengths[:m]},
                   decision={"reason": "m_finished" if len(finished) >= m else "all_branches_done"})
        return winner
