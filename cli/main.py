"""The `autotts-graph` command line. Commands that need no agent never import LangChain or LangGraph."""

from __future__ import annotations

import typer

from . import cluster_cmd, eval_cmd, run_cmd, sandbox_cmd, serve_cmd, store_cmd, ui_cmd

app = typer.Typer(name="autotts-graph", no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Agents discover test-time-scaling controllers, scored by exact replay.")
app.add_typer(store_cmd.app, name="store")
app.add_typer(sandbox_cmd.app, name="sandbox")
app.add_typer(cluster_cmd.app, name="cluster")
app.command("eval")(eval_cmd.eval_command)
app.command("baselines")(eval_cmd.baselines_command)
app.command("run")(run_cmd.run_command)
app.command("report")(run_cmd.report_command)
app.command("studio")(run_cmd.studio_command)
app.command("serve")(serve_cmd.serve)
app.command("ui")(ui_cmd.ui_command)


if __name__ == "__main__":
    app()
