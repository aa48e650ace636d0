"""PyPy and CPython give identical figures: every baseline on real data through the docker sandbox."""

from __future__ import annotations

import pytest
from autotts_graph.sandbox.backends.base import SandboxTask
from autotts_graph.sandbox.judge import judge_point, load_judge_pack
from autotts_graph.sandbox.static_checks import check_source
from autotts_graph.tools.baselines import METHODS, REFERENCE, baseline_configs, baseline_source

SEEDS = list(range(6))


@pytest.fixture(scope="module")
def backend(docker_client, sandbox_image):
    """Docker with the default limits (the adversarial ones are too tight for real data)."""
    from autotts_graph.sandbox.backends.docker import DockerBackend

    made = DockerBackend(pool_size=2, client=docker_client, image=sandbox_image)
    yield made
    made.close()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "bayes_fit"])  # bayes_fit only adds a prior
def test_every_baseline_scores_identically_under_pypy_and_cpython(method, backend, real_store):
    from autotts_graph.store.trajectories import pack_path

    source = baseline_source(method)
    assert check_source(source).interpreter == "pypy"  # stdlib only: the automatic choice is PyPy
    configs = baseline_configs(method, configs=REFERENCE[method][:2])
    pack = str(pack_path(real_store, "Qwen3-4B/aime24"))
    jp = load_judge_pack(pack)
    figures = {}
    for interpreter in ("pypy", "cpython"):
        task = SandboxTask(source=source, packs={"Qwen3-4B/aime24": pack}, points=configs, seeds=SEEDS,
                           trace_seeds=[0], interpreter=interpreter, work=len(configs) * len(SEEDS) * 30)
        res = backend.run(task)
        assert res.ok, (interpreter, res.error)
        assert res.interpreter == interpreter
        figures[interpreter] = [judge_point(jp, raw, config, SEEDS, frozenset({0}))[0]
                                for raw, config in zip(res.results, configs, strict=True)]
    for a, b in zip(figures["pypy"], figures["cpython"], strict=True):
        assert (a["accuracy"], repr(a["avg_cost"])) == (b["accuracy"], repr(b["avg_cost"])), method
        for key in ("acc_per_seed", "cost_per_seed", "correct", "tokens", "answers", "traces", "params"):
            assert a[key] == b[key], (method, key)
