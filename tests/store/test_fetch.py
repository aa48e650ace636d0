"""`store fetch autotts` against a real local HTTP mirror of the reference files (Range requests included)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from autotts_graph.cli.main import app
from autotts_graph.store.db import Store
from autotts_graph.store.fetch import BASE_URL_ENV, Manifest, cache_dir, load_manifest
from autotts_graph.store.trajectories import export_records, list_environments, set_split
from typer.testing import CliRunner

from ..conftest import data_root, make_tiny_records

runner = CliRunner()


class Mirror:
    """What the local server serves and what it was asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self.requests: list[tuple[str, str | None]] = []  # (path below the base URL, Range header)
        self.override: dict[str, bytes] = {}  # path -> body served instead of the file
        self.missing: set[str] = set()  # paths answered with 404
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the connection is cut (once)
        self.ignore_range = False  # answer every request with the whole file (200)

    def body(self, rel: str) -> bytes | None:
        if rel in self.override:
            return self.override[rel]
        path = self.root / rel
        return path.read_bytes() if rel not in self.missing and path.is_file() else None


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            rel = unquote(self.path).lstrip("/")
            rng = self.headers.get("Range")
            mirror.requests.append((rel, rng))
            body = mirror.body(rel)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and not mirror.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut = mirror.drop_after.pop(rel, None)
            self.wfile.write(body[start:] if cut is None else body[start:start + cut])
            # HTTP/1.0: the server closes the connection here, short of Content-Length when cut.

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def local_manifest(drop: tuple[str, ...] = ()) -> Manifest:
    """The packaged manifest cut down to the benchmarks this machine has a copy of (the mirror serves those),
    with the pins of ``drop`` removed (files whose checksum was never published)."""
    real = load_manifest()
    have = {p.stem for p in (data_root() / "autotts-replay").glob("*/*.json")}
    return real.model_copy(update={
        "datasets": {d: split for d, split in real.datasets.items() if d in have or any(d in x for x in drop)},
        "files": {rel: pin for rel, pin in real.files.items() if rel not in drop}})


@pytest.fixture
def mirror(monkeypatch):
    """A threaded HTTP server on 127.0.0.1 serving ``<data>/autotts-replay`` (the files need not exist); the
    CLI's manifest holds what that folder has (HMMT25's files are pinned but not shipped with the tests)."""
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    monkeypatch.setattr("autotts_graph.store.fetch.load_manifest", local_manifest)
    m = Mirror(data_root() / "autotts-replay")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(m))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    m.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield m
    server.shutdown()
    server.server_close()
    thread.join()


def fetch(store: Path, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["store", "fetch", *args, "--store", str(store)], env=env)


