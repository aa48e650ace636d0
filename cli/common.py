"""Helpers shared by the CLI commands: store option, one-line errors, progress bars, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

StoreOption = Annotated[Path, typer.Option("--store", envvar="AUTOTTS_STORE",
                                           help="DuckDB store file (env AUTOTTS_STORE).")]
DEFAULT_STORE = Path("autotts.duckdb")


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def user_errors(fn: Callable) -> Callable:
    """Turn the errors a user can fix into one line on stderr (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import duckdb
        from autotts_graph.sandbox.select import SandboxUnavailable
        from autotts_graph.store.db import StoreError
        from pydantic import ValidationError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}")
        except (StoreError, SandboxUnavailable, ValueError, FileNotFoundError, PermissionError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except duckdb.Error as exc:
            fail(f"store error: {str(exc).splitlines()[0]}")
        except KeyboardInterrupt:
            fail("interrupted")

    return wrapper


def parse_floats(text: str, what: str) -> list[float]:
    """'0,0.1,0.5' -> [0.0, 0.1, 0.5]; ValueError naming the bad item."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(float(item))
        except ValueError:
            raise ValueError(f"{what}: {item!r} is not a number") from None
    if not out:
        raise ValueError(f"{what}: give at least one value")
    return out


def rich_progress(*middle: Any, counts: bool = True) -> Any:
    """A rich Progress on stderr: description, bar, done/total, ``middle`` columns, elapsed, remaining.

    ``counts=False`` drops the done/total column, for bars whose ``middle`` columns show the amounts
    themselves (bytes, for instance).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    amounts = [MofNCompleteColumn()] if counts else []
    # Piped or redirected output gets no bar at all (rich would leave blank lines behind).
    return Progress(TextColumn("{task.description}"), BarColumn(), *amounts, *middle,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=not console.is_terminal, disable=not console.is_terminal)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields an update(done, total) callback."""
    with rich_progress() as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def print_json(data: Any) -> None:
    """JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    console.print(table)
