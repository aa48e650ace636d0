"""Plotly figures (plain JSON specs, drawn by Plotly's JavaScript in the page) from a run's view.

An accuracy-versus-tokens plot has exactly one trace per curve: per environment, or the mean over the
environments (per β for a candidate, per configuration measured on every environment for a baseline).
"""

from __future__ import annotations

from typing import Any

from autotts_graph.graph.run_view import Curve, RunView

# Plotly's default palette, skipped for the winner (black) and CMC (crimson), which are drawn boldly.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94"]
MEAN = "mean"


def _trace(curve: Curve, rows: list[tuple[float, float, str]], color: str, bold: bool) -> dict[str, Any]:
    baseline = curve.kind == "baseline"
    return {"type": "scatter", "mode": "lines+markers", "name": curve.title, "x": [r[0] for r in rows],
            "y": [r[1] for r in rows], "text": [r[2] for r in rows],
            "hovertemplate": "%{text}<br>%{y:.2f}% at %{x:,.0f} tokens<extra>" + curve.title + "</extra>",
            "line": {"color": color, "width": 3 if bold else 1.5, "dash": "dot" if baseline and not bold else "solid"},
            "marker": {"size": 7 if bold else 5, "symbol": "square" if curve.method == "cmc" else "circle"},
            "meta": curve.key}


def curves_figure(curves: list[Curve], panel: str, envs: list[str], title: str) -> dict[str, Any]:
    """Accuracy vs tokens (log) on one environment or on the mean over ``envs``: one trace per curve, in order
    (a curve without points there is drawn empty, so the legend still names it)."""
    data = []
    colors = iter(PALETTE * 4)
    for i, c in enumerate(curves):
        rows = c.mean(set(envs)) if panel == MEAN else c.on(panel)
        bold = c.method == "cmc" or (c.kind == "candidate" and i == 0)
        color = "crimson" if c.method == "cmc" else "black" if c.kind == "candidate" and i == 0 else next(colors)
        data.append(_trace(c, rows, color, bold))
    layout = {"title": {"text": title, "font": {"size": 14}}, "height": 420, "margin": {"l": 60, "r": 10, "t": 40,
                                                                                        "b": 50},
              "xaxis": {"type": "log", "title": {"text": "tokens per question"}},
              "yaxis": {"title": {"text": "accuracy %"}}, "legend": {"font": {"size": 10}},
              "hovermode": "closest"}
    return {"data": data, "layout": layout}


def panels(curves: list[Curve]) -> list[str]:
    """The plots to draw for these curves: the mean, then each environment (of the first candidate curve, else
    of every curve)."""
    first = next((c for c in curves if c.kind == "candidate"), None)
    envs = first.envs if first else sorted({e for c in curves for e in c.envs})
    return ([MEAN] if len(envs) > 1 else []) + envs


def fitness_figure(view: RunView) -> dict[str, Any]:
    """Fitness by generation: every archive member (screens hollow, full evaluations filled), the best of each
    generation and the best so far."""
    own = [m for m in view.archive if m.migrated_from is None]
    data = []
    for stage, name, symbol in ((1, "screened only (screen fitness)", "circle-open"),
                                (2, "fully evaluated", "circle")):
        mine = [m for m in own if (m.stage >= 2) == (stage == 2) and m.score is not None]
        data.append({"type": "scatter", "mode": "markers", "name": name, "x": [m.generation for m in mine],
                     "y": [m.score for m in mine], "text": [m.candidate_id for m in mine],
                     "customdata": [f"candidates/{m.candidate_id}" for m in mine],
                     "marker": {"symbol": symbol, "size": 7, "color": "#1f77b4" if stage == 2 else "#7f7f7f"},
                     "hovertemplate": "%{text}<br>generation %{x}: %{y:+.3f}<extra></extra>"})
    gens = [g for g in view.generations if g.best_fitness is not None or g.best_so_far is not None]
    data.append({"type": "scatter", "mode": "lines+markers", "name": "best of the generation",
                 "x": [g.generation for g in gens], "y": [g.best_fitness for g in gens],
                 "line": {"color": "#ff7f0e"}})
    data.append({"type": "scatter", "mode": "lines", "name": "best so far", "x": [g.generation for g in gens],
                 "y": [g.best_so_far for g in gens], "line": {"color": "black", "width": 3, "shape": "hv"}})
    layout = {"title": {"text": "Fitness by generation (margin over the baseline frontier, points)",
                        "font": {"size": 14}}, "height": 380, "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
              "xaxis": {"title": {"text": "generation"}, "dtick": 1}, "yaxis": {"title": {"text": "fitness"}},
              "hovermode": "closest"}
    return {"data": data, "layout": layout}
