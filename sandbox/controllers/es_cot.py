"""ES-CoT, early stopping on answer-run growth, run as EXIT@k (arXiv 2509.14004; more-baselines spec §3).

A branch is probed chunk by chunk (a step = one 500-token chunk here); its probe answers are grouped into runs
of consecutive identical answers ('ERR' runs included). After each intermediate probe x_t, with runs
r_1..r_n (r_n the current run, x_t included):
* x_t = 'ERR': no stop [ours];
* n = 1: stop iff r_1 >= d_min [ours];
* n >= 2: with D_i = r_{i+1} - r_i, d = D[-1], prev = D[:-1], stop iff d >= d_min and [inferred] a one-sided
  one-sample t-test says prev lies below d: automatic when len(prev) < 2; if sd(prev) = 0, iff
  mean(prev) < d; else scipy.stats.ttest_1samp(prev, d, alternative='less').pvalue < alpha (computed here with
  the Student-t CDF from the regularised incomplete beta function, no scipy).
At a stop the branch's answer is x_t, else its final answer. k branches run this way one after the other
(ES-CoT+SC, the paper's own EXIT@k) and the majority of their exit answers (opening order) is returned.

beta [ours]: d_min = 2 + round(13 beta) (2 ... 15), k = round(64 ** beta) (1 ... 64); alpha = 0.05.
"""

import math

from autotts_runtime import Controller, majority, safe_probe_new

ALPHA = 0.05


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a, b, x):
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_less_pvalue(sample, popmean):
    """p-value of the one-sample t-test of H1 "mean(sample) < popmean" (len >= 2, sd > 0)."""
    k = len(sample)
    mean = sum(sample) / k
    var = sum((x - mean) ** 2 for x in sample) / (k - 1)
    t = (mean - popmean) / math.sqrt(var / k)
    df = k - 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T < -|t|)
    return tail if t < 0 else 1.0 - tail


def run_growth_stop(runs, last, d_min):
    """The ES-CoT rule on the run lengths `runs` (the last one holds the current answer `last`)."""
    if last == "ERR":
        return False
    n = len(runs)
    if n == 1:
        return runs[0] >= d_min
    d = runs[-1] - runs[-2]
    if d < d_min:
        return False
    prev = [runs[i + 1] - runs[i] for i in range(n - 2)]
    if len(prev) < 2:
        return True
    if all(x == prev[0] for x in prev):  # sd = 0: the t statistic is undefined
        return sum(prev) / len(prev) < d
    return t_less_pvalue(prev, d) < ALPHA


class EarlyStoppingCoT(Controller):
    NAME = "es_cot"

    def schedule(self, beta):
        return {"d_min": 2 + round(13 * beta), "k": round(64**beta)}

    def _exit(self, probe_more, opened, d_min):
        """Probe one opened branch until the run rule fires or its end: (answer, reason, probes)."""
        answer, index, finished = opened
        last, runs, probes = answer, [1], 1
        prev = 0  # length of the run before the current one (0 while there is none)
        while not finished:
            # Exact cheap gate first: every stop needs a non-'ERR' answer and r_n - r_(n-1) >= d_min (r_0 = 0).
            if last != "ERR" and runs[-1] - prev >= d_min and run_growth_stop(runs, last, d_min):
                return last, "run_growth", probes
            answer, finished = probe_more(index)
            if not finished:
                probes += 1
                if answer == last:
                    runs[-1] += 1
                else:
                    prev = runs[-1]
                    runs.append(1)
                    last = answer
        return answer, "branch_end", probes

    def solve(self, question):
        rec = self.trace
        d_min = int(self.params["d_min"])
        k = int(self.params["k"])
        rec.record("start", goal="EXIT@k: stop each branch when its answer run outgrows the earlier ones, then vote",
                   input={"d_min": d_min, "k": k, "alpha": ALPHA})
        exits = []
        probe_more = question.probe_more  # an opened branch's index is always valid: no safe wrapper needed
        for slot in range(k):
            opened = safe_probe_new(question)
            if opened is None:
                rec.record("open_stop", goal="no branch left", input={"branch": slot})
                break
            answer, reason, probes = self._exit(probe_more, opened, d_min)
            exits.append(answer)
            if rec.enabled:
                rec.record("branch_exit", input={"branch": opened[1]}, output={"answer": answer},
                           state={"probes": probes}, decision={"reason": reason})
        winner = majority(exits)
        rec.record("finish", output={"answer": winner}, decision={"reason": "k_branches_or_exhausted"})
        return winner
