"""Where the time of a one-off `autotts-graph eval` goes, layer by layer, with the judge in place.

    python benchmarks/eval_overhead.py [--env Qwen3-4B/aime24] [--repeats 3]

Runs `eval <fresh copy of CMC> --env ENV --betas 1` in this process through the CLI (a fresh source each
time, so nothing comes from the cache) on a warm machine (image built, engine up), and prints per layer:
imports, set-up, waiting for a container, the runner's replay, the judge, the audit, recording, closing.
Target (issue 11): end to end <= the replay time + 1 s. Needs a store with ENV ($AUTOTTS_STORE).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

T0 = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="Qwen3-4B/aime24")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import autotts_graph.sandbox.backends.docker as docker_backend
    import autotts_graph.tools.evaluate as evaluate
    from autotts_graph.cli.main import app
    from autotts_graph.tools.baselines import baseline_source

    imports = time.perf_counter() - T0
    marks: dict[str, float] = {}
    layers: list[dict[str, float]] = []

    def timed(name: str, fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            out = fn(*a, **k)
            marks[name] = marks.get(name, 0.0) + time.perf_counter() - started
            if name.startswith("task") and out.ok:
                marks[name + " (runner)"] = marks.get(name + " (runner)", 0.0) + out.runner_s
            return out
        return wrapper

    run_task, judge, record = docker_backend.DockerBackend.run, evaluate.judge_point, evaluate.history.record_evaluation
    close = docker_backend.DockerBackend.close

    def run(self, task):
        return timed("task audit" if task.solves else "task main", run_task)(self, task)

    docker_backend.DockerBackend.run = run
    docker_backend.DockerBackend.close = lambda self: timed("close", close)(self)
    evaluate.judge_point = timed("judge", judge)
    evaluate.history.record_evaluation = timed("record", record)
    source = baseline_source("cmc")
    for _ in range(args.repeats):
        marks.clear()
        path = f"/tmp/eval-overhead-{time.time_ns()}.py"
        with open(path, "w") as fh:
            fh.write(source + f"\nFRESH = \"{time.time_ns()}\"  # a new program: never in the cache\n")
        started = time.perf_counter()
        try:
            app(["eval", path, "--env", args.env, "--betas", "1", "--sandbox", "docker"], standalone_mode=False)
        except SystemExit:
            pass
        marks["total (in process)"] = time.perf_counter() - started
        layers.append(dict(marks))
    print(f"\nimports of the CLI: {imports:.2f} s (paid once per command)")
    for name in layers[0]:
        values = [m.get(name, 0.0) for m in layers]
        print(f"  {name:24s} median {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    replay = statistics.median(m.get("task main (runner)", 0.0) for m in layers)
    total = statistics.median(m["total (in process)"] for m in layers) + imports
    print(f"end to end {total:.2f} s = replay {replay:.2f} s + overhead {total - replay:.2f} s (target <= 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
