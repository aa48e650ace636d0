"""`autotts-graph store ...`: import, list, describe, export and tag replay environments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .collect_cmd import collect
from .common import DEFAULT_STORE, StoreOption, print_json, print_table, user_errors
from .synth_cmd import synth

app = typer.Typer(help="The DuckDB trajectory store: import, list, describe, export, synthesise, collect.",
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
        typer.echo(f"no environments in {store}; try `autotts-graph store import` or `autotts-graph store synth`")
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
        print_json(d)
        return
    typer.echo(f"{d['name']}  split={d['split']}  origin={d['origin']}  source={d['source']}")
    typer.echo(f"{d['n_questions']} questions x {d['n_branches']} branches, probe every {d['probe_freq']} tokens, "
               f"mean branch {d['mean_branch_tokens']:,.0f} tokens, single-branch accuracy "
               f"{100 * d['single_branch_accuracy']:.2f}%")
    print_table(None, ["q", "gold", "branches", "mean tokens", "mean probes", "branch acc", "ERR probes",
                       "modal final"],
                [[q["question_index"], q["gold_answer"], q["branches"], f"{q['mean_tokens']:,.0f}", q["mean_probes"],
                  f"{100 * q['branch_accuracy']:.1f}%", f"{100 * q['err_probe_fraction']:.1f}%",
                  q["modal_final_answer"]] for q in d["questions"]])


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
