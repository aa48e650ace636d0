"""Entry point inside the sandbox: one JSON task on stdin, one JSON result on the original stdout.

Controller output (print, stray writes to fd 1) is diverted to stderr so it can never corrupt the result.
Nothing the runner returns is trusted: the host judges the action records (see ``evaluate``).
Task: {"op": "evaluate"|"validate", "source": str, "packs": {name: path}, "points": [config, ...],
       "seeds": [int, ...], "trace_seeds": [int, ...], "solves": {name: [[point, seed, question], ...]} | None,
       "solve_timeout_s": float, "smoke_questions": int}
Result: {"ok": true, "results": [...]} | {"ok": true, "report": {...}} | {"ok": false, "error": {...}}

An evaluation runs every point on every pack (several environments of one controller share one process, so
PyPy's JIT warms once): results pack by pack, points in order within each. An audit runs each pack's own
solves: results pack by pack, one per point that has solves there, points in increasing order.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from typing import Any

from .evaluate import ControllerError, Watch, evaluate_point, load_controller_class
from .replay import ReplayPack, load_pack
from .validate import validate_source

RESULT_MARKER = "\x1eAUTOTTS-RESULT\x1e"


def interpreter() -> str:
    """``pypy`` or ``cpython``: which interpreter ran the task (results and cache keys carry it)."""
    return "pypy" if platform.python_implementation() == "PyPy" else "cpython"


def _audit_groups(solves: list[list[int]]) -> dict[int, list[tuple[int, int]]]:
    """One pack's audited solves by point, each point's in the order given (a secret random one)."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for point, seed, question in solves:
        groups.setdefault(int(point), []).append((int(seed), int(question)))
    return groups


def run_task(task: dict[str, Any], watch: Watch | None = None) -> dict[str, Any]:
    """Execute one task; controller failures come back as {"ok": False, "error": ...}, never raised."""
    started = time.perf_counter()
    base = {"interpreter": interpreter()}
    try:
        packs: dict[str, ReplayPack] = {name: load_pack(path) for name, path in task.get("packs", {}).items()}
        if task.get("op") == "validate":
            pack = next(iter(packs.values()), None)
            report = validate_source(task["source"], pack, int(task.get("smoke_questions", 3)))
            return {**base, "ok": True, "report": report, "elapsed_s": time.perf_counter() - started}
        cls = load_controller_class(task["source"])
        seeds = [int(s) for s in task.get("seeds", range(100))]
        trace_seeds = frozenset(int(s) for s in task.get("trace_seeds", [0]))
        points = task["points"]
        results = []
        if task.get("solves") is not None:  # an audit: each pack's chosen solves, one controller per point
            for name, pack in packs.items():
                for index, solves in sorted(_audit_groups(task["solves"].get(name, [])).items()):
                    results.append(evaluate_point(cls, pack, points[index], seeds, frozenset(), solves, watch))
        else:
            for pack in packs.values():
                for config in points:
                    results.append(evaluate_point(cls, pack, config, seeds, trace_seeds, None, watch))
        return {**base, "ok": True, "results": results, "elapsed_s": time.perf_counter() - started}
    except ControllerError as exc:
        return {**base, "ok": False, "error": {"kind": exc.kind, "message": exc.message, "details": exc.details}}
    except RecursionError as exc:
        return {**base, "ok": False, "error": {"kind": "runtime", "message": f"RecursionError: {exc}", "details": []}}
    except MemoryError:
        return {**base, "ok": False, "error": {"kind": "oom", "message": "the controller ran out of memory",
                                                "details": []}}


def _emit(out: Any, result: dict[str, Any]) -> None:
    try:
        payload = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        payload = json.dumps({"ok": False, "interpreter": interpreter(), "error": {
            "kind": "contract", "message": f"result is not JSON-serialisable: {exc}", "details": []}})
    out.write(RESULT_MARKER + payload + "\n")
    out.flush()


def _watchdog(watch: Watch, limit_s: float, out: Any) -> None:
    """Report the solve that ran past ``limit_s`` and end the process (a controller cannot catch this)."""
    while True:
        time.sleep(min(0.25, limit_s / 4))
        where, since = watch.where, watch.since
        if where and time.perf_counter() - since > limit_s:
            _emit(out, {"ok": False, "interpreter": interpreter(), "error": {
                "kind": "timeout", "message": f"solve() ran past the {limit_s:g} s per-solve limit on {where}",
                "details": []}})
            os._exit(0)


def main() -> None:
    """Read the task, divert fd 1 to stderr while running it, write the result framed on the real stdout."""
    task = json.loads(sys.stdin.read())
    real_stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    watch = Watch()
    limit = float(task.get("solve_timeout_s") or 0)
    if limit > 0:
        threading.Thread(target=_watchdog, args=(watch, limit, real_stdout), daemon=True).start()
    result = run_task(task, watch)
    watch.where = ""
    _emit(real_stdout, result)
    # Threads or children the controller left behind must not keep the task alive past its result.
    os._exit(0)


if __name__ == "__main__":
    main()
