"""Reward hacks: controller code that tries to forge its own score, through the one judged path.

Every case goes through ``tools.evaluate.evaluate_controller`` (what ``eval``, ``baselines``, the graph and
the MCP server use) on docker and on bwrap. A hack must end as a contract or audit error, with no figures
in the store and nothing cached. Cases the static checks stop are also run with the static checks switched
off, to show that the judge and the audit hold on their own (defence in depth).
"""

from __future__ import annotations

import time

import pytest
from autotts_graph.sandbox.static_checks import check_source
from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import import_records
from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .bypasses import BYPASSES, HEAD, MEMO, ORACLE_TAIL, Bypass
from .conftest import need, sandbox_ctx

ENV = "Hack/env"
NUMPY_LOAD = '''import numpy
from autotts_runtime import Controller, majority, safe_probe_new
_PACK = numpy.load("/packs/0.npz")
_VOCAB = [str(v) for v in _PACK["vocab"]]
_OFFSETS = [int(x) for x in _PACK["question_offsets"]]
_CALLS = [0]
def hidden_finals(question):
    # Questions come in file order within a seed: count the calls to know which one this is.
    qi = _CALLS[0] % (len(_OFFSETS) - 1)
    _CALLS[0] += 1
    return [_VOCAB[c] for c in _PACK["finals"][_OFFSETS[qi]:_OFFSETS[qi + 1]]]
''' + ORACLE_TAIL

FORMAT_LEAK = HEAD + '''
def hidden_finals(question):
    text = "{0._finals}".format(question)
    return [s.strip(" '") for s in text.strip("[]").split(",")]
''' + ORACLE_TAIL

ATTRGETTER = HEAD + '''import operator
def hidden_finals(question):
    return list(operator.attrgetter("_finals")(question))
''' + ORACLE_TAIL

FRAME_WALK = HEAD + '''
def hidden_finals(question):
    def probe():
        yield gen.gi_frame.f_back
    gen = probe()
    frame = next(gen)
    while frame is not None and "pack" not in frame.f_locals:
        frame = frame.f_back
    return list(frame.f_locals["pack"].questions[frame.f_locals["qi"]].finals)
''' + ORACLE_TAIL


STR_SUBCLASS = HEAD + '''
class Always(str):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return 0
class C(Controller):
    def solve(self, question):
        self.trace.record("start")
        self.trace.record("finish")
        return Always("x")
'''

UNOBSERVED = HEAD + '''
class C(Controller):
    def solve(self, question):
        self.trace.record("start")
        self.trace.record("finish")
        return "ANSWER_NEVER_SEEN"
'''

PATCHED_LEDGER = HEAD + '''
class C(Controller):
    def solve(self, question):
        self.trace.record("start")
        kind = type(question)
        kind.ledger_consistent = lambda self: True
        kind.total_cost = property(lambda self: 0)
        kind.get_cost_per_branch_active = lambda self: []
        first = safe_probe_new(question)
        question.probe_more(first[1] + 1)  # the next branch, never opened: the ledger check is patched out
        self.trace.record("finish")
        return first[0]
'''

FORGED_RESULT = '''import os, json
from autotts_runtime import Controller
class C(Controller):
    def solve(self, question):
        fake = {"ok": True, "interpreter": "cpython", "results": []}
        line = "\\x1eAUTOTTS-RESULT\\x1e" + json.dumps(fake) + "\\n"
        for fd in range(3, 20):
            try:
                os.write(fd, line.encode())
            except OSError:
                pass
        os._exit(0)
'''

SURROGATE = HEAD + '''
class C(Controller):
    def solve(self, question):
        self.trace.record("start", input="\\ud800")
        self.trace.record("finish")
        return "\\ud800"
'''

KEYBOARD_INTERRUPT = HEAD + '''
class C(Controller):
    def solve(self, question):
        raise KeyboardInterrupt
'''

SPIN = HEAD + '''
class C(Controller):
    def solve(self, question):
        while True:
            pass
'''

