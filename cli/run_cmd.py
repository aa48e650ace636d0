"""`autotts-graph run`, `report` and `studio`: discovery runs, their reports, and LangGraph Studio.

LangGraph and LangChain are imported inside the commands only, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from .cluster_cmd import ExecutorOption, RayAddressOption, check_executor, cluster_line, describe_executor
from .common import DEFAULT_STORE, StoreOption, fail, print_table, user_errors

ROLES = ("proposer", "critic", "diagnostician")
DEFAULT_RUN_POPULATION = 4
# Settings a --resume may change (the rest define what the run measures). The executor is one of them: figures
# are identical on either, so a run started on a cluster may go on locally or on another cluster.
RESUMABLE = ("rounds", "population", "max_attempts", "max_evaluations", "max_usd", "max_llm_tokens", "max_wall_s",
             "review", "workers", "sandbox_slots", "llm_slots", "executor", "ray_address")
# `--executor` as in `eval`, but unset by default: the run file or the resumed run's setting applies then.
RunExecutorOption = Annotated[str | None, ExecutorOption.__metadata__[0]]


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``1.5h`` or a plain number of minutes."""
    t = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:], None)
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale if scale is not None else 60.0)
    except ValueError:
        raise typer.BadParameter(f"--wall {text!r}: give e.g. 90s, 30m, 2h or a number of minutes") from None
    if value <= 0:
        raise typer.BadParameter("--wall must be positive")
    return value
ROLE_KEYS = ("kind", "model", "base_url", "api_key_env", "temperature", "max_output_tokens", "timeout_s",
             "usd_per_mtok_in", "usd_per_mtok_out", "max_tool_steps")


def load_run_file(path: Path) -> dict[str, Any]:
    """A ``run.toml``: RunConfig keys at the top level, role tables ``[proposer]`` etc., plus ``store``.

    Top-level ``model``/``base_url``/``api_key_env`` apply to every role that does not set its own.
    """
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path}: {exc}") from None
    shared = {k: data.pop(k) for k in ("model", "base_url", "api_key_env") if k in data}
    for role in ROLES:
        table = data.get(role)
        if isinstance(table, str):
            table = {"kind": table}
        table = dict(table or {})
        for k, v in shared.items():
            table.setdefault(k, v)
        if table:
            data[role] = table
    return data


def build_config(file_data: dict[str, Any], flags: dict[str, Any], roles: dict[str, dict[str, Any]]):
    """RunConfig from the file, overridden by the flags that were given; role kinds resolved (auto)."""
    from autotts_graph.graph.agents.factory import resolve_kind
    from autotts_graph.graph.state import RoleSettings, RunConfig

    data = {k: v for k, v in file_data.items() if k not in ("store",)}
    data.update({k: v for k, v in flags.items() if v is not None})
    for role in ROLES:
        table = dict(data.get(role) or {})
        table.update({k: v for k, v in roles.get(role, {}).items() if v is not None})
        table.setdefault("kind", "auto")
        settings = RoleSettings.model_validate(table)
        data[role] = settings.model_copy(update={"kind": resolve_kind(settings)})
    return RunConfig.model_validate(data)


