"""The CLI as a user drives it: store, eval, baselines; one-line errors; one real subprocess run."""

import json
import os
import subprocess
import sys

import pytest
from autotts_graph.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_import_ls_show_export(tmp_path, replay_dir):
    store = tmp_path / "s.duckdb"
    r = invoke("store", "import", replay_dir / "Qwen3-0.6B", "--store", store)
    assert r.exit_code == 0, r.output
    assert "imported Qwen3-0.6B/aime24" in r.output and "imported Qwen3-0.6B/aime25" in r.output
    again = invoke("store", "import", replay_dir / "Qwen3-0.6B" / "aime24.json", "--store", store)
    assert "unchanged Qwen3-0.6B/aime24" in again.output
    ls = invoke("store", "ls", "--json", "--store", store)
    envs = json.loads(ls.output)
    assert [e["name"] for e in envs] == ["Qwen3-0.6B/aime24", "Qwen3-0.6B/aime25"]
    assert round(envs[0]["single_branch_accuracy"] * 100, 2) == 10.89
    show = invoke("store", "show", "Qwen3-0.6B/aime24", "--store", store)
    assert "30 questions x 128 branches" in show.output
    out = tmp_path / "x.json.gz"
    assert invoke("store", "export", "Qwen3-0.6B/aime24", "-o", out, "--store", store).exit_code == 0
    import gzip

    assert json.loads(gzip.decompress(out.read_bytes())) == json.loads(
        (replay_dir / "Qwen3-0.6B" / "aime24.json").read_text())


@pytest.mark.parametrize("args", [
    ["store", "show", "Nope/x"],
    ["store", "import", "/does/not/exist.json"],
    ["eval", "missing_controller.py", "--env", "tiny/a"],
    ["eval", "baseline:nope", "--env", "tiny/a"],
    ["eval", "baseline:asc", "--env", "tiny/zzz", "--sandbox", "process"],
    ["eval", "baseline:asc", "--env", "tiny/a", "--betas", "0,x"],
    ["eval", "baseline:asc", "--env", "tiny/a", "--betas", "1.5"],
    ["baselines", "--env", "tiny/a", "--methods", "foo"],
])
def test_bad_input_gives_one_line_error(tiny_store, args):
    r = runner.invoke(app, [*args, "--store", str(tiny_store.path)])
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [ln for ln in r.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output


def test_eval_controller_file_and_json(tmp_path, tiny_store, controller_source):
    path = tmp_path / "mine.py"
    path.write_text(controller_source("cmc"))
    r = invoke("eval", path, "--env", "tiny/a", "--betas", "0,1", "--seeds", "3", "--json", "--sandbox", "process",
               "--store", tiny_store.path)
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["ok"] and [p["beta"] for p in body["points"]] == [0.0, 1.0]
    # Asked again: the same figures straight from the store, and the user is told no sandbox ran.
    again = invoke("eval", path, "--env", "tiny/a", "--betas", "0,1", "--seeds", "3", "--json", "--sandbox",
                   "process", "--store", tiny_store.path)
    assert again.exit_code == 0, again.output
    cached = json.loads(again.stdout)
    assert cached["cached_points"] == 2 and cached["backend"] == "cache" and cached["points"] == body["points"]
    assert "every point was already in the store" in again.stderr


def test_eval_reports_a_crashing_controller(tmp_path, tiny_store):
    path = tmp_path / "bad.py"
    path.write_text("from autotts_runtime import Controller\nclass A(Controller):\n    def solve(self, q):\n"
                    "        return [][1]\n")
    r = runner.invoke(app, ["eval", str(path), "--env", "tiny/a", "--betas", "0.5", "--seeds", "2", "--sandbox",
                            "process", "--store", str(tiny_store.path)])
    assert r.exit_code == 1
    assert "runtime error" in r.output and "IndexError" in r.output and "line 4" in r.output


def test_baselines_table(tiny_store):
    r = invoke("baselines", "--env", "tiny/a", "--env", "tiny/b", "--methods", "asc,esc", "--seeds", "3",
               "--sandbox", "process", "--store", tiny_store.path)
    assert r.exit_code == 0, r.output
    table = r.stdout
    assert "| ASC(64) |" in table and "| ESC(64,8) |" in table and "tiny/b" in table.splitlines()[0]
    csv_out = invoke("baselines", "--env", "tiny/a", "--methods", "esc", "--seeds", "3", "--format", "csv",
                     "--sandbox", "process", "--store", tiny_store.path)
    assert csv_out.exit_code == 0, (csv_out.stdout, csv_out.stderr)
    assert csv_out.stdout.splitlines()[1].startswith("esc,\"ESC(16,8)\",tiny/a,")


def test_real_subprocess_eval_reproduces_asc64(tmp_path, replay_dir):
    store = tmp_path / "s.duckdb"
    env = {**os.environ, "AUTOTTS_STORE": str(store)}
    cmd = [sys.executable, "-m", "autotts_graph.cli.main"]
    subprocess.run([*cmd, "store", "import", str(replay_dir / "Qwen3-4B" / "aime24.json")], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([*cmd, "eval", "baseline:asc", "--env", "Qwen3-4B/aime24", "--betas", "1", "--json",
                          "--sandbox", "process"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    point = json.loads(out.stdout)["points"][0]
    assert (point["accuracy"], int(point["avg_cost"])) == (80.0, 214189)  # ASC(64, 0.95), spec §8.2