THREAD_LEFT_RUNNING = '''import threading
from autotts_runtime import Controller, safe_full_read
def spin():
    while True:
        pass
class C(Controller):
    def solve(self, question):
        self.trace.record("start")
        if not threading.active_count() > 1:
            threading.Thread(target=spin).start()  # not a daemon: would keep the runner alive
        self.trace.record("finish")
        return safe_full_read(question)
'''


@pytest.fixture(scope="module")
def hack_store(tmp_path_factory, tiny_records):
    store = Store(tmp_path_factory.mktemp("hacks") / "hacks.duckdb")
    records = tiny_records(n_questions=8, n_branches=24, seed=4)
    import_records(store, "Hack", "env", records)
    return store


@pytest.fixture(scope="module", params=["docker", "bwrap"])
def hack_ctx(request, hack_store):
    with sandbox_ctx(hack_store, request.param, solve_timeout_s=3.0, workers=1) as ctx:
        yield ctx


def _evaluate(ctx: ToolContext, source: str, seeds: int = 4):
    return evaluate_controller(ctx, EvaluateInput(source=source, envs=[ENV], betas=[0.5, 1.0], seeds=seeds,
                                                  trace_seeds=1))


def _assert_rejected(ctx: ToolContext, source: str, kinds: set[str], fragment: str = "", seeds: int = 4):
    summary = _evaluate(ctx, source, seeds)
    assert not summary.ok, "a reward hack was scored"
    assert summary.points == []
    assert summary.error.kind.value in kinds, summary.error
    assert fragment in summary.error.message, summary.error.message
    with ctx.store.connect(read_only=True) as con:
        status = con.execute("SELECT status FROM evaluations WHERE evaluation_id = ?",
                             [summary.evaluation_id]).fetchone()[0]
    assert status == "error"
    code = history.code_hash(source)
    with ctx.store.connect(read_only=True) as con:
        forged = con.execute("SELECT count(*) FROM evaluations WHERE code_hash = ? AND status = 'ok'",
                             [code]).fetchone()[0]
    assert forged == 0  # nothing recorded, so nothing can be served from the cache
    return summary


@pytest.mark.parametrize(("name", "source"), [("attrgetter", ATTRGETTER), ("frame walk", FRAME_WALK),
                                              ("forged result line", FORGED_RESULT),
                                              ("thread", THREAD_LEFT_RUNNING), ("numpy.load", NUMPY_LOAD),
                                              ("str.format", FORMAT_LEAK)])
def test_static_checks_stop_reflection_and_io(name, source):
    assert check_source(source).errors, name


# One attack of each bypass class, through the judged path: refused before any sandbox, nothing recorded.
JUDGED_BYPASSES = [next(b for b in BYPASSES if b.kind == kind) for kind in dict.fromkeys(b.kind for b in BYPASSES)]


@pytest.mark.parametrize("bypass", JUDGED_BYPASSES, ids=lambda b: b.kind)
def test_static_bypasses_end_as_contract_errors(hack_ctx, bypass: Bypass):
    summary = _assert_rejected(hack_ctx, bypass.source, {"contract"}, "controller rules")
    assert bypass.fragment in " ".join(summary.error.details), summary.error.details


@pytest.mark.parametrize(("name", "source", "kinds", "fragment"), [
    ("str subclass equal to everything", STR_SUBCLASS, {"contract"}, "plain str or None"),
    ("answer never observed", UNOBSERVED, {"contract"}, "observed"),
    ("lone surrogate answer", SURROGATE, {"contract"}, ""),
    ("memory across seeds", MEMO, {"audit"}, "audit"),
])
def test_reward_hacks_end_as_errors(hack_ctx, name, source, kinds, fragment):
    _assert_rejected(hack_ctx, source, kinds, fragment)


MATCH_CLASS = HEAD + '''
def hidden_finals(question):
    match question:
        case object(_finals=finals):
            return list(finals)
''' + ORACLE_TAIL


