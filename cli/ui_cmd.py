"""`autotts-graph ui`: the run browser, a local read-only web app over the store (``ui/``).

Loopback only unless ``--allow-remote`` is given with another ``--host``: the app has no login, and a store
holds every run's code and figures.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated

import typer

from .common import DEFAULT_STORE, StoreOption, fail, user_errors


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> int | None:
    """The port a listening socket would get on (host, port), or None when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return None
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    return _bind(host, port) is not None


def _free_port(host: str) -> int:
    port = _bind(host, 0)
    if port is None:
        fail(f"cannot listen on {host}: give an address of this machine with --host")
    return port


@user_errors
def ui_command(
    store: StoreOption = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback unless --allow-remote).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8770,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other machines can reach "
                                                                      "(the app has no login).")] = False,
) -> None:
    """Browse the store's runs in a web page: the archive, the lineage, the code and the curves (read-only)."""
    if not is_loopback(host) and not allow_remote:
        fail(f"--host {host} is reachable from other machines; the browser has no login: add --allow-remote to "
             "listen there anyway, or keep the default 127.0.0.1")
    if port == 0:
        port = _free_port(host)
    elif not _port_free(host, port):
        fail(f"port {port} on {host} is in use: give another with --port (0 picks a free one)")
    from autotts_graph.ui.app import create_app

    app = create_app(store)  # StoreUnusable (a StoreError): one line, before anything listens
    import uvicorn

    if not is_loopback(host):
        typer.echo(f"warning: listening on {host}, reachable from other machines, without a login", err=True)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"run browser: http://{shown}:{port}/  (store {store.absolute()}, read-only; Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
