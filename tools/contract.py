"""The controller contract and the replay API, written for an agent that has never seen this project.

One text, generated here: the MCP tool ``controller_contract``, the resource ``autotts://contract`` and
every prompt of the graph's agents (``graph/agents/llm.py``) use ``contract_text()``. Every rule that has a
constant is filled in from the code that enforces it: the allowed imports, forbidden names, allowed dunders
and cost read-outs from the static checks (``sandbox/static_checks.py``); the runtime's exports, the branch
ceiling, the trace keys, the beta grid, the Bayes table's range and the Beta-confidence examples from the
runtime itself (``sandbox/runtime/``).
"""

from __future__ import annotations

from functools import cache

from autotts_graph.sandbox.runtime import __all__ as RUNTIME_EXPORTS
from autotts_graph.sandbox.runtime.bayes import BAYES_N_MAX
from autotts_graph.sandbox.runtime.contract import MAX_BRANCHES, TRACE_KEYS
from autotts_graph.sandbox.runtime.primitives import beta_confidence
from autotts_graph.sandbox.runtime.validate import BETA_GRID
from autotts_graph.sandbox.static_checks import (
    ALLOWED_DUNDERS,
    ALLOWED_IMPORTS,
    COST_READOUTS,
    FORBIDDEN_NAMES,
    MAX_SOURCE_CHARS,
)
from pydantic import BaseModel, Field

CONTRACT_VERSION = "2"  # 2: answers are opaque labels (the relabelling audit)

EXAMPLE_CONTROLLER = '''\
from autotts_runtime import Controller, beta_confidence, majority, safe_probe_more, safe_probe_new, vote_stats


class ProbeVote(Controller):
    """Open a few branches, deepen the unfinished ones chunk by chunk, widen when evidence runs out,
    stop when the leading answer is confident enough."""

    NAME = "probe_vote"

    def schedule(self, beta):
        # Every knob is a smooth, monotone function of beta: more beta, more budget.
        return {
            "width": round(2 + 6 * beta),            # branches opened at the start: 2 .. 8
            "max_branches": round(8 + 56 * beta),    # ceiling on opened branches: 8 .. 64
            "max_depth": round(6 + 74 * beta),       # chunks read per branch at most: 6 .. 80
            "threshold": 0.80 + 0.19 * beta,         # confidence needed to stop: 0.80 .. 0.99
        }

    def solve(self, question):
        p, rec = self.params, self.trace
        rec.record("start", goal="probe until the latest answers agree", input=dict(p))
        latest, depth, finished = {}, {}, set()

        def open_branch():
            step = safe_probe_new(question)          # (answer, branch_index, finished) or None
            if step is None:
                return False
            answer, i, done = step
            latest[i], depth[i] = answer, 1
            if done:
                finished.add(i)
            return True

        for _ in range(p["width"]):
            if not open_branch():
                break
        rec.record("init_branches", output={"opened": len(latest)})
        while True:
            votes = [a for a in latest.values() if a != "ERR"]
            winner, top1, top2, _ = vote_stats(votes)
            conf = beta_confidence(top1, top2)
            if rec.enabled:
                rec.record("terminate_check", input={"top1": top1, "top2": top2}, output={"conf": conf},
                           decision={"stop": conf > p["threshold"]})
            if conf > p["threshold"]:
                rec.record("finish", output={"answer": winner}, decision={"reason": "confident"})
                return winner
            active = [i for i in latest if i not in finished and depth[i] < p["max_depth"]]
            if active:
                for i in active:
                    step = safe_probe_more(question, i)  # (answer, finished) or None
                    if step is None:
                        finished.add(i)
                        continue
                    latest[i], depth[i] = step[0], depth[i] + 1
                    if step[1]:
                        finished.add(i)
                rec.record("forward", input={"deepened": len(active)})
            elif len(latest) < p["max_branches"] and open_branch():
                rec.record("widen", output={"opened": len(latest)})
            else:
                answer = majority(votes) if votes else majority(list(latest.values()))
                rec.record("finish", output={"answer": answer}, decision={"reason": "budget_exhausted"})
                return answer
'''

