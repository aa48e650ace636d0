"""The evaluator: controller loading errors, traces, and determinism across worker counts."""

import json

import pytest
from autotts_graph.sandbox.judge import score_in_process
from autotts_graph.sandbox.runtime.evaluate import ControllerError, load_controller_class
from autotts_graph.sandbox.runtime.runner import run_task
from autotts_graph.store.packs import write_pack


@pytest.fixture
def tiny_pack(tmp_path, tiny_records):
    return write_pack("tiny/a", tiny_records(n_questions=4, n_branches=16, seed=5), tmp_path)


HEADER = "from autotts_runtime import Controller\n\n"


@pytest.mark.parametrize(("source", "kind", "fragment"), [
    ("def broken(:\n", "syntax", "line 1"),
    ("x = 1\n", "contract", "no subclass"),
    (HEADER + "class A(Controller):\n    def solve(self, q): return None\n"
              "class B(Controller):\n    def solve(self, q): return None\n", "contract", "2 Controller subclasses"),
    (HEADER + "raise RuntimeError('boom at import')\n", "runtime", "boom at import"),
])
def test_loading_errors_are_typed(source, kind, fragment):
    with pytest.raises(ControllerError) as info:
        load_controller_class(source)
    assert info.value.kind == kind
    assert fragment in info.value.message


def test_runtime_error_reports_the_controllers_own_line(tiny_pack):
    source = HEADER + "class A(Controller):\n    def solve(self, q):\n        q.probe_new()\n        return 1 / 0\n"
    result = run_task({"op": "evaluate", "source": source, "packs": {"t": str(tiny_pack)},
                       "points": [{"beta": 0.5}], "seeds": [0]})
    assert not result["ok"]
    err = result["error"]
    assert err["kind"] == "runtime"
    assert any("line 6" in d and "1 / 0" in d for d in err["details"])
    assert err["details"][-1].startswith("ZeroDivisionError")


def test_non_string_answer_is_a_contract_error(tiny_pack):
    source = HEADER + "class A(Controller):\n    def solve(self, q):\n        return object()\n"
    result = run_task({"op": "evaluate", "source": source, "packs": {"t": str(tiny_pack)},
                       "points": [{}], "seeds": [0]})
    assert result["error"]["kind"] == "contract"
    assert "str or None" in result["error"]["message"]


def test_traces_are_kept_for_the_sampled_seed_only(tiny_pack, controller_source):
    cls = load_controller_class(controller_source("cmc"))
    r = score_in_process(cls, tiny_pack, {"beta": 0.5}, [0, 1, 2], frozenset({1}))
    assert {t["shuffle_seed"] for t in r["traces"]} == {1}
    assert len(r["traces"]) == 4
    for t in r["traces"]:
        events = [s["event"] for s in t["trace"]]
        assert events[0] == "start" and events[-1] == "finish" and events.count("finish") == 1
    assert len(r["correct"]) == 3 and len(r["correct"][0]) == 4  # outcomes for every seed and question


def test_action_records_are_reproducible(tiny_pack, controller_source):
    task = {"op": "evaluate", "source": controller_source("parallel_probe"), "packs": {"t": str(tiny_pack)},
            "points": [{"beta": b} for b in (0.0, 0.5, 1.0)], "seeds": list(range(10))}
    one, two = run_task(task), run_task(task)
    assert one["ok"] and two["ok"]
    assert one["results"] == two["results"]
    assert "gold" not in json.dumps(one) and all("accuracy" not in r for r in one["results"])  # the box never scores


def test_validate_reports_non_monotone_schedule(tiny_pack):
    source = (HEADER + "class A(Controller):\n    def schedule(self, beta):\n"
              "        return {'width': 4 if 0.3 < beta < 0.7 else 2}\n"
              "    def solve(self, q):\n        self.trace.record('start')\n        self.trace.record('finish')\n"
              "        return q.get_new_branch_final_answer()\n")
    result = run_task({"op": "validate", "source": source, "packs": {"t": str(tiny_pack)}})
    assert result["ok"]
    assert any("'width' is not monotone" in e for e in result["report"]["errors"])


def test_validate_passes_every_baseline(tiny_pack, controller_source):
    for name in ("sc", "asc", "esc", "parallel_probe", "cmc"):
        report = run_task({"op": "validate", "source": controller_source(name), "packs": {"t": str(tiny_pack)}})
        assert report["ok"] and report["report"]["ok"], (name, report)
