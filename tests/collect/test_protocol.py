"""The collection protocol on a scripted backend (real tokenizer, no model): forcing, probes, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from autotts_graph.store.collect.backend import (
    Backend,
    ChatTokenizer,
    ProbeRequest,
    SampleRequest,
    SampleResult,
)
from autotts_graph.store.collect.collector import (
    CollectOptions,
    QuestionItem,
    run_collection,
    stored_branches,
)
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec, branch_seed
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import export_records, list_environments

THINK_BUDGET, ANSWER_BUDGET, DELTA = 40, 30, 10
FILLER = " ".join(["Let", "me", "think", "about", "it"] * 30)


class Scripted(Backend):
    """Replies from a table keyed by seed; probes answer ``<depth>}`` on odd depths, an open brace on even."""

    def __init__(self, tok: ChatTokenizer, replies: dict[int, tuple[str, bool]]) -> None:
        self.tok = tok
        self.replies = replies
        self.sample_calls: list[SampleRequest] = []
        self.probe_calls: list[ProbeRequest] = []

    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        out = []
        for r in requests:
            self.sample_calls.append(r)
            text, stops = self.replies[r.seed]
            ids = self.tok.encode(text)
            # Like an engine: the budget cuts the reply, and a cut reply did not stop by itself.
            out.append(SampleResult(ids[:r.max_tokens], stops and len(ids) <= r.max_tokens))
        return out

    def probe(self, requests: list[ProbeRequest]) -> list[list[list[int]]]:
        self.probe_calls.extend(requests)
        return [[self.tok.encode(f"{k}}}." if k % 2 else f"{k} {{open")
                 for k in range(1, len(r.cuts) + 1)] for r in requests]


class CrashAfter(Scripted):
    """Dies (like a killed process) when asked for its ``n``-th batch."""

    def __init__(self, tok: ChatTokenizer, replies: dict[int, tuple[str, bool]], n: int) -> None:
        super().__init__(tok, replies)
        self.batches_left = n

    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        if requests and requests[0].max_tokens == THINK_BUDGET:
            if self.batches_left == 0:
                raise KeyboardInterrupt("killed")
            self.batches_left -= 1
        return super().sample(requests)


@pytest.fixture
def tok(tiny_tokenizer_dir: Path) -> ChatTokenizer:
    return ChatTokenizer(str(tiny_tokenizer_dir))


def _spec() -> CollectSpec:
    return CollectSpec(generation=GenerationSpec(model="scripted", tokenizer="t", backend="hf",
                                                 think_budget=THINK_BUDGET, answer_budget=ANSWER_BUDGET),
                       probe=ProbeSpec(probe_every=DELTA))


QUESTIONS = [QuestionItem(question="What is 3 + 4?", answer="7"),
             QuestionItem(question="What is 5 + 7?", answer="12", id="b")]


def _replies() -> dict[int, tuple[str, bool]]:
    """Branch 0 ends by itself; 1 exhausts the budget while thinking; 2 is cut in its answer; 3 has no box."""
    r: dict[int, tuple[str, bool]] = {}
    for qid, gold in (("0", "7"), ("b", "12")):
        s = lambda b, phase=0, q=qid: branch_seed(0, q, b, phase)  # noqa: E731
        r[s(0)] = (f"<think>\nLet me think.\n</think>\n\nThe final answer is \\boxed{{{gold}}}.", True)
        r[s(1)] = (f"<think>\n{FILLER}", False)
        r[s(1, 1)] = ("The final answer is \\boxed{5}.", True)
        r[s(2)] = ("<think>\nShort.\n</think>\n\nSo \\boxed{7}" + ", since 3 + 4 = 7" * 20, False)
        r[s(2, 1)] = (" Done.", True)
        r[s(3)] = ("<think>\nOK.\n</think>\n\nThe final answer is \\boxed{42", True)
    return r


def _options(**kw: object) -> CollectOptions:
    base = {"dataset": "toy", "env_model": "scripted", "n_branches": 4, "batch_size": 2}
    return CollectOptions(**{**base, **kw})


def test_protocol_forces_budget_exhaustion_probes_and_appends_the_final(tmp_path: Path,
                                                                        tok: ChatTokenizer) -> None:
    store = Store(tmp_path / "s.duckdb")
    backend = Scripted(tok, _replies())
    result = run_collection(store, _spec(), QUESTIONS, _options(), backend, tok)
    assert (result.env, result.created, result.generated_branches) == ("scripted/toy", True, 8)
    records = export_records(store, "scripted/toy")
    assert [r["gold_answer"] for r in records] == ["7", "12"]
    assert all(r["probe_freq"] == DELTA for r in records)
    force = tok.encode(_spec().generation.force_text)
    think_end = tok.single_token("</think>")

    b0, b1, b2, b3 = records[0]["each_branch"]
    # Branch 0: natural end; its probes stop before the end of thinking; the final closes the list.
    ids0 = tok.encode("<think>\nLet me think.\n</think>\n\nThe final answer is \\boxed{7}.")
    n_probes0 = (ids0.index(think_end) - 1) // DELTA
    assert b0 == [["1"][:n_probes0] + ["7"], len(ids0), "7"]
    # Branch 1: the budget ran out while thinking -> forcing text, then the sampled answer.
    answer1 = tok.encode("The final answer is \\boxed{5}.")
    ids1 = tok.encode(f"<think>\n{FILLER}")[:THINK_BUDGET] + force + answer1
    assert b1[1] == len(ids1)
    assert b1[0] == ["1", "ERR", "3", "5"]  # probes at 10, 20, 30 (< 40 thinking tokens), final "5" last
    assert b1[2] == "5"
    # Branch 2: thinking closed within budget but the answer was cut: continued without forcing.
    assert b2[2] == "7" and b2[0][-1] == "7" and b2[1] == THINK_BUDGET + len(tok.encode(" Done."))
    # Branch 3: the box never closes -> ERR final, still appended as the last probe.
    assert b3[2] == "ERR" and b3[0][-1] == "ERR"
    assert records[0]["final_answers_trace"] == ["7", "5", "7", "ERR"]

    # The forcing text went into the follow-up prompt of branch 1 only, with its phase-1 seed.
    follow = [r for r in backend.sample_calls if r.max_tokens == ANSWER_BUDGET]
    assert len(follow) == 4  # branches 1 and 2 of both questions
    forced = [r for r in follow if r.prompt[-len(force):] == force]
    assert {r.seed for r in forced} == {branch_seed(0, "0", 1, 1), branch_seed(0, "b", 1, 1)}
    # Probes got prompt + all generated ids, ascending cuts spaced by delta, and the encoded suffix.
    probe = next(p for p in backend.probe_calls if len(p.cuts) == 3)
    assert probe.cuts[1] - probe.cuts[0] == DELTA and probe.suffix == tok.encode(_spec().probe.suffix)
    info = next(e for e in list_environments(store) if e.name == "scripted/toy")
    assert info.origin == "collect" and info.n_branches == 4


def test_resume_after_a_crash_generates_only_missing_branches(tmp_path: Path, tok: ChatTokenizer) -> None:
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(KeyboardInterrupt):
        run_collection(store, _spec(), QUESTIONS, _options(), CrashAfter(tok, _replies(), n=2), tok)
    assert len(stored_branches(store, _spec().spec_hash, "toy")) == 4  # two committed batches of two
    assert list_environments(store) == []  # no half environment

    backend = Scripted(tok, _replies())
    result = run_collection(store, _spec(), QUESTIONS, _options(), backend, tok)
    first_phase = [r for r in backend.sample_calls if r.max_tokens == THINK_BUDGET]
    assert len(first_phase) == 4 and result.generated_branches == 4 and result.reused_branches == 4
    assert {r.seed for r in first_phase} == {branch_seed(0, "b", b) for b in range(4)}

    # The same environment as an uninterrupted collection.
    fresh = Store(tmp_path / "fresh.duckdb")
    run_collection(fresh, _spec(), QUESTIONS, _options(), Scripted(tok, _replies()), tok)
    assert export_records(store, "scripted/toy") == export_records(fresh, "scripted/toy")

    # Idempotent: running again generates nothing and changes nothing.
    again = Scripted(tok, _replies())
    result = run_collection(store, _spec(), QUESTIONS, _options(), again, tok)
    assert (again.sample_calls, result.created, result.generated_branches) == ([], False, 0)


def test_more_branches_extend_and_changed_questions_are_refused(tmp_path: Path, tok: ChatTokenizer) -> None:
    store = Store(tmp_path / "s.duckdb")
    replies = _replies()
    run_collection(store, _spec(), QUESTIONS[:1], _options(n_branches=2), Scripted(tok, replies), tok)
    backend = Scripted(tok, replies)
    with pytest.raises(Exception, match="already exists with different content"):
        run_collection(store, _spec(), QUESTIONS[:1], _options(n_branches=4), backend, tok)
    # The two new branches were stored before the import refused; --replace then only rebuilds.
    assert len([r for r in backend.sample_calls if r.max_tokens == THINK_BUDGET]) == 2
    rebuild = Scripted(tok, replies)
    run_collection(store, _spec(), QUESTIONS[:1], _options(n_branches=4, replace=True), rebuild, tok)
    assert rebuild.sample_calls == []
    assert len(export_records(store, "scripted/toy")[0]["each_branch"]) == 4

    changed = [QuestionItem(question="What is 3 + 5?", answer="8")]
    with pytest.raises(Exception, match="question 0 differs"):
        run_collection(store, _spec(), changed, _options(), Scripted(tok, replies), tok)


def test_canonicalize_norm_rewrites_answers_and_gold(tmp_path: Path, tok: ChatTokenizer) -> None:
    store = Store(tmp_path / "s.duckdb")
    replies = _replies()
    replies[branch_seed(0, "0", 0)] = ("<think>\nx\n</think>\n\\boxed{ \\dfrac{14}{2} }", True)
    q = [QuestionItem(question="What is 3 + 4?", answer="\\dfrac{14}{2}")]
    options = _options(n_branches=1, canonicalize="norm")
    run_collection(store, _spec(), q, options, Scripted(tok, replies), tok)
    rec = export_records(store, "scripted/toy")[0]
    assert rec["gold_answer"] == "\\frac{14}{2}" and rec["each_branch"][0][2] == "\\frac{14}{2}"


def test_gpu_check_config_is_qwen3_0_6b_shaped(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    from autotts_graph.store.collect.tiny import QWEN3_0_6B, write_tiny_model
    from transformers import AutoConfig, AutoTokenizer

    write_tiny_model(tmp_path, AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir)), shape=QWEN3_0_6B,
                     weights=False)
    config = AutoConfig.from_pretrained(str(tmp_path))
    assert (config.model_type, config.architectures) == ("qwen3", ["Qwen3ForCausalLM"])
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads, config.vocab_size) == (
        1024, 28, 8, 151936)
    assert not any(p.suffix == ".safetensors" for p in tmp_path.iterdir())  # dummy weights: config only
