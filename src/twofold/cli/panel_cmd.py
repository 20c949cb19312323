"""`twofold panel`: the control panel in the browser, on 127.0.0.1 with a token made at
each start. The web stack is imported here, when the command runs, never at start-up."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from twofold.cli.common import err, handles_errors, out
from twofold.core.errors import UsageError
from twofold.jobs.state import state_dir

HOST = "127.0.0.1"


def bind(port: int) -> tuple[socket.socket, str | None]:
    """A listening socket on 127.0.0.1:port (any free port for 0), and a note when the
    port asked for was taken and another was picked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    note = None
    try:
        sock.bind((HOST, port))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            sock.close()
            raise UsageError(f"cannot listen on {HOST}:{port}: {e.strerror}") from e
        sock.bind((HOST, 0))
        note = f"port {port} is taken; using {sock.getsockname()[1]} instead"
    sock.listen(64)
    return sock, note


def _write_address(state: Path, url: str) -> Path:
    """The address (with its token) for `twofold panel --show`, readable by the user
    only."""
    path = state / "panel.json"
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": url, "pid": os.getpid()}, fh)
    return path


@handles_errors
def panel_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port on 127.0.0.1 (0: any free port).")] = 0,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Only print the address; do not open a browser.")] = False,
    show: Annotated[bool, typer.Option(
        "--show", help="Print the address of the panel already running (the service's).")]
    = False,
) -> None:
    """Open the control panel in the browser: is everything protected, runs, browse and
    restore, images, drives, settings. Only this user's browser can reach it (a token,
    127.0.0.1 only)."""
    state = state_dir()
    if show:
        try:
            data = json.loads((state / "panel.json").read_text(encoding="utf-8"))
            os.kill(int(data["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError("no panel is running", "start one with `twofold panel`") \
                from None
        out.print(str(data["url"]), markup=False)
        return
    import uvicorn

    from twofold.web.app import Panel, create_app
    from twofold.web.security import Secret

    sock, note = bind(port)
    real = sock.getsockname()[1]
    secret = Secret({f"{HOST}:{real}", f"localhost:{real}"}, cookie=f"twofold_panel_{real}")
    given = (ctx.obj or {}).get("config")
    panel = Panel(Path(given) if given else None, state, secret)
    url = f"http://{HOST}:{real}/?token={secret.token}"
    if note:
        err.print(f"[yellow]note:[/] {note}")
    _write_address(state, url)
    out.print(f"twofold panel at {url}", markup=False, soft_wrap=True)
    out.print("Stop it with Ctrl-C.", style="dim")
    if not no_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    class Server(uvicorn.Server):
        """Ends the panel's event streams first, so that Ctrl-C stops it at once."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            panel.stopping.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(create_app(panel), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=5)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises it again once stopped
        Server(config).run(sockets=[sock])
    address = state / "panel.json"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(address.read_text(encoding="utf-8")).get("pid") == os.getpid():
            address.unlink()  # not another panel's, started since
    err.print("panel stopped", style="dim")
