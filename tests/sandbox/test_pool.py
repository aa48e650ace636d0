"""The warm pool against a real engine: hardened container settings, labels and sweeping, concurrency,
pack staging, and results identical to in-process evaluation."""

from __future__ import annotations

import json
import os
import socket
import threading

from autotts_graph.sandbox.backends.base import Limits, SandboxTask
from autotts_graph.sandbox.pool import LABEL, OWNER_LABEL, POOL_LABEL, ContainerPool, ContainerSpec, sweep_leftovers

from .conftest import ADVERSARIAL_LIMITS, ASC, CONTROLLERS, adversarial_source, patient, report


def test_containers_are_hardened(docker_backend, tiny_pack) -> None:
    assert docker_backend.pool.wait_idle(30)
    slot = docker_backend.pool._ready[0]
    slot.container.reload()
    attrs = slot.container.attrs
    host, config = attrs["HostConfig"], attrs["Config"]
    limits = ADVERSARIAL_LIMITS
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["PidsLimit"] == limits.pids
    assert host["Memory"] == host["MemorySwap"] == limits.memory_mb * 1024 * 1024
    assert host["NanoCpus"] == int(limits.cpus * 1e9)
    assert {u["Name"]: u["Hard"] for u in host["Ulimits"]}["nofile"] == limits.nofile
    assert f"size={limits.tmp_mb}m" in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/tmp"]
    assert host["ShmSize"] == limits.tmp_mb * 1024 * 1024
    assert host["LogConfig"]["Type"] == "none"
    assert host["IpcMode"] == "private"
    mounts = attrs["Mounts"]
    assert [(m["Destination"], m["RW"]) for m in mounts if m["Type"] == "bind"] == [("/packs", False)]
    assert not any("docker.sock" in (m.get("Source") or "") for m in mounts)
    assert sorted(e.split("=")[0] for e in config["Env"]) == ["HOME", "PATH", "PYTHONDONTWRITEBYTECODE"]
    assert config["Labels"][LABEL] == "1" and config["Labels"][OWNER_LABEL] == docker_backend.pool.owner
    # Tasks run as 65534 (checked inside), the keeper as root with no capabilities at all.
    result = docker_backend.run(SandboxTask(source=adversarial_source(
        "_report(uid=_os.getuid(), gid=_os.getgid(), caps=[l for l in open('/proc/self/status') "
        "if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])"),
        packs={"tiny": str(tiny_pack)}, points=[{"beta": 0.5}], seeds=[0], limits=limits))
    rep = report(result)
    assert rep["uid"] == 65534 and rep["gid"] == 65534
    caps = {line.split(":")[0]: line.split(":")[1].strip() for line in rep["caps"]}
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0 and caps["NoNewPrivs"] == "1"


def test_pack_staging_shows_only_the_task_packs(docker_backend, tiny_pack, tiny_records, tmp_path) -> None:
    from autotts_graph.store.packs import write_pack

    other = write_pack("other", tiny_records(n_questions=2, seed=9), tmp_path)
    secret = write_pack("heldout", tiny_records(n_questions=2, seed=10), tmp_path)
    task = SandboxTask(source=adversarial_source("_report(packs=sorted(_os.listdir('/packs')))"),
                       packs={"a": str(tiny_pack), "b": str(other)}, points=[{"beta": 0.5}], seeds=[0],
                       limits=ADVERSARIAL_LIMITS)
    with patient(docker_backend):
        result = docker_backend.run(task)
    assert result.ok, result.error
    assert report(result)["packs"] == ["0.npz", "1.npz"]  # the held-out pack next to them is not there
    assert len(result.results) == 2
    assert secret.exists() and tiny_pack.exists() and other.exists()  # destroying the box leaves the store alone
    assert docker_backend.pool.wait_idle(30)
    assert all(os.listdir(slot.staging) == [] for slot in docker_backend.pool._ready)
    assert not any(p.name.endswith(".key.json") for slot in docker_backend.pool._ready
                   for p in slot.staging.iterdir())


def test_concurrent_tasks_share_the_pool(docker_backend, make_task) -> None:
    results = []

    def one() -> None:
        results.append(docker_backend.run(make_task(ASC)))

    threads = [threading.Thread(target=one) for _ in range(5)]
    with patient(docker_backend):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 5 and all(r.ok for r in results), [r.error for r in results]
    assert docker_backend.pool.wait_idle(30)
    stats = docker_backend.pool.snapshot()
    assert stats.ready == docker_backend.pool.size and stats.busy == 0


def test_sweep_removes_leftovers_of_dead_owners_only(docker_client, sandbox_image) -> None:
    spec = ContainerSpec(image=sandbox_image, memory_mb=128, pids=16, tmp_mb=4)
    dead_owner = f"{socket.gethostname()}:999999999:1"  # no such pid
    live_owner = f"{socket.gethostname()}:{os.getpid()}:{open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]}"
    dead = ContainerPool(docker_client, spec, 1, owner=dead_owner).create()
    live_pool = ContainerPool(docker_client, spec, 1, owner=live_owner)
    live = live_pool.create()
    try:
        assert sweep_leftovers(docker_client) >= 1
        # The low-level listing: the high-level one inspects each container, and other pools sharing the
        # engine remove theirs meanwhile.
        ids = {c["Id"] for c in docker_client.api.containers(all=True, filters={"label": LABEL})}
        assert dead.id not in ids and live.id in ids
        assert not dead.staging.exists()
    finally:
        live.container.remove(force=True)
        live_pool.close()


