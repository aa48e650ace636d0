"""Certaindex-SC, self-consistency with an entropy-based certainty check (arXiv 2412.20993 §3.1, App. B.1,
D.2.1; more-baselines spec §2b).

Read n_det = 5 full branches; if their certaindex H~ = 1 - H / ln n (H the entropy of the empirical answer
distribution, n the number of reads) is at least tau = 0.7 [inferred ">="], stop and return the majority.
Otherwise keep reading full branches up to the cap and return the majority of everything read. With n = 5
and tau = 0.7 the check passes only on unanimity (a 4-1 split gives 0.689). The check is made once, after the
n_det reads, as in the spec's pseudo-code; re-checking after every further read (the spec's optional [ours])
is not done. 'ERR' is an ordinary answer; ties go to the answer read first.

beta [ours]: cap = round(5 + 59 beta) (5 ... 64); n_det = 5 and tau = 0.7 fixed.
"""

import math

from autotts_runtime import Controller, majority, safe_full_read

N_DET = 5
TAU = 0.7


def certaindex(answers):
    """1 - H / ln n of the empirical answer distribution (n = len(answers) >= 2)."""
    n = len(answers)
    counts = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    entropy = 0.0
    for c in counts.values():
        p = c / n
        entropy -= p * math.log(p)
    return 1.0 - entropy / math.log(n)


class CertaindexSC(Controller):
    NAME = "certaindex_sc"

    def schedule(self, beta):
        return {"cap": round(5 + 59 * beta)}

    def solve(self, question):
        rec = self.trace
        cap = int(self.params["cap"])
        rec.record("start", goal="read n_det branches, stop if certain, else read up to the cap and vote",
                   input={"cap": cap, "n_det": N_DET, "tau": TAU})
        answers = []
        for _ in range(N_DET):
            answer = safe_full_read(question)
            if answer is None:
                break
            answers.append(answer)
        rec.record("detect_reads", output={"answers": answers})
        if len(answers) >= 2:
            score = certaindex(answers)
            certain = score >= TAU
            rec.record("certainty_check", input={"reads": len(answers)}, output={"certaindex": score},
                       decision={"stop": certain})
            if certain:
                winner = majority(answers)
                rec.record("finish", output={"answer": winner}, decision={"reason": "certaindex_threshold"})
                return winner
        while len(answers) < cap:
            answer = safe_full_read(question)
            if answer is None:
                rec.record("read_stop", goal="no branch left", input={"reads": len(answers)})
                break
            answers.append(answer)
        winner = majority(answers)
        rec.record("finish", output={"answer": winner}, decision={"reason": "cap_or_exhausted"})
        return winner
