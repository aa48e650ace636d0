"""Entry point inside the sandbox: one JSON task on stdin, one JSON result on the original stdout.

Controller output (print, stray writes to fd 1) is diverted to stderr so it can never corrupt the result.
Task: {"op": "evaluate"|"validate", "source": str, "packs": {name: path}, "points": [config, ...],
       "seeds": [int, ...], "trace_seeds": [int, ...], "workers": int, "smoke_questions": int}
Result: {"ok": true, "results": [...]} | {"ok": true, "report": {...}} | {"ok": false, "error": {...}}
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any

from .evaluate import ControllerError, evaluate_point, load_controller_class
from .replay import ReplayPack, load_pack
from .validate import validate_source

RESULT_MARKER = "\x1eAUTOTTS-RESULT\x1e"


def _evaluate_job(cls: type, args: tuple) -> dict[str, Any]:
    pack, config, seeds, trace_seeds = args
    return evaluate_point(cls, pack, config, seeds, frozenset(trace_seeds))


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one task; controller failures come back as {"ok": False, "error": ...}, never raised."""
    started = time.perf_counter()
    try:
        packs: dict[str, ReplayPack] = {name: load_pack(path) for name, path in task.get("packs", {}).items()}
        if task.get("op") == "validate":
            pack = next(iter(packs.values()), None)
            report = validate_source(task["source"], pack, int(task.get("smoke_questions", 3)))
            return {"ok": True, "report": report, "elapsed_s": time.perf_counter() - started}
        # Loaded once: forked workers inherit the class (it pickles by reference to its module).
        job = functools.partial(_evaluate_job, load_controller_class(task["source"]))
        seeds = [int(s) for s in task.get("seeds", range(100))]
        trace_seeds = [int(s) for s in task.get("trace_seeds", [0])]
        jobs = [(packs[name], config, seeds, trace_seeds) for name in packs for config in task["points"]]
        workers = max(1, min(int(task.get("workers", 1)), len(jobs)))
        if workers == 1:
            results = [job(j) for j in jobs]
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                results = pool.map(job, jobs, chunksize=1)
        return {"ok": True, "results": results, "elapsed_s": time.perf_counter() - started}
    except ControllerError as exc:
        return {"ok": False, "error": {"kind": exc.kind, "message": exc.message, "details": exc.details}}
    except RecursionError as exc:
        return {"ok": False, "error": {"kind": "runtime", "message": f"RecursionError: {exc}", "details": []}}
    except MemoryError:
        return {"ok": False, "error": {"kind": "oom", "message": "the controller ran out of memory", "details": []}}


def main() -> None:
    """Read the task, divert fd 1 to stderr while running it, write the result framed on the real stdout."""
    task = json.loads(sys.stdin.read())
    real_stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    result = run_task(task)
    try:
        payload = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        payload = json.dumps({"ok": False, "error": {"kind": "contract", "message":
                                                      f"result is not JSON-serialisable: {exc}", "details": []}})
    real_stdout.write(RESULT_MARKER + payload + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
