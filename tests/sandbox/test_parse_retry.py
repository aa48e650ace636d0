"""Parsing controller sources survives CPython 3.11's spurious AST SystemError (python/cpython gh-106905)."""

import ast
import types

import pytest
from autotts_graph.sandbox import static_checks


def _failing_first(monkeypatch, times: int, message: str) -> list:
    """Make the static checks' ``ast.parse`` raise ``SystemError(message)`` on its first ``times`` calls."""
    calls = []

    def parse(source, **kwargs):
        calls.append(source)
        if len(calls) <= times:
            raise SystemError(message)
        return ast.parse(source, **kwargs)

    # Only the module under test sees the patched parse (pytest itself parses with the real one).
    monkeypatch.setattr(static_checks, "ast", types.SimpleNamespace(**{**vars(ast), "parse": parse}))
    return calls


def test_a_spurious_recursion_depth_mismatch_is_parsed_again(monkeypatch, controller_source):
    calls = _failing_first(monkeypatch, 2, "AST constructor recursion depth mismatch (before=33, after=38)")
    report = static_checks.check_source(controller_source("cmc"))
    assert not report.errors and report.interpreter == "pypy"
    assert len(calls) >= 3


def test_other_system_errors_are_not_hidden(monkeypatch, controller_source):
    calls = _failing_first(monkeypatch, 1, "something else broke")
    with pytest.raises(SystemError, match="something else"):
        static_checks.parse(controller_source("cmc"))
    assert len(calls) == 1


def test_a_mismatch_that_persists_is_reported(monkeypatch, controller_source):
    _failing_first(monkeypatch, 100, "AST constructor recursion depth mismatch (before=1, after=2)")
    with pytest.raises(SystemError, match="recursion depth mismatch"):
        static_checks.parse(controller_source("cmc"))
