"""The run browser's pages: runs, one run, one candidate, compare; plus the JSON the live pages poll.

Every page renders a view of ``graph/run_view.py`` with a Jinja2 template; unknown runs and candidates are
404 pages with a link back. Held-out figures come from the run view, which has them only after selection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autotts_graph.graph import scoring
from autotts_graph.graph.evidence import points_with_outcomes
from autotts_graph.graph.run_view import Curve, RunView, baseline_title
from autotts_graph.store.db import Store, StoreError
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from . import figures
from .source import BrowserSource

HERE = Path(__file__).resolve().parent
MAX_COMPARE = 8
CANDIDATES_PER_PAGE = 200  # a 2,000-candidate run's table in ten pages: the page stays quick to draw


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


class NotFound(HTTPException):
    """A 404 page saying what is missing, with a link back to the run it was looked for in (else the runs)."""

    def __init__(self, detail: str, back_run: str | None = None) -> None:
        super().__init__(404, detail)
        self.back_run = back_run


def _title(panel: str, where: str, note: str = "") -> str:
    return (f"mean over the {where} environments" if panel == figures.MEAN else panel) + f" ({note or where})"


def _cost(x: float | None) -> str:
    return "" if x is None else f"{x / 1000:.1f}k"


def _signed(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:+.{digits}f}"


def _source_html(source: str) -> Markup:
    return Markup(highlight(source, PythonLexer(), HtmlFormatter(linenos="table", cssclass="code")))


def _diff_html(lines: list[str]) -> Markup:
    """A unified diff as rows classed by kind (added, removed, hunk, file), escaped."""
    from markupsafe import escape

    out = []
    for line in lines:
        kind = ("file" if line.startswith(("+++", "---")) else "hunk" if line.startswith("@@") else
                "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        out.append(f'<div class="d-{kind}">{escape(line) or "&nbsp;"}</div>')
    return Markup("".join(out))


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters.update(cost=_cost, signed=_signed, source_html=_source_html, diff_html=_diff_html,
                       tojson_compact=lambda v: Markup(json.dumps(v, separators=(",", ":"), default=str)
                                                       .replace("</", "<\\/")))
    env.globals.update(HighlightCss=Markup(HtmlFormatter(cssclass="code").get_style_defs(".code")),
                       baseline_title=baseline_title)
    return templates


def compare_rows(curves: list[Curve]) -> list[tuple[Curve, str, dict[str, tuple[float, float]], tuple | None]]:
    """The compare table: per curve and point label (β, or a baseline's configuration), (tokens, accuracy) per
    environment and on the mean over the environments of all the curves."""
    envs = {e for c in curves for e in c.envs}
    rows = []
    for c in curves:
        per_env: dict[str, dict[str, tuple[float, float]]] = {}
        for env in sorted(envs):
            for cost, acc, label in c.on(env):
                per_env.setdefault(label, {})[env] = (cost, acc)
        mean = {label: (cost, acc) for cost, acc, label in c.mean(envs)}
        rows += [(c, label, cells, mean.get(label)) for label, cells in per_env.items()]
    return rows


class Pages:
    """The routes' handlers over one browser source."""

    def __init__(self, source: BrowserSource, templates: Jinja2Templates) -> None:
        self.source = source
        self.templates = templates

    def _page(self, request: Request, name: str, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, name, {"store": self.source.path, **context})

    def _view(self, run_id: str) -> RunView:
        try:
            return self.source.run(run_id)
        except StoreError:
            raise NotFound(f"There is no run {run_id!r} in this store.") from None

    # -- runs
    def runs(self, request: Request) -> Response:
        return self._page(request, "runs.html", runs=self.source.runs())

    def runs_json(self, request: Request) -> Response:
        rows = [{"run_id": r.run_id, "status": str(r.status), "generations": r.totals.generations,
                 "candidates": r.totals.candidates, "screened": r.totals.screened,
                 "fully_evaluated": r.totals.fully_evaluated, "best_fitness": r.totals.best_fitness,
                 "usd": r.spend.usd, "llm_tokens": r.spend.llm_tokens, "wall_s": r.wall_s}
                for r in self.source.runs()]
        return JSONResponse({"stamp": self.source.stamp(), "runs": rows})

    # -- one run
    def run(self, request: Request) -> Response:
        view = self._view(request.path_params["run_id"])
        chosen = [c for c in request.query_params.getlist("show") if view.candidate(c) is not None]
        shown = ([view.run.best_candidate] if view.run.best_candidate else []) + \
            [c for c in chosen if c != view.run.best_candidate]
        search = [view.search_curves[c] for c in shown if c in view.search_curves]
        baselines = view.search.baselines
        plots = [(f"search-{p}", figures.curves_figure(search + baselines, p, view.run.search_envs,
                                                       _title(p, "search")))
                 for p in figures.panels(search + baselines)]
        held_plots = []
        if view.heldout is not None:
            curves = view.heldout.curves()
            held_plots = [(f"heldout-{p}", figures.curves_figure(curves, p, view.run.heldout_envs,
                                                                 _title(p, "held-out", "held-out, after selection")))
                          for p in figures.panels(curves)]
        lineages = [(cid, view.lineage(cid), view.ancestors(cid)) for cid in shown]
        pages = max(1, -(-len(view.candidates) // CANDIDATES_PER_PAGE))
        page = min(max(_int(request.query_params.get("page")), 0), pages - 1)
        rows = view.candidates[page * CANDIDATES_PER_PAGE:(page + 1) * CANDIDATES_PER_PAGE]
        islands = sorted({c.island for c in view.cells})
        niches = sorted({c.niche for c in view.cells})
        grid = {(c.island, c.niche): c for c in view.cells}
        return self._page(request, "run.html", view=view, run=view.run, plots=plots, held_plots=held_plots,
                          fitness=figures.fitness_figure(view), lineages=lineages, islands=islands, niches=niches,
                          grid=grid, chosen=set(chosen), stamp=self.source.stamp(), rows=rows, page=page,
                          pages=pages, hidden=[c for c in chosen if c not in {r.candidate_id for r in rows}])

    def run_stamp(self, request: Request) -> Response:
        view = self._view(request.path_params["run_id"])
        return JSONResponse({"stamp": self.source.stamp(), "status": str(view.run.status),
                             "candidates": len(view.candidates), "screened": view.screened})

    # -- one candidate
    def candidate(self, request: Request) -> Response:
        run_id, cid = request.path_params["run_id"], request.path_params["candidate_id"]
        view = self._view(run_id)
        try:
            cv = self.source.candidate(run_id, cid)
        except StoreError:
            raise NotFound(f"Run {run_id} has no candidate {cid!r}.", back_run=run_id) from None
        return self._page(request, "candidate.html", view=view, run=view.run, cv=cv, cand=cv.candidate,
                          lineage=view.lineage(cid), ancestors=view.ancestors(cid), children=view.children(cid))

    # -- compare
    def compare(self, request: Request) -> Response:
        view = self._view(request.path_params["run_id"])
        curves: list[Curve] = []
        unknown: list[str] = []
        baselines = {b.method: b for b in view.search.baselines}
        for item in request.query_params.getlist("c")[:MAX_COMPARE]:
            curve = view.search_curves.get(item)
            (curves.append(curve) if curve else unknown.append(item))
        for item in request.query_params.getlist("b")[:MAX_COMPARE]:
            curve = baselines.get(item)
            (curves.append(curve) if curve else unknown.append(item))
        if not curves and (request.query_params.getlist("c") or request.query_params.getlist("b")):
            raise NotFound(f"None of the candidates or baselines to compare is in this run ({', '.join(unknown)}).",
                           back_run=view.run_id)
        plots = [(f"compare-{p}", figures.curves_figure(curves, p, view.run.search_envs, _title(p, "search")))
                 for p in figures.panels(curves)] if curves else []
        envs = sorted({e for c in curves for e in c.envs})
        return self._page(request, "compare.html", view=view, run=view.run, curves=curves, plots=plots,
                          verdicts=self._verdicts(curves), unknown=unknown, envs=envs, table=compare_rows(curves))

    def _verdicts(self, curves: list[Curve]) -> list[tuple[Curve, Curve, list[scoring.Verdict]]]:
        """Each curve against the first, per β it shares with it: the report's bootstrap verdicts (the 95 %
        interval of the accuracy difference over questions)."""
        if len(curves) < 2:
            return []
        def build(store: Store) -> list[tuple[Curve, Curve, list[scoring.Verdict]]]:
            with store.connect(read_only=True):
                ref = points_with_outcomes(store, curves[0].evaluation_id)
                return [(c, curves[0], scoring.dominance_table(points_with_outcomes(store, c.evaluation_id), ref))
                        for c in curves[1:]]

        return self.source.computed(build, "verdicts", *(c.evaluation_id for c in curves))

    # -- errors
    async def not_found(self, request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, NotFound) else "There is no such page."
        back_run = exc.back_run if isinstance(exc, NotFound) else None
        back = f"/runs/{back_run}" if back_run else "/"
        return self.templates.TemplateResponse(request, "not_found.html", {"store": self.source.path, "detail": detail,
                                                                            "back": back, "back_run": back_run},
                                               status_code=404)