_CONTRACT = """\
# Writing a test-time-scaling controller for autotts-graph

## What you are building
A reasoning model has already answered every benchmark question many times. For each question the
store holds about 128 pre-sampled reasoning *branches*. A branch is read in *chunks* of `probe_freq`
tokens (500 in the shipped data); after each chunk we know the answer the model would give if stopped
there (a string; `'ERR'` when no answer could be extracted). Reading costs tokens. A *controller*
decides, question by question, which branches to open, how deep to read each one, when to stop, and
which answer to return. The goal: **high accuracy at low token cost**, traced as a curve by a single
knob beta in [0, 1].

Evaluation replays the recorded data exactly, so the same source, data and seeds always give the same
numbers. Accuracy is the exact string match of your returned answer with the gold answer.

## The source file
* One Python file defining exactly **one** subclass of `autotts_runtime.Controller`.
* Imports: only {imports}. Everything the runtime offers comes from
  `from autotts_runtime import {exports}`.
* Not allowed: dynamic code (`eval`, `exec`, `getattr`, `type`, ... listed under *What the checks refuse*),
  private (`_x`) or dunder attributes outside your own class, a module used as a value, file, network or
  process access, more than {max_chars} characters. The code runs in a locked-down sandbox (no network,
  read-only file system, CPU/memory/time limits) and violations fail the evaluation.
* Deterministic: no randomness, no clocks, no state carried from one question to the next.

## What the checks refuse
{calls}, as calls or as any other reference (an alias is caught too); a module used as a value (`np.mean(x)`
is fine, `N = np` or passing `np` around is not); private attributes (starting with `_`) except
`self._name`/`cls._name` inside your own class's methods for attributes your class defines (the question
object's internals are hidden information, and their names are reserved everywhere); dunder attributes
other than {dunders}, assigning `__class__`, special methods beyond the ordinary data model (`__init__`,
`__eq__`, `__lt__`, `__repr__`, ...), class keywords (`metaclass=`); attribute fields in `str.format`
templates (use f-strings); numpy file I/O (`np.load`, `np.fromfile`, `ndarray.tofile`, ...) or
`ndarray.ctypes`.

## The class
```python
class MyController(Controller):
    NAME = "my_controller"              # short name shown in tables

    def schedule(self, beta: float) -> dict:
        # every behaviour-critical hyper-parameter as a deterministic function of beta
        ...

    def solve(self, question) -> str | None:
        # drive the question's primitives, return the answer string (or None = wrong)
        ...
```
* The base constructor takes `config` (a dict, normally `{{"beta": b}}`), clamps beta to [0, 1], stores
  it as `self.beta`, calls `self.schedule(self.beta)` once and stores the result as `self.params`
  (other config keys override schedule entries; do not rely on them). Do not override `__init__` unless
  you call `super().__init__(config)` first.
* `self.trace` is the trace recorder (below). The base `__call__` resets it, then calls `solve`.
* One controller object is reused for every question of an evaluation: reset all per-question state at
  the start of `solve`.

## The single knob beta and the schedule
* beta = 0 is the frugal end, beta = 1 the cautious, evidence-hungry end that may use the whole budget
  (up to `MAX_BRANCHES` = {max_branches} branches per question; it is a ceiling to use adaptively).
* `schedule(beta)` returns a dict of numbers. Each value must be **monotone in beta** (non-decreasing or
  non-increasing over beta = {grid}), finite and deterministic; larger beta must mean more
  spending: more widening, deeper reading of uncertain branches, later stopping, more patient pruning.
  Prefer few parameters and smooth forms (linear, power, clipped ramp, sigmoid); no hand-placed
  breakpoints, no per-question token targets. Non-numeric entries must not change with beta.

## The question object (replay API)
Branches are identified by a **branch index** 0, 1, 2, ... in the order they were opened (the recorded
branches are shuffled per evaluation seed, so index 0 is a random branch). A cursor counts opened
branches.

* `question.probe_new()` -> `(answer, branch_index, finished)`: opens the next branch and reads its
  first chunk. Cost: `probe_freq` tokens (a branch shorter than one chunk finishes at once and costs
  its length).
* `question.probe_more(i)` -> `(answer, finished)`: reads one more chunk of opened branch `i`. Cost:
  `probe_freq` per chunk; the finishing read, which returns the branch's final answer with
  `finished=True`, costs the remaining tokens (possibly 0).
* `question.get_new_branch_final_answer()` -> the final answer of the next branch (a "full read").
  Cost: the branch's whole length in tokens.
* `question.get_seq_and_total_tokens()` -> `(0, tokens spent so far)`. Free; **diagnostics only**,
  never a stopping rule (the cost read-outs {readouts} draw a warning wherever they are used).

Details that matter:
* `answer` is a string; `'ERR'` means "no answer could be extracted" and counts as an ordinary string in
  votes unless you filter it. The answer of an unfinished branch is its provisional answer after the
  chunks read so far; `finished=True` means the returned answer is the branch's final answer.
* Do **not** advance a finished branch again: it returns the final answer again and charges the
  remaining tokens again.
* `probe_new()` and full reads share the cursor. Mixing probing and full reads is allowed but changes
  what cost means; do it only deliberately.
* Errors: `probe_new()` raises when all branches are open; `probe_more(i)` raises for `i` greater than
  the cursor; a full read raises past the last branch. Use the safe wrappers, which return `None`
  instead: `safe_probe_new(question)`, `safe_probe_more(question, i)`, `safe_full_read(question)`.
  Only call `probe_more(i)` on branches you opened (index < number opened): touching an unopened
  branch breaks the cost ledger and aborts the evaluation.
* The question object exposes nothing else you may use (no gold answer, no branch lengths, no future).

## Answers are opaque labels
Use an answer string only for what a vote needs: equality with other answers, the order in which answers
were first seen, lexicographic order (the tie-break of `weighted_vote`), and whether it is `'ERR'`. Do not
know answers in advance (a benchmark's answer key), do not parse them as numbers or formulas, and do not let
the iteration order of a `set` of answers decide anything (iterate a list, or a dict, which keeps first-seen
order). Every evaluation is audited for this (below).

## How you are audited
Every evaluation is **audited**: a secret random sample of its solves is replayed (1) with everything those
solves did not observe replaced by other real branches, and (2) with every answer string of the environment
renamed by a secret bijection that keeps equality, first-seen order, lexicographic order and `'ERR'`. An
honest controller takes exactly the same actions and gives the same answer; any difference fails the
evaluation. The audited solves run in a secret order on one warm controller, so memory across questions or
seeds, and counting calls, are caught as well. The sample catches a controller that deviates on 10 % of its
solves with 99 % probability (2 % for the controller a discovery run selects).

## Helpers
* `majority(answers)`: most frequent answer; ties go to the one seen first; `None` for an empty list.
* `vote_stats(answers)` -> `(winner, top1, top2, total)`: winner as `majority`, `top1` its count, `top2`
  the best count among the other answers (equal to `top1` on a tie, 0 with one distinct answer),
  `total` the list length. Order matters for tie-breaking.
* `beta_confidence(t1, t2)`: posterior probability that the leader with `t1` votes beats the runner-up
  with `t2` votes (uniform prior), e.g. {conf_examples}, (t, t) -> {conf_tie}; 0.0 when `t1 <= 0`.
* `bayes_posterior(a, b, n)`: posterior probability that the leader of a vote (top count `a`, runner-up
  `b`, `n` answers in all) is the mode of the question's answer distribution, under a parameter-free
  prior of geometric answer distributions (optimal Bayesian stopping); 0.0 beyond n = {bayes_n_max}.
* `weighted_vote([(answer, weight), ...])`: answer with the largest summed weight; ties go to the
  lexicographically greatest answer.

## Tracing (how your decisions are diagnosed)
`self.trace.record(event, goal="", input=None, output=None, state=None, decision=None)` appends one
step with the keys {trace_keys}. Rules, checked by validation: the first step of every `solve` is
`start`, there is one step per decision point (e.g. `init_branches`, `forward`, `prune`, `widen`,
`terminate_check`), and **exactly one** `finish` step is the last step on every return path. Payloads
must be small and JSON-serialisable (numbers, strings, short lists, dicts). Tracing is switched on only
for a few sampled seeds; guard expensive payloads with `if self.trace.enabled:`.

## How you are scored
For each environment (a model x benchmark, e.g. `Qwen3-4B/aime24`), each beta and each shuffle seed
0..S-1 (S = 100 by default), every question is solved once with the branches shuffled by that seed.
Accuracy = percent of (seed, question) pairs answered exactly right, rounded to 2 decimals; cost =
mean tokens per question. Objectives: accuracy first; among similar accuracies, fewer tokens. Sweeping
beta should trace a frontier from low budget to near-full budget. Baselines to beat: SC@k (k full reads
and a majority vote), ASC (full reads until Beta confidence > 0.95), ESC (windows of 8 full reads until
one window is unanimous), Parallel-Probe (probe many branches in parallel, prune dissenters) and CMC
(a probing controller with an EMA of confidence); their sources are available as baselines.
A controller must differ substantively from them, use no hidden information and no dataset-specific
shortcuts (the audits above enforce it): held-out benchmarks, never seen during search, decide the final
verdict.

## Workflow with the tools
1. `list_environments` / `describe_environment` to see the search environments.
2. `validate_controller(source)` checks the rules above without a full evaluation (static checks, the
   schedule over the beta grid, a smoke solve with tracing on).
3. `evaluate_controller(source, envs, betas, seeds)` returns accuracy and cost per (env, beta) and an
   `evaluation_id`; `get_evaluation` and `get_traces(evaluation_id, failures_only=True)` show what
   happened on the questions it got wrong; `run_baseline` gives the curves to compare with.

## A complete example
```python
{example}```
"""