class LiveView:
    """A live panel on a terminal: generation, the lanes in flight, archive size, best fitness, screened versus
    fully evaluated counts and spend. Without a terminal: one line per generation and per lane result."""

    def __init__(self, enabled: bool) -> None:
        import threading

        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.state = None
        self.lanes: dict[int, Any] = {}  # slot -> latest LaneState of the generation in flight
        self.progress: dict[str, str] = {}  # "g0s1"-style key -> "screen 3/12"
        self.cluster = ""  # the Ray executor's tasks (running, done, retried), on --executor ray
        self.started = time.monotonic()
        self._live = None
        self._lock = threading.Lock()

    def __enter__(self) -> LiveView:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def pause(self) -> None:
        """Stop drawing (for a prompt)."""
        if self._live is not None:
            self._live.stop()

    def unpause(self) -> None:
        if self._live is not None:
            self._live.start()

    def _render(self):
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        s = self.state
        if s is None:
            t.add_row("starting…", " ".join(self.progress.values()))
            return t
        cfg = s.config
        total = s.total_spend()
        t.add_row("run", cfg.run_id, "status", s.status)
        t.add_row("generation", f"{min(s.round + 1, cfg.rounds)}/{cfg.rounds}", "population", str(cfg.population))
        t.add_row("screened", str(s.screened), "fully evaluated", str(len(s.evaluated)))
        t.add_row("archive", f"{s.archive_members} programs in {s.archive_cells} cells", "node", s.node or "-")
        best = (f"{s.best.name} fitness {s.best.score:.2f} ({s.best.candidate_id})" if s.best else "-")
        t.add_row("best so far", best, "spend",
                  f"${total.usd:.2f}, {total.llm_tokens:,} tok, {(time.monotonic() - self.started) / 60:.1f} min")
        with self._lock:
            lanes = sorted(self.lanes.items())
            progress = dict(self.progress)
        if self.cluster:
            t.add_row("cluster", self.cluster, "", "")
        for slot, lane in lanes[:12]:
            cand = lane.candidate.name if lane.candidate else "-"
            what = progress.get(f"g{lane.generation}s{slot}", "")
            t.add_row(f"  slot {slot}", f"{lane.node or 'start'} {cand}", lane.outcome or "", what)
        if len(lanes) > 12:
            t.add_row("", f"… {len(lanes) - 12} more lanes", "", "")
        return t

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def on_state(self, state: Any) -> None:
        """Observer of the graph's states: the run's (``DiscoveryState``) and each lane's (``LaneState``)."""
        if hasattr(state, "slot"):
            self._on_lane(state)
            return
        prev = self.state
        self.state = state
        if prev is not None and state.round != prev.round:
            with self._lock:
                self.lanes.clear()
                self.progress.clear()
        if self._live is not None:
            self._refresh()
        elif state.node and (prev is None or state.node != prev.node or state.round != prev.round):
            self._print_run_line(state)

    def _print_run_line(self, s: Any) -> None:
        if s.node == "plan" and s.pending:
            line = f"[generation {s.round}] {len(s.pending)} candidates in flight"
        elif s.node == "record" and s.generations:
            g = s.generations[-1]
            best = f"{g.best_fitness:.2f}" if g.best_fitness is not None else "-"
            line = (f"[generation {g.generation}] screened {g.screened}, fully evaluated {g.promoted}, failed "
                    f"{g.failed}; archive {g.archive_members} programs in {g.archive_cells} cells; best fitness {best}"
                    f"; total screened {s.screened}, fully evaluated {len(s.evaluated)}")
        else:
            line = f"[{s.node}] status {s.status}" + (f" ({s.stop_reason})" if s.stop_reason else "")
        self.console.print(line, highlight=False, markup=False)

    def _on_lane(self, lane: Any) -> None:
        with self._lock:
            prev = self.lanes.get(lane.slot)
            self.lanes[lane.slot] = lane
        if self._live is not None:
            self._refresh()
            return
        if prev is not None and prev.node == lane.node and prev.attempt == lane.attempt:
            return
        cand = lane.candidate.candidate_id if lane.candidate else "-"
        detail = ""
        if lane.node == "screen" and lane.screen is not None:
            detail = lane.gate or (lane.screen.error_kind or "")
        elif lane.node == "evaluate" and lane.evaluation is not None:
            ev = lane.evaluation
            detail = f"fitness {ev.score:.2f}" if ev.ok and ev.score is not None else (ev.error_kind or "")
        elif lane.outcome in ("check_failed", "rejected"):
            detail = lane.outcome
        elif lane.stop_reason:
            detail = lane.stop_reason
        else:
            return
        self.console.print(f"[generation {lane.generation} slot {lane.slot}] {lane.node}: {cand} {detail}",
                           highlight=False, markup=False)

    def on_cluster(self, stats: Any) -> None:
        """The Ray executor's counters (``ClusterStats``) changed: shown in the live panel only (too chatty for
        a log; the run's last line sums them up)."""
        self.cluster = cluster_line(stats)
        self._refresh()

    def on_progress(self, what: str, done: int, total: int) -> None:
        """Sandbox progress of a node in flight (``what`` ends with the lane's ``g<gen>s<slot>`` key)."""
        name, _, key = what.rpartition(" ")
        with self._lock:
            self.progress[key if name else what] = f"{name or what} {done}/{total}"
        self._refresh()


