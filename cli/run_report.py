"""The report of a discovery run: markdown (curves, lineage, spend) and a PNG accuracy-vs-tokens plot.

Everything is read from the store: the run, its candidates and diagnoses, the discovered controller's
search and held-out evaluations, the baseline evaluations the run used, and the spend per node.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import Store

from .llm_report import llm_sections
from .report import cost_k
from .report_archive import archive_lines


def baseline_title(method: str) -> str:
    """A baseline's display title (``ASC``, ``short-3``); the key itself for an unknown one."""
    from autotts_graph.tools.baselines import SWEEPS

    return SWEEPS[method][0] if method in SWEEPS else method


def _points(store: Store, evaluation_id: str | None) -> list[dict[str, Any]]:
    if not evaluation_id:
        return []
    try:
        ev = history.get_evaluation(store, evaluation_id)
    except Exception:  # an evaluation id from a store that was edited by hand
        return []
    return ev["points"] if ev["status"] == "ok" else []


def collect(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    run = history.get_run(store, run_id)
    cands = history.list_candidates(store, run_id)
    diagnoses = history.get_diagnoses(store, run_id)
    spend = history.run_spend(store, run_id)
    best = run["best_candidate"]
    search_eval = history.find_evaluation(store, run_id=run_id, candidate_id=best, split="search") if best else None
    heldout_eval = history.find_evaluation(store, run_id=run_id, candidate_id=best, split="heldout") if best else None
    baseline_ids = (run["report"] or {}).get("baseline_evaluations", {})
    baselines: dict[str, dict[str, list[dict]]] = {"search": {}, "heldout": {}}
    for key, ev_id in baseline_ids.items():
        method, _, split = key.partition("@")
        baselines.setdefault(split, {})[method] = _points(store, ev_id)
    from autotts_graph.graph.evidence import cmc_verdicts

    verdicts = {split: cmc_verdicts(store, ev_id, baseline_ids.get(f"cmc@{split}"))
                for split, ev_id in (("search", search_eval), ("heldout", heldout_eval))
                if ev_id and baseline_ids.get(f"cmc@{split}")}
    return {"run": run, "candidates": cands, "diagnoses": diagnoses, "spend": spend, "best": best,
            "llm": llm_sections(store, run), "archive": history.list_archive(store, run_id),
            "search": _points(store, search_eval), "heldout": _points(store, heldout_eval), "baselines": baselines,
            "versus_cmc": verdicts}


def _curve_table(points: list[dict], title: str) -> list[str]:
    if not points:
        return [f"_{title}: no evaluation._", ""]
    envs = sorted({p["env"] for p in points})
    betas = sorted({p["beta"] for p in points if p["beta"] is not None})
    cell = {(p["env"], p["beta"]): f"{p['accuracy']:.2f} / {cost_k(p['avg_cost'])}" for p in points}
    lines = [f"**{title}** (accuracy % / tokens per question)", "", "| β | " + " | ".join(envs) + " |",
             "|---|" + "---|" * len(envs)]
    for b in betas:
        lines.append(f"| {b:g} | " + " | ".join(cell.get((e, b), "") for e in envs) + " |")
    return [*lines, ""]


# The hand-crafted baselines: the paper's and the field's other answer-only controllers. The frontier a
# discovered controller is checked against adds CMC (itself discovered, and the controller to beat).
HAND_CRAFTED = ("sc", "asc", "esc", "parallel_probe", "bayes", "bayes_fit", "dynasor", "certaindex", "es_cot",
                "short1", "short3", "deepconf")
FRONTIER = (*HAND_CRAFTED, "cmc")


def domination_lines(points: list[dict], methods: dict[str, list[dict]], title: str) -> list[str]:
    """Which β points of the controller no baseline configuration dominates (mean over envs), CMC included."""
    from autotts_graph.graph.scoring import baseline_means, dominated_by_all, mean_curve
    from autotts_graph.tools.baselines import point_label

    base_points = [{**p, "label": point_label(m, p["config"])} for m in FRONTIER for p in methods.get(m, [])]
    if not points or not base_points:
        return []
    base = baseline_means(base_points, {p["env"] for p in points})
    rows = []
    for beta, acc, cost in mean_curve(points):
        if beta is None:
            continue
        by = dominated_by_all(acc, cost, base)
        rows.append(f"| {beta:g} | {acc:.2f} / {cost_k(cost)} | {', '.join(by[:4]) or '**none**'} |")
    free = sum("**none**" in r for r in rows)
    names = [baseline_title(m) for m in FRONTIER if methods.get(m)]
    named = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return [f"**{title}**: {free} of {len(rows)} β points are dominated by no configuration of {named} "
            f"({len(base)} configurations; mean over environments).", "",
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

    def fmt(v: Any) -> str:
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


def _baseline_table(methods: dict[str, list[dict]], title: str) -> list[str]:
    rows = [(m, p) for m, pts in methods.items() for p in pts]
    if not rows:
        return []
    envs = sorted({p["env"] for _, p in rows})
    from autotts_graph.tools.baselines import point_label

    cells: dict[str, dict[str, str]] = {}
    for m, p in rows:
        cells.setdefault(point_label(m, p["config"]), {})[p["env"]] = f"{p['accuracy']:.2f} / {cost_k(p['avg_cost'])}"
    lines = [f"**{title}**", "", "| baseline | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
    lines += [f"| {label} | " + " | ".join(per.get(e, "") for e in envs) + " |" for label, per in cells.items()]
    return [*lines, ""]


def run_wall_s(run: dict[str, Any], spend: dict[str, dict[str, float]]) -> float:
    """The run's wall time: as the graph counted it (each generation's slowest lane, not the sum of its
    lanes), else the report's, else (a run recorded before either existed) the sum of its node seconds."""
    for wall in (run.get("wall_s"), (run.get("report") or {}).get("wall_s")):
        if wall is not None:
            return float(wall)
    return sum(s["seconds"] for s in spend.values())


def spend_line(spend: dict[str, dict[str, float]], wall_s: float) -> str:
    """'$X and Y minutes' (LLM dollars, the run's wall time), plus tokens."""
    usd = sum(s["usd"] for s in spend.values())
    minutes = wall_s / 60
    tokens = sum(s["llm_tokens"] for s in spend.values())
    return f"${usd:.2f} and {minutes:.1f} minutes ({tokens:,} LLM tokens)"


def render_markdown(data: dict[str, Any], plot_name: str | None) -> str:
    """The markdown report."""
    run, cands = data["run"], data["candidates"]
    cfg = run["config"]
    best = next((c for c in cands if c["candidate_id"] == data["best"]), None)
    lines = [f"# Discovery run {run['run_id']}", "",
             f"- status: **{run['status']}**" + (f" — {run['error']}" if run.get("error") else ""),
             f"- started {run['created_at']}" + (f", finished {run['finished_at']}" if run["finished_at"] else ""),
             f"- search environments: {', '.join(run['search_envs'] or [])}",
             f"- held-out environments: {', '.join(run['heldout_envs'] or []) or 'none'}",
             f"- β grid {cfg.get('betas')}, {cfg.get('seeds')} seeds, {cfg.get('rounds')} rounds, "
             f"selection by {cfg.get('selection')}",
             "- roles: " + ", ".join(f"{r} {cfg.get(r, {}).get('kind', '?')}"
                                     + (f" ({cfg[r]['model']})" if cfg.get(r, {}).get("kind") == "llm" else "")
                                     for r in ("proposer", "critic", "diagnostician")),
             f"- spend: **{spend_line(data['spend'], run_wall_s(run, data['spend']))}**", ""]
    if best is not None:
        lines += [f"## Discovered controller: {best['name'] or best['candidate_id']} ({best['candidate_id']})", "",
                  f"Round {best['round']}, by {best['origin']}; best search accuracy "
                  f"{best['search_accuracy']:.2f}%." if best["search_accuracy"] is not None else "", ""]
        if plot_name:
            lines += [f"![accuracy vs tokens]({plot_name})", ""]
        lines += _curve_table(data["search"], "Search environments")
        lines += _curve_table(data["heldout"], "Held-out environments (evaluated once, after selection)")
        vs = data.get("versus_cmc", {})
        lines += versus_cmc_lines(vs.get("search", []), "Against CMC, search")
        lines += versus_cmc_lines(vs.get("heldout", []), "Against CMC, held-out")
        lines += domination_lines(data["search"], data["baselines"].get("search", {}), "Against the baselines, search")
        lines += domination_lines(data["heldout"], data["baselines"].get("heldout", {}),
                                   "Against the baselines, held-out")
        lines += _baseline_table(data["baselines"].get("search", {}), "Baselines, search environments")
        lines += _baseline_table(data["baselines"].get("heldout", {}), "Baselines, held-out environments")
    else:
        lines += ["## No controller was selected", ""]
    lines += archive_lines(data.get("archive", []))
    lines += ["## Candidate lineage", "", "Progress by round: *best so far* is the best search accuracy of any "
              "candidate up to that row.", "",
              "| round | candidate | name | parent | origin | status | search acc % | best so far % |",
              "|---|---|---|---|---|---|---|---|"]
    best_so_far: float | None = None
    for c in cands:
        acc = f"{c['search_accuracy']:.2f}" if c["search_accuracy"] is not None else ""
        if c["search_accuracy"] is not None:
            best_so_far = max(best_so_far if best_so_far is not None else c["search_accuracy"], c["search_accuracy"])
        mark = " ★" if c["candidate_id"] == data["best"] else ""
        best = f"{best_so_far:.2f}" if best_so_far is not None else ""
        lines.append(f"| {c['round']} | {c['candidate_id']}{mark} | {c['name'] or ''} | {c['parent'] or ''} | "
                     f"{c['origin'] or ''} | {c['status'] or ''} | {acc} | {best} |")
    lines.append("")
    notes = []
    for c in cands:
        why = []
        if c["check_result"] and not c["check_result"].get("ok", True):
            why += c["check_result"].get("errors", [])
        if c["critic"] and not c["critic"].get("approve", True):
            why += c["critic"].get("reasons", [])
        diag = data["diagnoses"].get(c["candidate_id"])
        if diag:
            why.append("diagnosis: " + diag.get("summary", ""))
        if why:
            notes.append(f"- **{c['candidate_id']}**: " + "; ".join(w.replace("\n", " ")[:300] for w in why))
    if notes:
        lines += ["## Notes per candidate", "", *notes, ""]
    lines += data.get("llm", [])
    lines += ["## Spend per node", "", "Seconds add up every execution of a node; the lanes of a generation run "
              "side by side, so their sum exceeds the run's wall time (above).", "",
              "| node | runs | LLM tokens | $ | seconds |", "|---|---|---|---|---|"]
    for node, s in data["spend"].items():
        lines.append(f"| {node} | {s['calls']} | {s['llm_tokens']:,} | {s['usd']:.4f} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def render_plot(data: dict[str, Any], path: Path) -> bool:
    """Accuracy vs tokens (log) per environment: the discovered β curve against the baselines."""
    groups = [("search", data["search"]), ("held-out", data["heldout"])]
    panels = [(split, env, [p for p in pts if p["env"] == env]) for split, pts in groups
              for env in sorted({p["env"] for p in pts})]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
    name = next((c["name"] for c in data["candidates"] if c["candidate_id"] == data["best"]), None) or "discovered"
    for ax, (split, env, pts) in zip(axes.flat, panels, strict=False):
        pts = sorted(pts, key=lambda p: p["beta"] or 0.0)
        ax.plot([p["avg_cost"] for p in pts], [p["accuracy"] for p in pts], "o-", color="black", lw=2,
                label=f"{name} (β sweep)", zorder=5)
        key = "search" if split == "search" else "heldout"
        for i, (method, bpts) in enumerate(data["baselines"].get(key, {}).items()):
            mine = sorted((p for p in bpts if p["env"] == env), key=lambda p: p["avg_cost"])
            if mine and method == "cmc":  # the controller to beat: drawn boldly
                ax.plot([p["avg_cost"] for p in mine], [p["accuracy"] for p in mine], "s-", color="crimson", lw=1.8,
                        ms=4, label=baseline_title(method), zorder=4)
            elif mine:
                # Up to 13 baselines: the color cycle repeats after 10, so the marker changes with it.
                ax.plot([p["avg_cost"] for p in mine], [p["accuracy"] for p in mine], ".x+"[min(i // 10, 2)] + "--",
                        alpha=0.8, color=f"C{i % 10}", label=baseline_title(method))
        ax.set_xscale("log")
        ax.set_xlabel("tokens per question")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{env} ({split})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"run {data['run']['run_id']}: accuracy vs tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(store: Store, run_id: str, out_dir: Path | None = None) -> tuple[Path, Path | None]:
    """Write ``report.md`` and ``accuracy_vs_tokens.png`` for a run; returns their paths."""
    out_dir = out_dir or store.path.with_name(store.path.name + ".runs") / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(store, run_id)
    png = out_dir / "accuracy_vs_tokens.png"
    has_plot = render_plot(data, png)
    md = out_dir / "report.md"
    md.write_text(render_markdown(data, png.name if has_plot else None), encoding="utf-8")
    return md, png if has_plot else None