class ContractDoc(BaseModel):
    """The controller contract and replay API (markdown) plus a complete example controller."""

    version: str = Field(description="Contract version; changes when the rules change.")
    text: str = Field(description="The contract and replay API as markdown.")
    example_source: str = Field(description="A complete controller source that passes validation.")
    allowed_imports: list[str] = Field(description="Top-level modules a controller may import.")
    max_branches: int = Field(description="The per-question ceiling on opened branches.")


def _code_list(names: object) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names))  # type: ignore[call-overload]


def allowed_imports() -> list[str]:
    """The top-level modules a controller may import (the static checks' list, ``__future__`` aside)."""
    return sorted(ALLOWED_IMPORTS - {"__future__"})


@cache
def contract_text() -> str:
    """The contract and the replay API as markdown, with a complete example controller (generated once per
    process from the constants of the static checks and the runtime)."""
    examples = ((4, 0), (3, 0))
    return _CONTRACT.format(
        imports=_code_list(allowed_imports()),
        exports=", ".join(["Controller", *sorted(n for n in RUNTIME_EXPORTS if n != "Controller")]),
        calls=", ".join(f"`{n}()`" for n in sorted(FORBIDDEN_NAMES)),
        dunders=_code_list(ALLOWED_DUNDERS),
        max_chars=f"{MAX_SOURCE_CHARS:,}",
        readouts=", ".join(f"`{n}()`" for n in sorted(COST_READOUTS)),
        grid=", ".join(f"{b:g}" for b in BETA_GRID),
        max_branches=MAX_BRANCHES,
        bayes_n_max=BAYES_N_MAX,
        conf_examples=", ".join(f"({a}, {b}) -> {beta_confidence(a, b):g}" for a, b in examples),
        conf_tie=f"{beta_confidence(5, 5):g}",
        trace_keys=", ".join(f"`{k}`" for k in TRACE_KEYS),
        example=EXAMPLE_CONTROLLER,
    )


def controller_contract() -> ContractDoc:
    """The contract as a structured tool answer."""
    return ContractDoc(version=CONTRACT_VERSION, text=contract_text(), example_source=EXAMPLE_CONTROLLER,
                       allowed_imports=allowed_imports(), max_branches=MAX_BRANCHES)