def envs(store: Path) -> dict[str, str]:
    return {e.name: e.split for e in list_environments(Store(store))}


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_fetch_imports_the_selected_models_into_their_splits(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    r = fetch(store, "autotts", "--model", "Qwen3-0.6B", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert "imported Qwen3-0.6B/aime24 (search)" in r.output
    assert "imported Qwen3-0.6B/aime25 (heldout)" in r.output
    assert "next: autotts-graph run --search Qwen3-0.6B/aime24 --heldout Qwen3-0.6B/aime25" in r.output
    assert envs(store) == {"Qwen3-0.6B/aime24": "search", "Qwen3-0.6B/aime25": "heldout"}
    assert mirror.requests == [("Qwen3-0.6B/aime24.json", None), ("Qwen3-0.6B/aime25.json", None)]
    assert export_records(Store(store), "Qwen3-0.6B/aime25") == json.loads(
        (replay_dir / "Qwen3-0.6B" / "aime25.json").read_text())


def test_dataset_filter_env_var_mirror_and_idempotent_reruns(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    env = {BASE_URL_ENV: mirror.url + "/"}
    r = fetch(store, "autotts", "--model", "Qwen3-1.7B", "--dataset", "aime25", env=env)
    assert r.exit_code == 0, r.output
    assert envs(store) == {"Qwen3-1.7B/aime25": "heldout"}
    # The verified file is cached: the wider fetch only downloads what is new.
    r = fetch(store, "autotts", "--model", "Qwen3-1.7B", env=env)
    assert r.exit_code == 0, r.output
    assert "imported Qwen3-1.7B/aime24 (search)" in r.output and "unchanged Qwen3-1.7B/aime25 (heldout)" in r.output
    assert [p for p, _ in mirror.requests] == ["Qwen3-1.7B/aime25.json", "Qwen3-1.7B/aime24.json"]
    # Again: no request at all, nothing changes.
    before = len(mirror.requests)
    r = fetch(store, "autotts", "--model", "Qwen3-1.7B", env=env)
    assert r.exit_code == 0 and r.output.count("unchanged") == 2, r.output
    assert len(mirror.requests) == before
    # Without the cache the files are downloaded again and found identical to what is stored.
    import shutil

    shutil.rmtree(cache_dir(Store(store)))
    set_split(Store(store), ["Qwen3-1.7B/aime25"], "search")  # a user moved it: fetch puts it back
    r = fetch(store, "autotts", "--model", "Qwen3-1.7B", env=env)
    assert r.exit_code == 0, r.output
    assert "unchanged Qwen3-1.7B/aime25 (heldout, moved from search)" in r.output
    assert len(mirror.requests) == before + 2
    assert envs(store) == {"Qwen3-1.7B/aime24": "search", "Qwen3-1.7B/aime25": "heldout"}
    with Store(store).connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM branches").fetchone()[0] == 2 * 30 * 128


def test_checksum_mismatch_refuses_and_imports_nothing(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    rel = "Qwen3-0.6B/aime25.json"
    good = (replay_dir / rel).read_bytes()
    mirror.override[rel] = good.replace(b'"probe_freq": 500', b'"probe_freq": 501', 1)  # same size, valid JSON
    line = one_error_line(fetch(store, "autotts", "--model", "Qwen3-0.6B", "--base-url", mirror.url))
    assert "checksum mismatch for Qwen3-0.6B/aime25" in line and "nothing was imported" in line
    assert envs(store) == {}  # aime24 was downloaded and verified, but not imported alone
    cached = cache_dir(Store(store)) / "Qwen3-0.6B"
    assert sorted(p.name for p in cached.iterdir()) == ["aime24.json"]
    # Once the mirror serves the published file, the same command completes.
    del mirror.override[rel]
    r = fetch(store, "autotts", "--model", "Qwen3-0.6B", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert envs(store) == {"Qwen3-0.6B/aime24": "search", "Qwen3-0.6B/aime25": "heldout"}


def test_a_broken_connection_resumes_with_a_range_request(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    rel = "Qwen3-4B/aime24.json"
    mirror.drop_after[rel] = 700_000
    r = fetch(store, "autotts", "--model", "Qwen3-4B", "--dataset", "aime24", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert mirror.requests == [(rel, None), (rel, "bytes=700000-")]
    assert export_records(Store(store), "Qwen3-4B/aime24") == json.loads((replay_dir / rel).read_text())


def test_a_partial_file_from_an_earlier_run_resumes(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    rel = "Qwen3-4B/aime25.json"
    part = cache_dir(Store(store)) / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((replay_dir / rel).read_bytes()[:123_456])
    r = fetch(store, "autotts", "--model", "Qwen3-4B", "--dataset", "aime25", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert mirror.requests == [(rel, "bytes=123456-")]
    assert not part.exists() and envs(store) == {"Qwen3-4B/aime25": "heldout"}


def test_a_stale_partial_file_is_downloaded_again_from_scratch(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    rel = "Qwen3-8B/aime24.json"
    part = cache_dir(Store(store)) / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # not a prefix of the published file: the checksum catches it
    r = fetch(store, "autotts", "--model", "Qwen3-8B", "--dataset", "aime24", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert mirror.requests == [(rel, "bytes=1000-"), (rel, None)]
    # A server without Range support answers 200 with the whole file; the partial file is rewritten.
    store2 = tmp_path / "s2.duckdb"
    part2 = cache_dir(Store(store2)) / (rel + ".part")
    part2.parent.mkdir(parents=True)
    part2.write_bytes((replay_dir / rel).read_bytes()[:5000])
    mirror.ignore_range = True
    r = fetch(store2, "autotts", "--model", "Qwen3-8B", "--dataset", "aime24", "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert envs(store2) == {"Qwen3-8B/aime24": "search"}


def test_an_unreachable_server_gives_one_line_and_imports_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    store = tmp_path / "s.duckdb"
    line = one_error_line(fetch(store, "autotts", "--base-url", f"http://127.0.0.1:{port}"))
    assert line.startswith(f"error: cannot reach http://127.0.0.1:{port}/Qwen3-0.6B/aime24.json: ")
    assert line.endswith("check your network or pass --base-url for a mirror")
    assert envs(store) == {}


def test_an_http_error_midway_imports_nothing(tmp_path, mirror, replay_dir):
    store = tmp_path / "s.duckdb"
    mirror.missing.add("Qwen3-0.6B/aime25.json")
    line = one_error_line(fetch(store, "autotts", "--model", "Qwen3-0.6B", "--base-url", mirror.url))
    assert line.startswith(f"error: cannot fetch {mirror.url}/Qwen3-0.6B/aime25.json: HTTP 404")
    assert envs(store) == {}


def test_files_without_a_pinned_checksum_need_no_verify(tmp_path, mirror, monkeypatch):
    monkeypatch.setattr("autotts_graph.store.fetch.load_manifest",
                        lambda: local_manifest(drop=("Qwen3-0.6B/hmmt25.json",)))
    store = tmp_path / "s.duckdb"
    line = one_error_line(fetch(store, "autotts", "--model", "Qwen3-0.6B", "--dataset", "hmmt25",
                                "--base-url", mirror.url))
    assert "no checksum is pinned for Qwen3-0.6B/hmmt25" in line and "--no-verify" in line
    assert mirror.requests == []
    body = json.dumps(make_tiny_records()).encode()
    mirror.override["Qwen3-0.6B/hmmt25.json"] = body
    r = fetch(store, "autotts", "--model", "Qwen3-0.6B", "--dataset", "hmmt25", "--no-verify",
              "--base-url", mirror.url)
    assert r.exit_code == 0, r.output
    assert f"warning: Qwen3-0.6B/hmmt25 is not verified ({len(body):,} bytes, sha256 " \
           f"{hashlib.sha256(body).hexdigest()})" in r.output
    assert envs(store) == {"Qwen3-0.6B/hmmt25": "heldout"}


def test_unpinned_files_are_left_out_unless_named():
    from autotts_graph.store.fetch import FetchRequest, plan_fetch

    unpinned = local_manifest(drop=("Qwen3-0.6B/hmmt25.json", "Qwen3-8B/hmmt25.json"))
    plan = plan_fetch(FetchRequest(models=["Qwen3-0.6B"], verify=False, base_url="http://mirror.test/x/"), unpinned)
    assert [f.url for f in plan.files] == ["http://mirror.test/x/Qwen3-0.6B/aime24.json",
                                           "http://mirror.test/x/Qwen3-0.6B/aime25.json"]
    assert [f.split for f in plan.files] == ["search", "heldout"]
    assert plan.unpinned_skipped == ["Qwen3-0.6B/hmmt25"]
    named = plan_fetch(FetchRequest(models=["Qwen3-8B"], datasets=["hmmt25"], verify=False, base_url="http://m"),
                       unpinned)
    assert [(f.name, f.split, f.pinned) for f in named.files] == [("Qwen3-8B/hmmt25", "heldout", None)]


def test_every_published_benchmark_is_fetched_verified_by_default():
    """HMMT25 is pinned like AIME24 and AIME25: a plain `store fetch autotts` plans all three, each checked."""
    from autotts_graph.store.fetch import FetchRequest, plan_fetch

    plan = plan_fetch(FetchRequest(models=["Qwen3-4B"], base_url="http://m"), load_manifest())
    assert [(f.name, f.split, f.pinned.size) for f in plan.files] == [
        ("Qwen3-4B/aime24", "search", 2066911), ("Qwen3-4B/aime25", "heldout", 2673679),
        ("Qwen3-4B/hmmt25", "heldout", 2973086)]
    assert plan.unpinned_skipped == []


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown source 'nope'"),
    (["autotts", "--model", "Qwen9"], "unknown model 'Qwen9'"),
    (["autotts", "--dataset", "gsm8k"], "unknown dataset 'gsm8k'"),
])
def test_a_bad_selection_is_refused_before_any_request(tmp_path, mirror, args, message):
    line = one_error_line(fetch(tmp_path / "s.duckdb", *args, "--base-url", mirror.url))
    assert message in line
    assert mirror.requests == []


def test_the_manifest_pins_the_published_files(replay_dir):
    manifest = load_manifest()
    assert manifest.default_base_url() == (
        f"https://raw.githubusercontent.com/zhengkid/AutoTTS/{manifest.commit}/"
        "efficient_reasoning_controller/test_environment")
    local = sorted(f"{p.parent.name}/{p.name}" for p in replay_dir.glob("*/*.json"))
    expected = sorted(f"{m}/{d}.json" for m in manifest.models for d in manifest.datasets)
    assert sorted(manifest.files) == expected and set(local) <= set(expected)
    for rel in local:  # the copies here match their pins (HMMT25 is pinned from the upstream files)
        data = (replay_dir / rel).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (manifest.files[rel].size,
                                                                 manifest.files[rel].sha256), rel
    assert {rel.split("/")[0] for rel in manifest.files} <= set(manifest.models)
    assert manifest.datasets == {"aime24": "search", "aime25": "heldout", "hmmt25": "heldout"}


def test_store_fetch_does_not_import_langchain(tmp_path):
    code = ("import sys; from typer.testing import CliRunner; from autotts_graph.cli.main import app; "
            f"CliRunner().invoke(app, ['store', 'fetch', 'autotts', '--model', 'X', '--store', {str(tmp_path)!r}]); "
            "print(sorted(m for m in sys.modules if m.startswith(('langgraph', 'langchain'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
