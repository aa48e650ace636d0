"""get_evaluation / get_traces: held-out evaluations are invisible, pages and sizes are capped."""

from __future__ import annotations

import pytest
from autotts_graph.store.db import StoreError
from autotts_graph.tools.traces import (
    MAX_STEPS_PER_TRACE,
    GetEvaluationInput,
    GetTracesInput,
    cap_steps,
    get_evaluation,
    get_traces,
)

from .conftest import HELDOUT_ENV, SEARCH_ENV


def test_search_evaluation_visible(populated):
    ctx = populated.ctx()
    ev = get_evaluation(ctx, GetEvaluationInput(evaluation_id=populated.search_ev, per_question=True))
    assert ev.status == "ok" and {p.env for p in ev.points} == {SEARCH_ENV}
    assert [p.beta for p in ev.points] == [0.3, 0.8]
    for p in ev.points:
        assert len(p.question_accuracy) == 3 and all(0 <= a <= 1 for a in p.question_accuracy)
        assert abs(100 * sum(p.question_accuracy) / 3 - p.accuracy) < 0.01
        assert p.params["max_samples"] >= 1


@pytest.mark.parametrize("which", ["heldout_ev", "mixed_ev"])
def test_heldout_evaluations_are_unknown(populated, which):
    ctx = populated.ctx()
    ev_id = getattr(populated, which)
    with pytest.raises(StoreError, match="unknown evaluation") as err:
        get_evaluation(ctx, GetEvaluationInput(evaluation_id=ev_id))
    with pytest.raises(StoreError, match="unknown evaluation") as err2:
        get_traces(ctx, GetTracesInput(evaluation_id=ev_id))
    with pytest.raises(StoreError) as missing:
        get_evaluation(ctx, GetEvaluationInput(evaluation_id="ev-doesnotexist"))
    # Hidden and nonexistent read the same (apart from the id), so existence does not leak either.
    assert str(err.value).replace(ev_id, "X") == str(missing.value).replace("ev-doesnotexist", "X")
    assert "secret" not in str(err.value) + str(err2.value)
    exposed = populated.ctx(expose_heldout=True)
    ev = get_evaluation(exposed, GetEvaluationInput(evaluation_id=ev_id))
    assert HELDOUT_ENV in {p.env for p in ev.points}
    assert get_traces(exposed, GetTracesInput(evaluation_id=ev_id, env=HELDOUT_ENV)).total > 0


def test_traces_filters_and_pages(populated):
    ctx = populated.ctx()
    everything = get_traces(ctx, GetTracesInput(evaluation_id=populated.search_ev, limit=50))
    # 2 betas x 2 trace seeds x 3 questions
    assert everything.total == 12 and len(everything.traces) == 12 and everything.next_offset is None
    pages, offset = [], 0
    while offset is not None:
        page = get_traces(ctx, GetTracesInput(evaluation_id=populated.search_ev, limit=5, offset=offset))
        pages.extend(page.traces)
        offset = page.next_offset
    assert [(t.beta, t.seed, t.question_index) for t in pages] == \
        [(t.beta, t.seed, t.question_index) for t in everything.traces]
    fails = get_traces(ctx, GetTracesInput(evaluation_id=populated.search_ev, failures_only=True, limit=50))
    assert fails.total == sum(not t.is_correct for t in everything.traces)
    assert all(not t.is_correct for t in fails.traces)
    one = get_traces(ctx, GetTracesInput(evaluation_id=populated.search_ev, beta=0.8, question_index=1))
    assert one.total == 2 and all(t.beta == 0.8 and t.question_index == 1 for t in one.traces)
    t = one.traces[0]
    assert t.steps[0]["event"] == "start" and t.steps[-1]["event"] == "finish"
    with pytest.raises(StoreError, match="unknown environment"):
        get_traces(ctx, GetTracesInput(evaluation_id=populated.search_ev, env=HELDOUT_ENV))
    with pytest.raises(ValueError):
        GetTracesInput(evaluation_id=populated.search_ev, limit=500)


def test_cap_steps_keeps_head_and_tail():
    middle = [{"event": "forward", "input": i} for i in range(1000)]
    steps = [{"event": "start"}, *middle, {"event": "finish"}]
    capped, omitted, shortened = cap_steps(steps)
    assert shortened and omitted == len(steps) - MAX_STEPS_PER_TRACE
    assert capped[0]["event"] == "start" and capped[-1]["event"] == "finish"
    assert any(s["event"] == "omitted" for s in capped)
    huge = [{"event": "start", "state": "y" * 100_000}, {"event": "finish"}]
    capped, omitted, shortened = cap_steps(huge)
    assert shortened and omitted == 0 and len(str(capped[0])) < 3000 and capped[0]["event"] == "start"
    small = [{"event": "start"}, {"event": "finish"}]
    assert cap_steps(small) == (small, 0, False)
