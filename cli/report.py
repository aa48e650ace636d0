"""Tables (markdown, CSV, JSON) of evaluation results."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def cost_k(avg_cost: float) -> str:
    """The paper's token format: int(avg_cost)/1000 with one decimal, e.g. 214189 -> '214.2k'."""
    return f"{int(avg_cost) / 1000:.1f}k"


def baseline_table(rows: list[Any], envs: list[str], fmt: str) -> str:
    """Rows (BaselineRow) as a method x environment table: 'accuracy / tokens' per cell.

    Configs are shown without their data keys (the fitted Bayesian prior's stop table); ``reference`` says
    whether a row is one of the method's reference configurations (the paper's Table 1 points).
    """
    from autotts_graph.tools.baselines import display_config, is_reference

    if fmt == "json":
        return json.dumps([{"method": r.method, "label": r.label, "reference": is_reference(r.method, r.point.config),
                            **r.point.model_dump(), "config": display_config(r.point.config)} for r in rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "label", "env", "config", "accuracy", "cost", "avg_cost", "std_acc", "reference"])
        for r in rows:
            p = r.point
            w.writerow([r.method, r.label, p.env, json.dumps(display_config(p.config)), p.accuracy, int(p.avg_cost),
                        p.avg_cost, p.std_acc, is_reference(r.method, p.config)])
        return buf.getvalue().rstrip("\n")
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(r.label, {})[r.point.env] = f"{r.point.accuracy:.2f} / {cost_k(r.point.avg_cost)}"
    lines = ["| method | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
    for label, per_env in cells.items():
        lines.append(f"| {label} | " + " | ".join(per_env.get(e, "") for e in envs) + " |")
    return "\n".join(lines)
