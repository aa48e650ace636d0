"""Choosing a backend: auto prefers docker, falls back to bwrap with a logged reason, never picks process."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from autotts_graph.sandbox.select import SandboxUnavailable, choose, make_backend


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    """Point the docker SDK at a socket nobody listens on."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def test_auto_prefers_docker(docker_client, sandbox_image, monkeypatch) -> None:
    from autotts_graph.sandbox.image import build

    monkeypatch.setattr(build, "image_tag", lambda: sandbox_image)  # the session's image, even if edited since
    backend, reason = choose("auto", pool_size=1)
    try:
        assert backend.name == "docker" and "Docker engine answers" in reason
    finally:
        backend.close()


def test_auto_falls_back_to_bwrap_and_says_why(no_engine, bwrap_backend, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="autotts_graph.sandbox"):
        backend, reason = choose("auto")
    assert backend.name == "bwrap"
    assert "docker is unavailable" in reason and "no Docker engine answers" in reason
    assert any("sandbox bwrap chosen" in r.getMessage() for r in caplog.records)


def test_docker_by_name_without_engine_is_one_line(no_engine) -> None:
    with pytest.raises(SandboxUnavailable) as info:
        make_backend("docker")
    message = str(info.value)
    assert "\n" not in message and "no Docker engine answers at unix://" in message
    assert "--sandbox bwrap" in message


def test_auto_never_picks_process(no_engine, monkeypatch, tmp_path) -> None:
    # No engine and no bwrap on PATH: auto must refuse rather than run code unsandboxed.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "env"):
        os.symlink(shutil.which(tool), bindir / tool)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(SandboxUnavailable) as info:
        choose("auto")
    assert "bwrap is not installed" in str(info.value) and "--sandbox process" in str(info.value)


def test_process_only_by_name_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        backend, reason = choose("process")
    try:
        assert backend.name == "process" and "NOT a security boundary" in reason
        assert any("NOT a security boundary" in r.getMessage() for r in caplog.records)
    finally:
        backend.close()


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown sandbox"):
        make_backend("vm")


def test_bwrap_by_name(bwrap_backend) -> None:
    backend, reason = choose("bwrap")
    assert backend.name == "bwrap" and "weaker" in reason
