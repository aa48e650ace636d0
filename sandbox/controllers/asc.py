"""ASC, adaptive consistency with Beta stopping (replay spec §5.2).

Full reads one at a time; stop as soon as the Beta-majority confidence of the leader strictly exceeds the
threshold. beta maps to max_samples = round(2 ** (6 * beta)) (1 ... 64); threshold 0.95.
"""

from autotts_runtime import Controller, beta_confidence, majority, safe_full_read, vote_stats


class AdaptiveConsistency(Controller):
    NAME = "asc"

    def schedule(self, beta):
        return {"max_samples": max(1, round(2 ** (6 * beta))), "threshold": 0.95}

    def solve(self, question):
        rec = self.trace
        max_samples = int(self.params["max_samples"])
        threshold = self.params["threshold"]
        rec.record("start", goal="sample until confident", input={"max_samples": max_samples, "threshold": threshold})
        candidates = []
        for sample in range(max_samples):
            answer = safe_full_read(question)
            if answer is None:
                rec.record("read_stop", goal="no branch left", input={"sample": sample})
                break
            candidates.append(answer)
            if rec.enabled:
                rec.record("read", input={"sample": sample}, output={"answer": answer})
            if len(candidates) < 2:
                rec.record("confidence_skip", goal="need two samples")
                continue
            winner, top1, top2, _ = vote_stats(candidates)
            conf = beta_confidence(top1, top2)
            if rec.enabled:
                rec.record("confidence_check", input={"top1": top1, "top2": top2}, output={"conf": conf},
                           decision={"stop": conf > threshold})
            if conf > threshold:
                rec.record("finish", output={"answer": winner}, decision={"reason": "confidence_threshold"})
                return winner
        winner = majority(candidates)
        rec.record("finish", output={"answer": winner}, decision={"reason": "max_samples_or_exhausted"})
        return winner
