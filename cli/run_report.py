"""The report of a discovery run: markdown (curves, lineage, spend) and a PNG accuracy-vs-tokens plot.

Both render one :class:`~autotts_graph.graph.run_view.RunView`, built once from the store: the same view the
run browser (``autotts-graph ui``) serves.
"""

from __future__ import annotations

import math
from pathlib import Path

from autotts_graph.graph.configuration import ROLES
from autotts_graph.graph.run_view import (
    FRONTIER,
    Curve,
    RunView,
    SplitFigures,
    baseline_title,
    build_run_view,
)
from autotts_graph.graph.state import total_of
from autotts_graph.store.db import Store
from autotts_graph.store.rows import SpendTotals

from .llm_report import llm_sections
from .report import cost_k
from .report_archive import archive_lines, selection_lines


def _curve_table(curve: Curve | None, title: str) -> list[str]:
    if curve is None:
        return [f"_{title}: no evaluation._", ""]
    envs = curve.envs
    betas = sorted({p.beta for p in curve.points if p.beta is not None})
    cell = {(p.env, p.beta): f"{p.accuracy:.2f} / {cost_k(p.avg_cost)}" for p in curve.points}
    lines = [f"**{title}** (accuracy % / tokens per question)", "", "| β | " + " | ".join(envs) + " |",
             "|---|" + "---|" * len(envs)]
    for b in betas:
        lines.append(f"| {b:g} | " + " | ".join(cell.get((e, b), "") for e in envs) + " |")
    return [*lines, ""]


def domination_lines(fig: SplitFigures, title: str) -> list[str]:
    """Which β points of the controller no baseline configuration dominates (mean over envs), CMC included."""
    if not fig.domination:
        return []
    rows = [f"| {r.beta:g} | {r.accuracy:.2f} / {cost_k(r.avg_cost)} | {', '.join(r.dominated_by[:4]) or '**none**'} |"
            for r in fig.domination]
    free = sum(not r.dominated_by for r in fig.domination)
    methods = {b.method for b in fig.baselines}
    names = [baseline_title(m) for m in FRONTIER if m in methods]
    named = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return [f"**{title}**: {free} of {len(rows)} β points are dominated by no configuration of {named} "
            f"({fig.frontier_size} configurations; mean over environments).", "",
            "| β | accuracy % / tokens | dominated by |", "|---|---|---|", *rows, ""]


STATUS_MARK = {"dominates": "**dominates**", "dominated": "_dominated_", "neither": "neither"}


