"""Helpers for end-to-end tests that drive the real `autotts-graph` command in subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

GRAPH_TESTS = Path(__file__).resolve().parents[1] / "graph"
sys.path.insert(0, str(GRAPH_TESTS))


@pytest.fixture
def tiny_env_store(tmp_path):
    """A store with two tiny search environments and a tiny held-out one."""
    from tiny_runs import synth_store

    return synth_store(tmp_path / "e2e.duckdb")


@pytest.fixture
def subprocess_env():
    """Environment for CLI subprocesses: scripted roles importable, no API key, nothing sent anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(GRAPH_TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
    env["LANGGRAPH_NO_VERSION_CHECK"] = "true"
    return env