def make_reviewer(view: LiveView):
    """The --review prompt: approve, edit (in $EDITOR or from a file), or reject."""
    from rich.syntax import Syntax

    def review(payload: dict[str, Any]) -> dict[str, Any]:
        view.pause()
        try:
            con = view.console
            con.rule(f"review {payload.get('name')} ({payload.get('candidate_id')}), round {payload.get('round')}")
            con.print(Syntax(payload.get("source", ""), "python", line_numbers=True))
            if payload.get("rationale"):
                con.print(f"rationale: {payload['rationale']}")
            while True:
                choice = typer.prompt("[a]pprove, [e]dit or [r]eject", default="a", err=True).strip().lower()
                if choice.startswith("a"):
                    return {"action": "approve"}
                if choice.startswith("r"):
                    reason = typer.prompt("reason", default="rejected by the reviewer", err=True)
                    return {"action": "reject", "reason": reason}
                if choice.startswith("e"):
                    edited = typer.edit(payload.get("source", ""), extension=".py") if os.environ.get("EDITOR") \
                        else None
                    if edited is None:
                        path = typer.prompt("path of the edited source file", err=True)
                        try:
                            edited = Path(path).read_text(encoding="utf-8")
                        except OSError as exc:
                            con.print(f"cannot read {path}: {exc}")
                            continue
                    return {"action": "edit", "source": edited, "reason": "edited by the reviewer"}
        finally:
            view.unpause()

    return review


def _finish(store_path: Path, state: Any, out: Path | None) -> None:
    from autotts_graph.store.db import Store

    from .run_report import spend_line, write_report

    store = Store(store_path)
    md, png = write_report(store, state.config.run_id, out)
    from autotts_graph.store import history

    typer.echo(f"run {state.config.run_id}: {state.status}"
               + (f" — {state.error}" if state.error else "")
               + (f" ({state.stop_reason})" if state.stop_reason else ""))
    if state.selected:
        best = state.best
        typer.echo(f"discovered controller: {best.name if best else ''} ({state.selected})"
                   + (f", search accuracy {best.search_accuracy:.2f}%"
                      if best and best.search_accuracy is not None else ""))
    gens = len(state.generations)
    typer.echo(f"generations: {gens}, candidates screened {state.screened}, fully evaluated {len(state.evaluated)}; "
               f"archive {state.archive_members} programs in {state.archive_cells} cells; wall time "
               f"{state.wall_s / 60:.1f} min")
    typer.echo(f"spend: {spend_line(history.run_spend(store, state.config.run_id), state.wall_s)}")
    typer.echo(f"report: {md}" + (f"\nplot: {png}" if png else ""))
    typer.echo(f"browse: autotts-graph ui --store {shlex.quote(str(store.path))}")
    if state.status == "failed":
        typer.echo(f"resume with: autotts-graph run --resume {state.config.run_id}", err=True)
        raise typer.Exit(1)


