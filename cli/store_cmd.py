"""`autotts-graph store ...`: fetch, import, list, describe, export and tag replay environments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .collect_cmd import collect
from .common import DEFAULT_STORE, StoreOption, print_json, print_table, user_errors
from .synth_cmd import synth

app = typer.Typer(help="The DuckDB trajectory store: fetch, import, list, describe, export, synthesise, collect.",
                  no_args_is_help=True)
app.command("synth")(synth)
app.command("collect")(collect)


@app.command("import")
@user_errors
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Replay files (<Model>/<dataset>.json[.gz]) or directories.")],
    model: Annotated[str | None, typer.Option(help="Model name for a single file (default: its folder).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name for a single file (default: file stem).")] = None,
    split: Annotated[str, typer.Option(help="Tag the environments 'search' or 'heldout'.")] = "search",
    replace: Annotated[bool, typer.Option(help="Overwrite an environment whose content changed.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Import AutoTTS replay files; importing the same content twice changes nothing."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_path

    s = Store(store)
    if (model or dataset) and len(paths) != 1:
        raise ValueError("--model/--dataset name a single file")
    for path in paths:
        for name, created in import_path(s, path, model, dataset, replace=replace, split=split):
            typer.echo(f"{'imported' if created else 'unchanged'} {name} ({split})")


class _ByteBar:
    """A rich byte progress bar (one task per file) behind the fetch's Progress protocol."""

    def __init__(self) -> None:
        from rich.progress import DownloadColumn, TransferSpeedColumn

        from .common import rich_progress

        self.prog = rich_progress(DownloadColumn(), TransferSpeedColumn(), counts=False)
        self.task: Any = None

    def start(self, name: str, total: int | None, done: int) -> None:
        self.task = self.prog.add_task(name, total=total, completed=done)

    def update(self, done: int, total: int | None) -> None:
        self.prog.update(self.task, completed=done, total=total)

    def end(self) -> None:
        self.prog.stop_task(self.task)


