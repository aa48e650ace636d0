"""SC@k, self-consistency: k full reads in cursor order, then the majority (replay spec §5.1).

beta maps to k = round(2 ** (6 * beta)): 1, 2, 4, 8, 16, 32, 64 at beta = 0, 1/6, ..., 1.
"""

from autotts_runtime import Controller, majority, safe_full_read


class SelfConsistency(Controller):
    NAME = "sc"

    def schedule(self, beta):
        return {"k": max(1, round(2 ** (6 * beta)))}

    def solve(self, question):
        rec = self.trace
        k = int(self.params["k"])
        rec.record("start", goal="read k full branches and vote", input={"k": k})
        answers = []
        for _ in range(k):
            answer = safe_full_read(question)
            if answer is None:
                break
            answers.append(answer)
        rec.record("read", goal="full reads", output={"answers": answers})
        winner = majority(answers)
        rec.record("finish", output={"answer": winner}, decision={"reason": "k_reads_or_exhausted"})
        return winner