def _split_csv(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


@user_errors
def run_command(
    config: Annotated[Path | None, typer.Option("--config", help="run.toml with the same settings (flags win).")]
        = None,
    rounds: Annotated[int | None, typer.Option("--rounds", "--generations", help="Generations (default 3).", min=1)]
        = None,
    population: Annotated[int | None, typer.Option(min=1, max=256, help="Candidates per generation, evaluated in "
                                                                        "parallel (default 8; 4 on the embedded "
                                                                        "default environments).")] = None,
    max_evaluations: Annotated[int | None, typer.Option(min=1, help="Stop after this many candidates were "
                                                                    "screened.")] = None,
    wall: Annotated[str | None, typer.Option("--wall", help="Wall-clock budget: 90s, 30m, 2h or minutes.")] = None,
    islands: Annotated[int | None, typer.Option(min=1, max=16, help="Islands of the program archive.")] = None,
    cascade: Annotated[bool | None, typer.Option("--cascade/--no-cascade", help="Screen cheaply first; fully "
                                                                                "evaluate near-best candidates "
                                                                                "only.")] = None,
    screen_seeds: Annotated[int | None, typer.Option(min=1, help="Seeds of the screen (default 10).")] = None,
    screen_margin: Annotated[float | None, typer.Option(min=0, help="Fitness points a screen may trail its "
                                                                    "niche's best and still go on.")] = None,
    sandbox_slots: Annotated[int | None, typer.Option(min=1, help="Candidates in the sandbox at once.")] = None,
    llm_slots: Annotated[int | None, typer.Option(min=1, help="Agent calls in flight at once.")] = None,
    search: Annotated[list[str] | None, typer.Option("--search", help="Search environment (repeat).")] = None,
    heldout: Annotated[list[str] | None, typer.Option("--heldout", help="Held-out environment (repeat).")] = None,
    betas: Annotated[str | None, typer.Option(help="Comma-separated β grid (default 0,0.1,…,1).")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, max=1000, help="Shuffle seeds per evaluation.")] = None,
    sandbox: Annotated[str | None, typer.Option(help="auto, docker, bwrap or process.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel sandbox tasks (on Ray: default the "
                                                            "cluster's cores).")] = None,
    executor: RunExecutorOption = None,
    ray_address: RayAddressOption = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="Seconds one solve() may run before "
                                                  "it is stopped and reported (default 10).")] = None,
    proposer: Annotated[str | None, typer.Option(help="offline, llm or module:Class (default: llm when the "
                                                      "API key is set, else offline).")] = None,
    critic: Annotated[str | None, typer.Option(help="offline, llm or module:Class.")] = None,
    diagnostician: Annotated[str | None, typer.Option(help="offline, llm or module:Class.")] = None,
    model: Annotated[str | None, typer.Option(help="Model of every LLM role.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL of every LLM role.")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Variable holding the API key (default "
                                                         "OPENAI_API_KEY).")] = None,
    proposer_model: Annotated[str | None, typer.Option()] = None,
    proposer_base_url: Annotated[str | None, typer.Option()] = None,
    proposer_api_key_env: Annotated[str | None, typer.Option()] = None,
    critic_model: Annotated[str | None, typer.Option()] = None,
    critic_base_url: Annotated[str | None, typer.Option()] = None,
    critic_api_key_env: Annotated[str | None, typer.Option()] = None,
    diagnostician_model: Annotated[str | None, typer.Option()] = None,
    diagnostician_base_url: Annotated[str | None, typer.Option()] = None,
    diagnostician_api_key_env: Annotated[str | None, typer.Option()] = None,
    review: Annotated[bool | None, typer.Option("--review/--no-review", help="Pause before each evaluation for "
                                                                              "a human to approve, edit or reject.")]
        = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue the run RUN_ID from its checkpoint.")]
        = None,
    selection: Annotated[str | None, typer.Option(help="frontier (default: the accuracy margin over every baseline "
                                                       "at equal cost) or best_accuracy.")] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Proposals per candidate slot (with retries).")]
        = None,
    max_usd: Annotated[float | None, typer.Option(min=0, help="LLM spend limit in $.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=0, help="LLM token limit.")] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0, help="Wall-clock budget in minutes (as --wall).")]
        = None,
    baselines: Annotated[str | None, typer.Option(help="Comma-separated baselines to compare with.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the offline proposer.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default <store>.runs/RUN_ID).")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view on a terminal.")] = True,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Discover a controller: generations of candidates (propose → check → critique → screen → evaluate →
    diagnose, in parallel) around a program archive; then select and evaluate it once on the held-out
    environments."""
    from autotts_graph.graph.agents.llm import AgentError
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.graph.runner import resume_run, start_run
    from autotts_graph.sandbox.select import SandboxUnavailable
    from autotts_graph.store.db import Store

    if executor is not None:
        check_executor(executor)
    file_data = load_run_file(config) if config else {}
    if "store" in file_data and store == DEFAULT_STORE and "AUTOTTS_STORE" not in os.environ:
        store = Path(file_data["store"])
    role_flags = {
        r: {"kind": k, "model": m, "base_url": u, "api_key_env": e}
        for r, k, m, u, e in (
            ("proposer", proposer, proposer_model or model, proposer_base_url or base_url,
             proposer_api_key_env or api_key_env),
            ("critic", critic, critic_model or model, critic_base_url or base_url, critic_api_key_env or api_key_env),
            ("diagnostician", diagnostician, diagnostician_model or model, diagnostician_base_url or base_url,
             diagnostician_api_key_env or api_key_env))}
    bl = _split_csv(baselines)
    wall_s = parse_duration(wall) if wall is not None else (None if max_minutes is None else max_minutes * 60)
    embedded = not (search or heldout or config or resume)
    if population is None and embedded:
        population = DEFAULT_RUN_POPULATION  # the embedded default finishes in a few minutes on 2 cores
    flags = {"rounds": rounds, "search_envs": search or None, "heldout_envs": heldout or None,
             "betas": None if betas is None else [float(x) for x in _split_csv(betas)], "seeds": seeds,
             "sandbox": sandbox, "workers": workers, "solve_timeout_s": timeout, "review": review,
             "selection": selection,
             "max_attempts": max_attempts, "max_usd": max_usd, "max_llm_tokens": max_tokens,
             "max_wall_s": wall_s, "baselines": bl, "seed": seed, "population": population,
             "max_evaluations": max_evaluations, "islands": islands, "cascade": cascade,
             "screen_seeds": screen_seeds, "screen_margin": screen_margin, "sandbox_slots": sandbox_slots,
             "llm_slots": llm_slots, "executor": executor, "ray_address": ray_address}
    with LiveView(live) as view:
        provider = DepsProvider(store_path=store, progress=view.on_progress, cluster=view.on_cluster)
        reviewer = make_reviewer(view)
        where = ""
        try:
            if resume:
                update = {k: v for k, v in flags.items() if v is not None and k in RESUMABLE}
                for role, given in role_flags.items():
                    if any(v is not None for v in given.values()):
                        update[role] = _role_update(store, resume, role, given)
                state = resume_run(resume, provider, reviewer=reviewer, observer=view.on_state,
                                   config_update=update or None)
            else:
                cfg = resolve_config(build_config(file_data, flags, role_flags), Store(store))
                # Build the roles (and connect to a Ray cluster) now: a missing API key or an unreachable
                # cluster fails before any work.
                provider.get(cfg)
                state = start_run(cfg, provider, reviewer=reviewer, observer=view.on_state)
            deps = provider.peek(state.config.run_id)
            where = describe_executor(deps.ctx) if deps is not None else ""
        except (AgentError, SandboxUnavailable) as exc:  # RayUnavailable is a SandboxUnavailable
            fail(str(exc))
        finally:
            provider.close()
    if where:
        typer.echo(where, err=True)
    _finish(store, state, out)


def _role_update(store: Path, run_id: str, role: str, given: dict[str, Any]):
    """A role's stored settings with the given flags applied (for --resume)."""
    from autotts_graph.graph.agents.factory import resolve_kind
    from autotts_graph.graph.state import RoleSettings
    from autotts_graph.store import history
    from autotts_graph.store.db import Store

    stored = history.get_run(Store(store), run_id).config.get(role, {})
    settings = RoleSettings.model_validate({**stored, **{k: v for k, v in given.items() if v is not None}})
    return settings.model_copy(update={"kind": resolve_kind(settings)})


@user_errors
def report_command(
    run_id: Annotated[str | None, typer.Argument(help="The run (omit with --list).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.md and the PNG plot.")] = None,
    list_runs: Annotated[bool, typer.Option("--list", help="List the runs in the store.")] = False,
    show: Annotated[bool, typer.Option("--show/--no-show", help="Print the markdown.")] = True,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """The report of a discovery run: markdown with curves, lineage and spend, plus an accuracy-vs-tokens PNG."""
    from autotts_graph.store import history
    from autotts_graph.store.db import Store

    from .run_report import write_report

    st = Store(store)
    if list_runs or run_id is None:
        rows = history.list_runs(st)
        if not rows:
            typer.echo("no runs in this store")
            return
        print_table("runs", ["run", "status", "created", "best", "search", "held-out"],
                    [[r.run_id, r.status, r.created_at[:19], r.best_candidate or "", ", ".join(r.search_envs),
                      ", ".join(r.heldout_envs)] for r in rows])
        return
    md, png = write_report(st, run_id, out)
    if show:
        typer.echo(md.read_text(encoding="utf-8"))
    typer.echo(f"report: {md}" + (f"\nplot: {png}" if png else ""), err=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def studio_env(store: Path) -> dict[str, str]:
    """Environment of the dev server: the store, no analytics, no version check, tracing only if asked for."""
    env = dict(os.environ)
    env["AUTOTTS_STORE"] = str(store.resolve())
    env["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
    env["LANGGRAPH_NO_VERSION_CHECK"] = "true"
    env.setdefault("LANGSMITH_TRACING", "false")
    return env


def studio_command(
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (keep loopback).")] = "127.0.0.1",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Start `langgraph dev` on a free loopback port and print the LangGraph Studio URL."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    config = root / "langgraph.json"
    if not config.is_file():
        fail(f"{config} is missing")
    exe = shutil.which("langgraph")
    if exe is None:
        fail("the langgraph CLI is not installed: pip install 'langgraph-cli[inmem]'")
    port = port or free_port(host)
    cmd = [exe, "dev", "--no-browser", "--no-reload", "--allow-blocking", "--host", host, "--port", str(port),
           "--config", str(config)]
    url = f"http://{host}:{port}"
    typer.echo(f"API:    {url}")
    typer.echo(f"Studio: https://smith.langchain.com/studio/?baseUrl={url}")
    typer.echo(f"store:  {store.resolve()}  (Ctrl-C stops the server)")
    sys.stdout.flush()
    import signal

    proc = subprocess.Popen(cmd, env=studio_env(store), cwd=str(root))

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` of this command also stops the server it started
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise typer.Exit(130) from None
