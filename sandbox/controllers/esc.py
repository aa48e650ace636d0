"""ESC, early-stopping self-consistency (replay spec §5.3).

Full reads in windows; stop at the first window whose answers are unanimous. beta maps to
max_samples = 8 * round(2 ** (3 * beta)) (8, 16, 32, 64) with windows of 8.
"""

from autotts_runtime import Controller, majority, safe_full_read


class EarlyStoppingConsistency(Controller):
    NAME = "esc"

    def schedule(self, beta):
        return {"max_samples": 8 * max(1, round(2 ** (3 * beta))), "window_size": 8}

    def solve(self, question):
        rec = self.trace
        max_samples = int(self.params["max_samples"])
        window_size = int(self.params["window_size"])
        if max_samples < 1 or window_size < 1:
            raise ValueError("max_samples and window_size must be >= 1")
        windows = max_samples // window_size
        rec.record("start", goal="windows of full reads until one is unanimous",
                   input={"max_samples": max_samples, "window_size": window_size})
        rec.record("plan_windows", output={"windows": windows})
        candidates = []
        for w in range(windows):
            rec.record("window_start", input={"window": w})
            window = []
            for _ in range(window_size):
                answer = safe_full_read(question)
                if answer is None:
                    rec.record("window_read_stop", goal="no branch left")
                    break
                window.append(answer)
                if rec.enabled:
                    rec.record("window_read", output={"answer": answer})
            if not window:
                rec.record("window_empty", input={"window": w})
                continue
            candidates.extend(window)
            unanimous = len(set(window)) == 1
            if rec.enabled:
                rec.record("window_evaluate", input={"answers": window}, decision={"unanimous": unanimous})
            if unanimous:
                rec.record("finish", output={"answer": window[0]}, decision={"reason": "window_unanimity"})
                return window[0]
        winner = majority(candidates)
        rec.record("finish", output={"answer": winner}, decision={"reason": "max_windows_or_exhausted"})
        return winner
