"""The authors' published result files (``reference-results/``) mapped onto our baseline controllers."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from pydantic import BaseModel

# CSV ``Method`` column -> baseline controller file under sandbox/controllers/.
METHOD_CONTROLLERS = {"ASCMethod": "asc", "ESCMethod": "esc", "Parallel_Probe": "parallel_probe",
                      "OptimalController": "cmc"}


class ReferenceRow(BaseModel):
    """One row of a reference CSV: what was run and what it scored."""

    model: str
    dataset: str
    method: str  # our controller name
    config: dict
    accuracy: float
    cost: int  # int(avg_cost) as the reference writes it
    source_file: str


def load_reference_rows(results_dir: Path) -> list[ReferenceRow]:
    """Every row of ``seed_baselines/*/*.csv`` and ``cmc_r0004/*/*.csv`` below ``results_dir``."""
    rows = []
    for path in sorted(results_dir.glob("*/*/*.csv")):
        with path.open(newline="") as f:
            for rec in csv.DictReader(f):
                rows.append(ReferenceRow(model=path.parent.name, dataset=path.stem,
                                         method=METHOD_CONTROLLERS[rec["Method"]],
                                         config=ast.literal_eval(rec["config"]), accuracy=float(rec["Acc"]),
                                         cost=int(rec["Cost"]), source_file=str(path)))
    return rows
