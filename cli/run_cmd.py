"""`autotts-graph run`, `report` and `studio`: discovery runs, their reports, and LangGraph Studio.

LangGraph and LangChain are imported inside the commands only, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from .cluster_cmd import check_executor, cluster_line, describe_executor
from .common import DEFAULT_STORE, StoreOption, fail, print_table, user_errors

# `autotts-graph run` with no flags (README): on the synthetic default environments a newcomer's first run, 4
# candidates a generation for the default 3 generations (under 2 minutes on 2 cores,
# benchmarks/embedded_default.py); on real data (`store fetch autotts`: AIME24 searched, AIME25 held out) 12
# generations of 8, 96 candidates screened: the search's best kept improving up to generation 11 in issue 23's
# run B, and it takes about half an hour on 2 cores (benchmarks/discovery_vs_cmc.py).
DEFAULT_RUN_POPULATION = 4
REAL_DATA_ROUNDS = 12


def _only_synthetic(store: Any) -> bool:
    """Does the store hold the synthetic environments only (or nothing yet: the run synthesises them)?"""
    from autotts_graph.store.trajectories import list_environments

    return all(e.origin == "synth" for e in list_environments(store))


def _option(f: Any) -> inspect.Parameter:
    """A typer option for one configuration flag (``graph/configuration.py``'s ``CliFlag``): absent means None,
    so the run file (or the resumed run's setting) applies."""
    names = f.names
    if f.kind is bool and names[0].startswith("--no-"):
        names = (f" /{names[0]}",)  # an off switch only (``--no-critic``: ``--critic`` names the critic's role)
    elif f.kind is bool:
        stem = names[0][2:]
        names = (f"{names[0]}/--no-{stem}",)
    extra: dict[str, Any] = {}
    if f.kind in (int, float) and not f.choices:
        if f.minimum is not None:
            extra["min"] = f.minimum
        if f.maximum is not None:
            extra["max"] = f.maximum
    if f.envvar:
        extra["envvar"] = f.envvar
    value_type: Any = list[str] if f.multiple else (typing.Literal[f.choices] if f.choices else f.kind)
    option = typer.Option(*names, help=f.help, show_default=False, **extra)
    return inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[value_type | None, option])


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
        t.add_row("generation", f"{min(s.round + 1, cfg.rounds)}/{cfg.rounds}", "population",
                  str(cfg.lanes_per_generation()))
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


def _finish(store_path: Path, state: Any, out: Path | None, exit_on_failure: bool = True) -> None:
    from autotts_graph.store.db import Store

    from .llm_report import llm_line
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
    llm = llm_line(store, state.config.run_id)
    if llm:
        typer.echo(f"LLM: {llm}")
    typer.echo(f"report: {md}" + (f"\nplot: {png}" if png else ""))
    typer.echo(f"browse: autotts-graph ui --store {shlex.quote(str(store.path))}")
    if state.status == "failed":
        typer.echo(f"resume with: autotts-graph run --resume {state.config.run_id}", err=True)
        if exit_on_failure:
            raise typer.Exit(1)


def _repeat_table(store_path: Path, states: list[Any]) -> None:
    """The per-seed table of ``--repeat`` and the mean ± sd across seeds (``cli/repeat_report.py``)."""
    from autotts_graph.store.db import Store

    from .repeat_report import rows_of, table

    columns, cells = table(rows_of(Store(store_path), [s.config.run_id for s in states]))
    print_table(f"{len(states)} discovery seeds (held-out figures: mean over environments)", columns, cells)


def run_command(
    config: Annotated[Path | None, typer.Option("--config", help="run.toml with the same settings (flags win).")]
        = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue the run RUN_ID from its checkpoint "
                                                                "(flags change only what a resume may change).")]
        = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default <store>.runs/RUN_ID).")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view on a terminal.")] = True,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run the same search with N discovery seeds "
                                                                "(--seed, --seed + 1, …), each its own run in the "
                                                                "store; then a table per seed and the mean ± sd.")]
        = 1,
    store: StoreOption = DEFAULT_STORE,
    **settings: Any,
) -> None:
    """Discover a controller: generations of candidates (propose → check → critique → screen → evaluate →
    diagnose, in parallel) around a program archive; then select and evaluate it once on the held-out
    environments."""
    from autotts_graph.graph.agents.client import AgentError
    from autotts_graph.graph.configuration import config_from_flags, given_flags, load_run_file, resume_update
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.graph.runner import resume_run, start_run
    from autotts_graph.sandbox.select import SandboxUnavailable
    from autotts_graph.store import history
    from autotts_graph.store.db import Store

    if repeat > 1 and resume:
        fail("--repeat starts new runs and cannot be combined with --resume: resume each run by its own id")
    given = given_flags(settings)
    if "executor" in given.run:
        check_executor(given.run["executor"])
    file_data = load_run_file(config) if config else {}
    if "store" in file_data and store == DEFAULT_STORE and "AUTOTTS_STORE" not in os.environ:
        store = Path(file_data["store"])
    embedded = not (given.run.get("search_envs") or given.run.get("heldout_envs") or config or resume)
    if embedded and _only_synthetic(Store(store)):
        if "population" not in given.run:
            given.run["population"] = DEFAULT_RUN_POPULATION  # the embedded default finishes in minutes on 2 cores
    elif embedded and "rounds" not in given.run:
        given.run["rounds"] = REAL_DATA_ROUNDS  # real data: long enough to get somewhere (see above)
    states: list[Any] = []
    with LiveView(live) as view:
        provider = DepsProvider(store_path=store, progress=view.on_progress, cluster=view.on_cluster)
        reviewer = make_reviewer(view)
        where = ""
        try:
            if resume:
                update = resume_update(history.get_run(Store(store), resume).config, given)
                states.append(resume_run(resume, provider, reviewer=reviewer, observer=view.on_state,
                                         config_update=update or None))
            else:
                base = resolve_config(config_from_flags(file_data, given), Store(store))
                for i in range(repeat):
                    # The same search under the next discovery seed, as a run of its own.
                    cfg = base if i == 0 else base.model_copy(update={"run_id": history.new_id("run"),
                                                                      "seed": base.seed + i})
                    # Build the roles (and connect to a Ray cluster) now: a missing API key or an unreachable
                    # cluster fails before any work.
                    provider.get(cfg)
                    states.append(start_run(cfg, provider, reviewer=reviewer, observer=view.on_state))
            deps = provider.peek(states[-1].config.run_id)
            where = describe_executor(deps.ctx) if deps is not None else ""
        except (AgentError, SandboxUnavailable) as exc:  # RayUnavailable is a SandboxUnavailable
            fail(str(exc))
        finally:
            provider.close()
    if where:
        typer.echo(where, err=True)
    for state in states:
        folder = out / state.config.run_id if out is not None and len(states) > 1 else out
        _finish(store, state, folder, exit_on_failure=len(states) == 1)
    if len(states) > 1:
        _repeat_table(store, states)
        if any(s.status == "failed" for s in states):
            raise typer.Exit(1)


def _with_config_flags(fn: Any) -> Any:
    """``fn`` with one keyword option per configuration flag (``graph/configuration.py``) in place of its
    ``**settings``: typer reads the options from the signature."""
    from autotts_graph.graph.configuration import cli_flags

    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    hints = typing.get_type_hints(fn, include_extras=True)
    params = [p.replace(annotation=hints[p.name]) for p in own] + [_option(f) for f in cli_flags()]
    fn.__signature__ = sig.replace(parameters=params)
    fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return fn


run_command = user_errors(_with_config_flags(run_command))


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