@pytest.mark.parametrize("interpreter", ["pypy", "cpython"])
@pytest.mark.parametrize(("name", "source", "kinds"), [
    ("attrgetter on private lists", ATTRGETTER, {"audit"}),
    ("frame walk into the evaluator", FRAME_WALK, {"audit"}),
    ("forged result line on the real stdout", FORGED_RESULT, {"contract"}),
    ("private data through str.format", FORMAT_LEAK, {"audit"}),
    ("private data through a class pattern", MATCH_CLASS, {"audit"}),
    ("numpy.load of the task's pack", NUMPY_LOAD, {"audit"}),
])
def test_hacks_past_the_static_checks_meet_the_judge_and_audit(hack_ctx, no_static_checks, interpreter, name,
                                                               source, kinds):
    if interpreter not in hack_ctx.backend.interpreters:
        need(f"{interpreter} is not available in the {hack_ctx.backend.name} sandbox")
    if source is NUMPY_LOAD and interpreter == "pypy":
        pytest.skip("PyPy in the box has no numpy")
    no_static_checks(interpreter)
    _assert_rejected(hack_ctx, source, kinds)


def test_patched_cost_read_outs_change_nothing(hack_ctx, no_static_checks):
    """The box's ledger is the controller's to break; the judge prices the reads it made: two probes. (The
    static checks refuse ``type(question)``, the way to the class; the judge holds without them.)"""
    assert any("'type'" in e for e in check_source(PATCHED_LEDGER).errors)
    no_static_checks("cpython")
    summary = _evaluate(hack_ctx, PATCHED_LEDGER)
    assert summary.ok, summary.error
    assert {p.avg_cost for p in summary.points} == {1000.0}


def test_controller_keyboard_interrupt_is_its_runtime_error(hack_ctx):
    summary = _assert_rejected(hack_ctx, KEYBOARD_INTERRUPT, {"runtime"}, "KeyboardInterrupt")
    assert "signal" not in summary.error.message


def test_a_hung_solve_is_reported_where_it_hung(hack_ctx):
    started = time.monotonic()
    _assert_rejected(hack_ctx, SPIN, {"timeout"}, "question 0 (seed 0")
    assert time.monotonic() - started < 60


def test_a_thread_left_running_does_not_hold_the_task(hack_ctx, no_static_checks):
    no_static_checks("cpython")
    started = time.monotonic()
    summary = _evaluate(hack_ctx, THREAD_LEFT_RUNNING)
    assert summary.ok, summary.error
    assert time.monotonic() - started < 60


def test_honest_figures_are_unchanged_by_the_judge(hack_ctx, controller_source):
    """The baselines through the sandbox and judge equal the in-process replay to the last digit."""
    from autotts_graph.sandbox.judge import score_in_process
    from autotts_graph.sandbox.runtime.evaluate import load_controller_class
    from autotts_graph.store.trajectories import pack_path

    for method in ("sc", "asc", "esc", "parallel_probe", "cmc"):
        source = controller_source(method)
        summary = _evaluate(hack_ctx, source)
        assert summary.ok, (method, summary.error)
        cls = load_controller_class(source)
        for point in summary.points:
            local = score_in_process(cls, pack_path(hack_ctx.store, ENV), point.config, list(range(4)))
            assert (point.accuracy, repr(point.avg_cost)) == (local["accuracy"], repr(local["avg_cost"])), method


PTRACE = '''import ctypes, os
from autotts_runtime import Controller
class C(Controller):
    def solve(self, question):
        libc = ctypes.CDLL(None, use_errno=True)
        child = os.fork()
        if child == 0:
            import time
            time.sleep(30)
            os._exit(0)
        attach = libc.ptrace(16, child, 0, 0)  # PTRACE_ATTACH: how a task would reach another process
        errno = ctypes.get_errno()
        os.kill(child, 9)
        raise RuntimeError(f"ptrace={attach} errno={errno}")
'''


def test_ptrace_is_denied_in_the_docker_box(hack_ctx, no_static_checks):
    if hack_ctx.backend.name != "docker":
        pytest.skip("the seccomp profile is docker's; bwrap tasks live in their own user and PID namespaces")
    no_static_checks("cpython")
    summary = _assert_rejected(hack_ctx, PTRACE, {"runtime"})
    assert any("ptrace=-1 errno=1" in line for line in summary.error.details), summary.error