@app.command("fetch")
@user_errors
def fetch(
    source: Annotated[str, typer.Argument(help="What to fetch: 'autotts', the AutoTTS reference replay files.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Only this model (repeat), e.g. Qwen3-4B; default: Qwen3-0.6B, 1.7B, 4B and 8B.")] = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="Only this dataset (repeat): aime24 (search), aime25 or hmmt25 (held-out); default: "
                          "every dataset with pinned checksums.")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", envvar="AUTOTTS_FETCH_BASE_URL",
        help="Mirror serving <Model>/<dataset>.json (http(s)://, file:// or a local folder); default: the pinned "
             "commit of github.com/zhengkid/AutoTTS on raw.githubusercontent.com (env AUTOTTS_FETCH_BASE_URL).")
    ] = None,
    verify: Annotated[bool, typer.Option(
        help="Check each file's size and sha256 against the packaged manifest; --no-verify also allows "
             "files the manifest pins no checksum for (another model or dataset).")] = True,
    replace: Annotated[bool, typer.Option(help="Overwrite an environment whose content differs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Download the AutoTTS reference replay files and import them: AIME24 as search, AIME25/HMMT25 held out.

    Downloads resume where they stopped, every file is verified before anything is imported, and fetching
    again changes nothing. Next: `autotts-graph run --search Qwen3-4B/aime24 --heldout Qwen3-4B/aime25`.
    """
    from autotts_graph.store.db import Store
    from autotts_graph.store.fetch import SOURCES, FetchRequest, fetch_autotts

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    request = FetchRequest(models=model or [], datasets=dataset or [], base_url=base_url, verify=verify,
                           replace=replace)
    bar = _ByteBar()
    if bar.prog.console.is_terminal:
        with bar.prog:
            result = fetch_autotts(Store(store), request, progress=bar)
    else:  # the bar would be transient, and its start/stop noise would garble piped output
        result = fetch_autotts(Store(store), request)
    if as_json:
        print_json(result.model_dump())
        return
    for f in result.files:
        if not f.verified:
            typer.echo(f"warning: {f.name} is not verified ({f.size:,} bytes, sha256 {f.sha256})", err=True)
    for e in result.environments:
        moved = f", moved from {e.retagged_from}" if e.retagged_from else ""
        typer.echo(f"{'imported' if e.created else 'unchanged'} {e.name} ({e.split}{moved})")
    if result.unpinned_skipped:
        flags = " ".join(f"--dataset {d}" for d in sorted({n.split("/")[1] for n in result.unpinned_skipped}))
        typer.echo(f"not fetched (no pinned checksum): {', '.join(result.unpinned_skipped)}; add {flags} "
                   "--no-verify to fetch them unverified")
    search = [e.name for e in result.environments if e.split == "search"]
    if search:
        model = search[0].split("/")[0]
        heldout = sorted((e.name for e in result.environments if e.split == "heldout"),
                         key=lambda n: n.split("/")[0] != model)
        typer.echo(f"next: autotts-graph run --search {search[0]}" + (f" --heldout {heldout[0]}" if heldout else ""))


@app.command("ls")
@user_errors
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """List environments with their size and single-branch accuracy."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import list_environments

    envs = list_environments(Store(store))
    if as_json:
        print_json([e.model_dump() for e in envs])
        return
    if not envs:
        typer.echo(f"no environments in {store}; try `autotts-graph store fetch autotts`, `store import` or "
                   "`store synth`")
        return
    print_table(None, ["environment", "split", "questions", "branches", "probe_freq", "mean tokens",
                       "branch acc", "origin"],
                [[e.name, e.split, e.n_questions, e.n_branches, e.probe_freq, f"{e.mean_branch_tokens:,.0f}",
                  f"{100 * e.single_branch_accuracy:.2f}%", e.origin] for e in envs])


@app.command("show")
@user_errors
def show(
    env: Annotated[str, typer.Argument(help="Environment name, e.g. Qwen3-4B/aime24.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Describe one environment, question by question."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import describe_environment

    d = describe_environment(Store(store), env)
    if as_json:
        print_json(d.model_dump())
        return
    typer.echo(f"{d.name}  split={d.split}  origin={d.origin}  source={d.source}")
    typer.echo(f"{d.n_questions} questions x {d.n_branches} branches, probe every {d.probe_freq} tokens, "
               f"mean branch {d.mean_branch_tokens:,.0f} tokens, single-branch accuracy "
               f"{100 * d.single_branch_accuracy:.2f}%")
    print_table(None, ["q", "gold", "branches", "mean tokens", "mean probes", "branch acc", "ERR probes",
                       "modal final"],
                [[q.question_index, q.gold_answer, q.branches, f"{q.mean_tokens:,.0f}", q.mean_probes,
                  f"{100 * q.branch_accuracy:.1f}%", f"{100 * q.err_probe_fraction:.1f}%", q.modal_final_answer]
                 for q in d.questions])


@app.command("export")
@user_errors
def export(
    env: Annotated[str, typer.Argument(help="Environment name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the JSON (.json or .json.gz).")],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Write an environment back as an AutoTTS replay file (the same JSON value that was imported)."""
    import gzip

    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import export_records

    data = json.dumps(export_records(Store(store), env)).encode()
    output.write_bytes(gzip.compress(data) if output.name.endswith(".gz") else data)
    typer.echo(f"wrote {env} to {output}")


@app.command("split")
@user_errors
def split(
    envs: Annotated[list[str], typer.Argument(help="Environment names.")],
    to: Annotated[str, typer.Option("--to", help="'search' or 'heldout'.")],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Tag environments as search or held-out (held-out ones are hidden from agents and tools)."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import set_split

    set_split(Store(store), envs, to)
    typer.echo(f"{', '.join(envs)} -> {to}")