def versus_cmc_lines(verdicts: list, title: str) -> list[str]:
    """Per β and environment (and the mean): dominates CMC / dominated by CMC / neither, with the 95 % CI of
    the accuracy difference over questions and the cost ratio."""
    if not verdicts:
        return []
    from autotts_graph.graph.scoring import dominance_counts

    envs = sorted({v.env for v in verdicts if v.env != "mean"}) + (["mean"] if any(v.env == "mean"
                                                                                  for v in verdicts) else [])
    cell = {(v.env, v.beta): v for v in verdicts}
    betas = sorted({v.beta for v in verdicts if v.beta is not None})

    def fmt(v) -> str:
        if v is None:
            return ""
        ci = f" [{v.ci[0]:+.2f}, {v.ci[1]:+.2f}]" if v.ci else ""
        return f"{STATUS_MARK[v.status]}: {v.diff:+.2f}{ci}, ×{v.cost_ratio:.2f} tokens"

    counts = dominance_counts(verdicts)
    summary = "; ".join(f"{e}: dominates at {counts[e]['dominates']}, dominated at {counts[e]['dominated']} "
                        f"of {sum(counts[e].values())} β" for e in envs)
    lines = [f"**{title}** — same β, difference in accuracy points (controller − CMC) with its 95% bootstrap "
             "interval over questions, and the token ratio. A point dominates only when the gain lies outside "
             "the interval, or when it is at least 10% cheaper at no lower accuracy.", "",
             f"{summary}.", "",
             "| β | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
    for b in betas:
        lines.append(f"| {b:g} | " + " | ".join(fmt(cell.get((e, b))) for e in envs) + " |")
    return [*lines, ""]


def _baseline_table(fig: SplitFigures | None, title: str) -> list[str]:
    if fig is None or not fig.baselines:
        return []
    envs = sorted({p.env for b in fig.baselines for p in b.points})
    cells: dict[str, dict[str, str]] = {}
    for b in fig.baselines:
        for i, p in enumerate(b.points):
            cells.setdefault(b.labels[i], {})[p.env] = f"{p.accuracy:.2f} / {cost_k(p.avg_cost)}"
    lines = [f"**{title}**", "", "| baseline | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
    lines += [f"| {label} | " + " | ".join(per.get(e, "") for e in envs) + " |" for label, per in cells.items()]
    return [*lines, ""]


def spend_line(spend: dict[str, SpendTotals], wall_s: float) -> str:
    """'$X and Y minutes' (LLM dollars, the run's wall time), plus tokens."""
    t = total_of(spend)
    return f"${t.usd:.2f} and {wall_s / 60:.1f} minutes ({t.llm_tokens:,} LLM tokens)"


def render_markdown(view: RunView, plot_name: str | None, llm: list[str] | None = None) -> str:
    """The markdown report (``llm``: the LLM sections of ``cli/llm_report.py``, placed before the spend)."""
    run, cfg, best = view.run, view.run.config, view.best
    lines = [f"# Discovery run {run.run_id}", "",
             f"- status: **{run.status}**" + (f" — {run.error}" if run.error else ""),
             f"- started {run.created_at}" + (f", finished {run.finished_at}" if run.finished_at else ""),
             f"- search environments: {', '.join(run.search_envs)}",
             f"- held-out environments: {', '.join(run.heldout_envs) or 'none'}",
             f"- β grid {cfg.get('betas')}, {cfg.get('seeds')} seeds, {cfg.get('rounds')} rounds, "
             f"selection by {cfg.get('selection')}",
             f"- search: **{view.search_settings.line()}**",
             "- roles: " + ", ".join(f"{r} {cfg.get(r, {}).get('kind', '?')}"
                                     + (f" ({cfg[r]['model']})" if cfg.get(r, {}).get("kind") == "llm" else "")
                                     for r in ROLES),
             f"- spend: **{spend_line(view.spend, view.wall_s)}**", ""]
    if best is not None:
        lines += [f"## Discovered controller: {best.title} ({best.candidate_id})", "",
                  f"Round {best.round}, by {best.origin}; best search accuracy "
                  f"{best.search_accuracy:.2f}%." if best.search_accuracy is not None else "", ""]
        if plot_name:
            lines += [f"![accuracy vs tokens]({plot_name})", ""]
        held = view.heldout
        lines += _curve_table(view.search.winner, "Search environments")
        lines += _curve_table(held.winner if held else None, "Held-out environments (evaluated once, after selection)")
        lines += versus_cmc_lines(view.search.versus_cmc, "Against CMC, search")
        lines += versus_cmc_lines(held.versus_cmc if held else [], "Against CMC, held-out")
        lines += domination_lines(view.search, "Against the baselines, search")
        lines += domination_lines(held, "Against the baselines, held-out") if held else []
        lines += _baseline_table(view.search, "Baselines, search environments")
        lines += _baseline_table(held, "Baselines, held-out environments")
    else:
        lines += ["## No controller was selected", ""]
    lines += selection_lines(view)
    lines += archive_lines(view)
    lines += ["## Candidate lineage", "", "Progress by round: *best so far* is the best search accuracy of any "
              "candidate up to that row.", "",
              "| round | candidate | name | parent | origin | status | search acc % | best so far % |",
              "|---|---|---|---|---|---|---|---|"]
    best_so_far: float | None = None
    for c in view.candidates:
        acc = f"{c.search_accuracy:.2f}" if c.search_accuracy is not None else ""
        if c.search_accuracy is not None:
            best_so_far = max(best_so_far if best_so_far is not None else c.search_accuracy, c.search_accuracy)
        mark = " ★" if c.candidate_id == run.best_candidate else ""
        so_far = f"{best_so_far:.2f}" if best_so_far is not None else ""
        lines.append(f"| {c.round} | {c.candidate_id}{mark} | {c.name} | {c.parent or ''} | "
                     f"{c.origin} | {c.status} | {acc} | {so_far} |")
    lines.append("")
    notes = []
    for c in view.candidates:
        why = c.problems()
        diag = view.diagnoses.get(c.candidate_id)
        if diag:
            why.append("diagnosis: " + diag.summary)
        if why:
            notes.append(f"- **{c.candidate_id}**: " + "; ".join(w.replace("\n", " ")[:300] for w in why))
    if notes:
        lines += ["## Notes per candidate", "", *notes, ""]
    lines += llm or []
    lines += ["## Spend per node", "", "Seconds add up every execution of a node; the lanes of a generation run "
              "side by side, so their sum exceeds the run's wall time (above).", "",
              "| node | runs | LLM tokens | $ | seconds |", "|---|---|---|---|---|"]
    for node, s in view.spend.items():
        lines.append(f"| {node} | {s.calls} | {s.llm_tokens:,} | {s.usd:.4f} | {s.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def render_plot(view: RunView, path: Path) -> bool:
    """Accuracy vs tokens (log) per environment: the discovered β curve against the baselines."""
    groups = [fig for fig in (view.search, view.heldout) if fig is not None and fig.winner is not None]
    panels = [(fig, env) for fig in groups for env in fig.winner.envs]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    for ax, (figures, env) in zip(axes.flat, panels, strict=False):
        pts = sorted((p for p in figures.winner.points if p.env == env), key=lambda p: p.beta or 0.0)
        ax.plot([p.avg_cost for p in pts], [p.accuracy for p in pts], "o-", color="black", lw=2,
                label=f"{figures.winner.title} (β sweep)", zorder=5)
        for i, b in enumerate(figures.baselines):
            mine = b.on(env)
            if mine and b.method == "cmc":  # the controller to beat: drawn boldly
                ax.plot([c for c, _, _ in mine], [a for _, a, _ in mine], "s-", color="crimson", lw=1.8, ms=4,
                        label=b.title, zorder=4)
            elif mine:
                # Up to 13 baselines: the color cycle repeats after 10, so the marker changes with it.
                ax.plot([c for c, _, _ in mine], [a for _, a, _ in mine], ".x+"[min(i // 10, 2)] + "--", alpha=0.8,
                        color=f"C{i % 10}", label=b.title)
        ax.set_xscale("log")
        ax.set_xlabel("tokens per question")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{env} ({'search' if figures.split == 'search' else 'held-out'})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"run {view.run_id}: accuracy vs tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(store: Store, run_id: str, out_dir: Path | None = None) -> tuple[Path, Path | None]:
    """Write ``report.md`` and ``accuracy_vs_tokens.png`` for a run; returns their paths."""
    out_dir = out_dir or store.path.with_name(store.path.name + ".runs") / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    view = build_run_view(store, run_id)
    png = out_dir / "accuracy_vs_tokens.png"
    has_plot = render_plot(view, png)
    md = out_dir / "report.md"
    md.write_text(render_markdown(view, png.name if has_plot else None, llm_sections(store, view.run)),
                  encoding="utf-8")
    return md, png if has_plot else None
