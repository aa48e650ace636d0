"""`eval --executor ray`, `cluster doctor` on the cluster; commands that do not use Ray never import it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from autotts_graph.cli.main import app
from typer.testing import CliRunner

from .conftest import build_store

runner = CliRunner(env={"COLUMNS": "200"})


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.ray
def test_eval_on_the_cluster_and_doctor(two_nodes, tmp_path: Path, sandbox: str) -> None:
    store = build_store(tmp_path / "s.duckdb")
    args = ["eval", "baseline:asc", "--env", "Tiny/a", "--betas", "0,1", "--seeds", "5", "--sandbox", sandbox,
            "--executor", "ray", "--ray-address", two_nodes.address, "--store", str(store.path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert "executor: ray, 2 node(s), 2 cores" in out and "retried" in out
    rows = [line for line in res.output.splitlines() if "Tiny/a" in line]
    assert len(rows) == 2, res.output  # beta 0 and beta 1 (tests/ray/test_sweep.py compares figures with local)

    doctor = runner.invoke(app, ["cluster", "doctor", "--ray-address", two_nodes.address, "--sandbox", sandbox,
                                 "--json"])
    assert doctor.exit_code == 0, doctor.output
    report = json.loads(doctor.stdout)
    alive = [n for n in report["nodes"] if n["alive"]]
    assert len(alive) == 2 and sum(n["head"] for n in alive) == 1
    assert all(n["address"] == "127.0.0.1" and n["sandbox"] and n["runtime"] == report["driver_runtime"]
               for n in alive)


@pytest.mark.ray
def test_unreachable_cluster_is_one_line(tmp_path: Path, cluster) -> None:
    from autotts_graph.sandbox.ray_cluster import free_port

    store = build_store(tmp_path / "s.duckdb")
    res = runner.invoke(app, ["eval", "baseline:asc", "--env", "Tiny/a", "--betas", "0", "--seeds", "2",
                              "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
                              "--store", str(store.path)])
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot connect to Ray" in errors[0], res.output
    assert "Traceback" not in res.output
    # A discovery run fails the same way, before it is recorded.
    from autotts_graph.store import history

    res = runner.invoke(app, ["run", "--search", "Tiny/a", "--heldout", "Tiny/b", "--proposer", "offline", "--critic",
                              "offline", "--diagnostician", "offline", "--sandbox", "process", "--no-live",
                              "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
                              "--store", str(store.path)])
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot connect to Ray" in errors[0], res.output
    assert "Traceback" not in res.output and history.list_runs(store) == []


def test_commands_without_ray_never_import_it(tmp_path: Path) -> None:
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from autotts_graph.cli.main import app\n"
            "import autotts_graph.tools.context, autotts_graph.tools.evaluate, autotts_graph.cli.collect_cmd\n"
            "for args in (['--help'], ['eval', '--help'], ['run', '--help'], ['cluster', '--help'],\n"
            "             ['serve', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "from autotts_graph.graph.deps import DepsProvider\n"
            "from autotts_graph.graph.configuration import RunConfig\n"
            f"provider = DepsProvider(store_path={str(tmp_path / 's.duckdb')!r})\n"
            "deps = provider.get(RunConfig(run_id='r', sandbox='process', executor='local'))\n"
            "assert deps.ctx.executor.name == deps.full_ctx.executor.name == 'local'\n"
            "provider.close()\n"
            "print('ray' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
