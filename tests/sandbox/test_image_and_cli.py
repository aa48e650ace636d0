"""The image tag follows the runtime sources; `autotts-graph sandbox build|doctor` (CliRunner)."""

from __future__ import annotations

import shutil

from autotts_graph.cli.sandbox_cmd import app
from autotts_graph.sandbox.image import build
from typer.testing import CliRunner


def test_image_tag_follows_runtime_sources(monkeypatch, tmp_path) -> None:
    runtime = tmp_path / "runtime"
    shutil.copytree(build.RUNTIME_DIR, runtime, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "RUNTIME_DIR", runtime)
    first = build.source_hash()
    (runtime / "__pycache__").mkdir(exist_ok=True)
    (runtime / "__pycache__" / "x.pyc").write_bytes(b"noise")  # bytecode does not count
    assert build.source_hash() == first
    (runtime / "replay.py").write_text((runtime / "replay.py").read_text() + "\n# changed\n")
    assert build.source_hash() != first
    assert build.image_tag() == f"autotts-sandbox:{build.source_hash()}"


def test_debian_mirror_comes_from_apt(monkeypatch) -> None:
    monkeypatch.setenv("AUTOTTS_DEBIAN_MIRROR", "http://mirror.example/debian")
    assert build.debian_mirror() == "http://mirror.example/debian"
    monkeypatch.delenv("AUTOTTS_DEBIAN_MIRROR")
    assert build.debian_mirror().rstrip("/").endswith("/debian")


def test_build_is_up_to_date(docker_client, sandbox_image, monkeypatch) -> None:
    monkeypatch.setattr(build, "image_tag", lambda: sandbox_image)
    result = CliRunner().invoke(app, ["build", "--offline"])
    assert result.exit_code == 0, result.output
    assert f"up to date: {sandbox_image}" in result.output


def test_doctor_reports_engine_image_and_pool(docker_client, sandbox_image, monkeypatch) -> None:
    monkeypatch.setattr(build, "image_tag", lambda: sandbox_image)
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for fragment in ("engine", "storage driver", sandbox_image, "healthy", "cold start", "bwrap", "docker", "pypy",
                     "cpython"):
        assert fragment in result.output


def test_commands_without_engine_fail_in_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    runner = CliRunner()
    built = runner.invoke(app, ["build"])
    assert built.exit_code == 1
    assert "Traceback" not in built.output
    lines = [ln for ln in built.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no Docker engine answers at unix://")
    doc = runner.invoke(app, ["doctor", "--no-probe"])
    assert "Traceback" not in doc.output and "no Docker engine answers" in doc.output
