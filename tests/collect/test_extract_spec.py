"""Answer extraction, canonicalisation, specs and the questions file: pure Python, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from autotts_graph.store.collect.backend import CollectError
from autotts_graph.store.collect.canonicalize import Canonicalizer, normalize_answer
from autotts_graph.store.collect.collector import read_questions
from autotts_graph.store.collect.extract import ERR, extract_final_answer, extract_probe_answer
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec, branch_seed


@pytest.mark.parametrize(("text", "expected"), [
    ("204}. So the answer", "204"),
    (r"\frac{1}{576}} is it", r"\frac{1}{576}"),
    (r" \sqrt{6} }", r"\sqrt{6}"),
    ("42", ERR),                       # the brace is never closed
    (r"\frac{1}{2", ERR),              # nested brace open, outer never closed
    ("}", ERR),                        # nothing before the brace
    ("   }", ERR),
    ("", ERR),
])
def test_probe_answer_is_the_text_up_to_the_first_unmatched_brace(text: str, expected: str) -> None:
    assert extract_probe_answer(text) == expected


def test_final_answer_takes_the_last_complete_box() -> None:
    assert extract_final_answer(r"first \boxed{3}, then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert extract_final_answer(r"\boxed{12} and a cut \boxed{1") == "12"
    assert extract_final_answer("no box at all") == ERR
    assert extract_final_answer(r"\boxed{5") == ERR


def test_norm_canonicalisation_merges_spellings_and_keeps_err() -> None:
    assert normalize_answer(r" \dfrac{1}{2} ") == r"\frac{1}{2}"
    assert normalize_answer(r"\left( 1, 2 \right)") == "(1,2)"
    assert normalize_answer(r"30^\circ") == "30"
    assert normalize_answer(r"\text{east}.") == "east"
    assert normalize_answer(ERR) == ERR
    canon = Canonicalizer("norm")
    assert canon.gold(r"\dfrac{1}{2}") == r"\frac{1}{2}"
    assert canon.answer(r"\dfrac{1}{2}", r"\tfrac{1}{2}") == r"\frac{1}{2}"


def test_gold_canonicalisation_replaces_equivalent_answers_and_caches_verdicts() -> None:
    calls: list[tuple[str, str]] = []

    def verify(gold: str, answer: str) -> bool:
        calls.append((gold, answer))
        return answer in {"0.5", r"\frac{2}{4}"}

    canon = Canonicalizer("gold", verify=verify)
    assert canon.answer(r"\frac{1}{2}", "0.5") == r"\frac{1}{2}"
    assert canon.answer(r"\frac{1}{2}", "0.5") == r"\frac{1}{2}"
    assert canon.answer(r"\frac{1}{2}", "3") == "3"
    assert canon.answer(r"\frac{1}{2}", ERR) == ERR
    assert canon.answer(r"\frac{1}{2}", r"\frac{1}{2}") == r"\frac{1}{2}"
    assert calls == [(r"\frac{1}{2}", "0.5"), (r"\frac{1}{2}", "3")]  # cached, ERR and exact never asked
    assert Canonicalizer("none").answer("7", "7.0") == "7.0"


def test_math_verify_equivalence_when_installed() -> None:
    pytest.importorskip("math_verify")
    canon = Canonicalizer("gold")
    assert canon.answer(r"\frac{1}{2}", "0.5") == r"\frac{1}{2}"
    assert canon.answer("204", "205") == "205"


def _spec(**gen: object) -> CollectSpec:
    base = {"model": "m", "tokenizer": "m", "backend": "hf"}
    return CollectSpec(generation=GenerationSpec(**{**base, **gen}), probe=ProbeSpec())


def test_spec_hash_is_stable_and_covers_every_setting() -> None:
    assert _spec().spec_hash == _spec().spec_hash
    assert len(_spec().spec_hash) == 16
    hashes = {_spec().spec_hash, _spec(temperature=0.6).spec_hash, _spec(think_budget=100).spec_hash,
              _spec(seed=1).spec_hash, _spec(backend="vllm").spec_hash, _spec(engine_args={"x": 1}).spec_hash}
    assert len(hashes) == 6
    probe = CollectSpec(generation=GenerationSpec(model="m", tokenizer="m", backend="hf"),
                        probe=ProbeSpec(probe_every=250))
    assert probe.spec_hash not in hashes


def test_branch_seeds_are_deterministic_and_distinct() -> None:
    seeds = {branch_seed(0, "q", b) for b in range(128)}
    assert len(seeds) == 128
    assert branch_seed(0, "q", 5) == branch_seed(0, "q", 5)
    assert branch_seed(0, "q", 5) != branch_seed(1, "q", 5) != branch_seed(0, "q", 5, phase=1)
    assert all(0 <= s < 2**31 for s in seeds)


def test_read_questions_accepts_ids_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "a?", "answer": 204, "id": 3}) + "\n\n"
                    + json.dumps({"question": "b?", "answer": " x "}) + "\n")
    items = read_questions(path)
    assert [(q.question, q.answer, q.id) for q in items] == [("a?", "204", "3"), ("b?", "x", None)]


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "a?"}\n', "q.jsonl:1: missing field 'answer'"),
    ('{"question": "a?", "answer": "1"}\nnot json\n', "q.jsonl:2: invalid JSON"),
    ('[1, 2]\n', "q.jsonl:1: expected an object"),
    ('{"question": "", "answer": "1"}\n', "'question' must be a non-empty string"),
    ('{"question": "a", "answer": "1", "id": 1}\n{"question": "b", "answer": "1", "id": 1}\n',
     "duplicate id '1'"),
    ("\n", "no questions"),
])
def test_read_questions_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(content)
    with pytest.raises(CollectError, match=message.replace("[", r"\[")):
        read_questions(path)
    with pytest.raises(CollectError, match="no such file"):
        read_questions(tmp_path / "missing.jsonl")
