"""Tool: the reference baselines (SC@k, ASC, ESC, Parallel-Probe, CMC) over their budget sweeps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .context import ToolContext
from .evaluate import EvaluateInput, EvaluationSummary, PointSummary, evaluate_controller

CONTROLLERS_DIR = Path(__file__).resolve().parents[1] / "sandbox" / "controllers"
POWERS = [1, 2, 4, 8, 16, 32, 64]

# Budget sweeps, including every reference configuration of the replay spec (§3.5, §5).
SWEEPS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "sc": ("SC@k", [{"k": k} for k in POWERS]),
    "asc": ("ASC", [{"max_samples": k, "threshold": 0.95} for k in POWERS]),
    "esc": ("ESC", [{"max_samples": k, "window_size": 8} for k in (16, 32, 64)]),
    "parallel_probe": ("Parallel-Probe", [{"num_chains": k, "T": 40, "prune_patience": 7, "warm_up": 15}
                                          for k in POWERS]),
    "cmc": ("CMC", [{"beta": round(0.1 * i, 1)} for i in range(11)]),
}


def baseline_source(name: str) -> str:
    """The controller source of a baseline (``sc``, ``asc``, ``esc``, ``parallel_probe``, ``cmc``)."""
    path = CONTROLLERS_DIR / f"{name}.py"
    if name not in SWEEPS or not path.exists():
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(SWEEPS)}")
    return path.read_text()


def point_label(method: str, config: dict[str, Any]) -> str:
    """Short human label such as ``ASC(64)`` or ``CMC β=0.5`` (the config's budget knob, else beta)."""
    title = SWEEPS[method][0]
    if method == "cmc" or not ({"k", "max_samples", "num_chains"} & set(config)):
        return f"{title} β={config.get('beta', 'default')}"
    if method == "sc":
        return f"SC@{config['k']}"
    if method == "esc":
        return f"{title}({config['max_samples']},{config.get('window_size', 8)})"
    budget = config.get("max_samples", config.get("num_chains"))
    return f"{title}({budget})"


class BaselineInput(BaseModel):
    """Run one baseline's budget sweep (or chosen configs) on environments."""

    method: str = Field(description="One of sc, asc, esc, parallel_probe, cmc.")
    envs: list[str]
    configs: list[dict[str, Any]] | None = Field(default=None, description="Defaults to the method's sweep.")
    seeds: int = Field(default=100, ge=1, le=1000)
    trace_seeds: int = Field(default=0, ge=0, le=10)
    split: str = "search"


class BaselineRow(BaseModel):
    """One baseline configuration on one environment."""

    method: str
    label: str
    point: PointSummary


def run_baseline(ctx: ToolContext, inp: BaselineInput,
                 progress: Callable[[int, int], None] | None = None) -> tuple[EvaluationSummary, list[BaselineRow]]:
    """Evaluate a baseline sweep; cached in the history like any controller."""
    source = baseline_source(inp.method)
    configs = inp.configs if inp.configs is not None else SWEEPS[inp.method][1]
    summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=inp.envs, configs=configs, seeds=inp.seeds,
                                                     trace_seeds=inp.trace_seeds, label=f"baseline:{inp.method}",
                                                     split=inp.split), progress)
    rows = [BaselineRow(method=inp.method, label=point_label(inp.method, p.config), point=p) for p in summary.points]
    return summary, rows