def test_close_removes_every_container(docker_client, sandbox_image) -> None:
    from autotts_graph.sandbox.backends.docker import DockerBackend

    backend = DockerBackend(ADVERSARIAL_LIMITS, pool_size=2, client=docker_client, image=sandbox_image)
    pool = backend.pool
    pool.start(wait=True)
    mine = {"label": f"{POOL_LABEL}={pool.pool_id}"}
    assert len(docker_client.containers.list(filters=mine)) == 2
    backend.close()
    assert docker_client.containers.list(all=True, filters=mine) == []
    assert not pool.staging_root.exists()


def test_other_limits_get_their_own_pool(docker_backend, make_task) -> None:
    roomy = make_task(ASC).model_copy(update={"limits": Limits(timeout_s=10, memory_mb=512, pids=64, nofile=64,
                                                               tmp_mb=16)})
    backend_limits, docker_backend.limits = docker_backend.limits, None  # per-task limits apply
    try:
        result = docker_backend.run(roomy)
        assert result.ok, result.error
        specs = {p.spec.memory_mb for p in docker_backend._pools.values()}
        assert {ADVERSARIAL_LIMITS.memory_mb, 512} <= specs
    finally:
        docker_backend.limits = backend_limits


def test_results_match_in_process_evaluation(docker_backend, records_4b, tmp_path) -> None:
    """Same pack, same source, same seeds: the docker backend returns exactly the in-process numbers."""
    from autotts_graph.sandbox.runtime.runner import run_task
    from autotts_graph.store.packs import write_pack

    pack = write_pack("aime24", records_4b[:3], tmp_path)
    for name in ("asc", "cmc"):
        task = SandboxTask(source=(CONTROLLERS / f"{name}.py").read_text(), packs={"aime24": str(pack)},
                           points=[{"beta": 0.25}, {"beta": 0.5}], seeds=list(range(4)),
                           limits=Limits(timeout_s=60, memory_mb=ADVERSARIAL_LIMITS.memory_mb, pids=64,
                                         nofile=64, tmp_mb=16))
        for interpreter in ("pypy", "cpython"):
            inside = docker_backend.run(task.model_copy(update={"interpreter": interpreter}))
            assert inside.ok, inside.error
            assert inside.interpreter == interpreter
            local = run_task(json.loads(task.runner_payload()))
            assert local["ok"]
            for a, b in zip(inside.results, local["results"], strict=True):
                for key in ("answers", "reads", "full", "traces", "params", "solves"):
                    assert a[key] == b[key], (name, key, interpreter)


def test_silent_task_outlasting_the_client_timeout(sandbox_image, make_task) -> None:
    """The SDK client's HTTP timeout must not cut a task's stream: only the task's own limit does."""
    import docker
    from autotts_graph.sandbox.backends.docker import DockerBackend

    client = docker.from_env(timeout=2)
    backend = DockerBackend(ADVERSARIAL_LIMITS.model_copy(update={"timeout_s": 60}), pool_size=1, client=client,
                            image=sandbox_image)
    try:
        # The runner loads the source twice: 2 x 1.5 s of silence on the stream, longer than 2 s.
        result = backend.run(make_task(adversarial_source("import time\ntime.sleep(1.5)")))
        assert result.ok, result.error
    finally:
        backend.close()


def _collect_while_the_sdk_holds_responses(client) -> None:
    """Make the cyclic collector run at the two moments that decide the rare EBADF, every time.

    docker-py hands back an exec's stream as the connection's SocketIO with the HTTP response attached to it:
    a reference cycle only the cyclic collector frees. A young-generation collection while requests still
    holds the response (it does when its response hooks run) puts the urllib3 response ahead of the
    SocketIO in the collector's list; a full collection later finalises the response first, which closes
    its connection and the very socket the task's reader is blocked on. Both happen by chance in a busy
    process (a server's pool beside a CLI's); here every response runs both collections.
    """
    import gc

    def collect(response, *args, **kwargs):
        gc.collect(0)  # the reordering collection, while requests holds the response
        gc.collect()  # the finalising one: frees every earlier exec's response cycle
        return response

    client.api.hooks["response"].append(collect)


def test_exec_streams_survive_the_garbage_collector(sandbox_image, make_task) -> None:
    """Both exec paths (the pre-started runner, a fresh exec for another interpreter) keep their stream
    whatever the collector frees meanwhile: the stream is ours alone, not the SDK's."""
    import docker
    from autotts_graph.sandbox.backends.docker import DockerBackend

    client = docker.from_env(timeout=30)
    _collect_while_the_sdk_holds_responses(client)
    backend = DockerBackend(ADVERSARIAL_LIMITS.model_copy(update={"timeout_s": 60}), pool_size=1, client=client,
                            image=sandbox_image)
    try:
        backend.pool.start(wait=True)
        assert backend.pool._ready and backend.pool._ready[0].runner is not None  # a runner waits (pypy)
        # The task outlasts the exec polls (every 0.2 s), whose responses run the collections mid-task.
        slow = adversarial_source("import time\ntime.sleep(0.3)")
        for interpreter in ("cpython", "pypy", "cpython"):  # cpython: no pre-started runner, a fresh exec
            result = backend.run(make_task(slow, interpreter=interpreter))
            assert result.ok, (interpreter, result.error)
            assert result.interpreter == interpreter
    finally:
        backend.close()
