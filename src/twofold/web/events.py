"""Live progress as Server-Sent Events: every browser gets the same rendering of the live
files (jobs/live.py) whenever one changes, whoever started the job; cancel; and the
watch that sends desktop notices while the panel runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from twofold.core.errors import TwofoldError
from twofold.jobs.clock import SystemClock
from twofold.jobs.live import request_cancel
from twofold.jobs.osprobe import fingerprint
from twofold.jobs.state import State
from twofold.jobs.status import gather
from twofold.web.app import Panel

POLL = 0.25  # seconds between looks at the live files
BEAT = 15.0  # a comment line keeps proxies and the browser from timing out


def render_live(panel: Panel) -> tuple[str, str]:
    """The live section's HTML, and a key that changes when what it shows changes."""
    items = panel.live()
    key = json.dumps([(i.id, i.state, i.phase, i.files, i.bytes, i.issues) for i in items])
    html = panel.templates.get_template("_live.html").render(
        live=items, csrf=panel.secret.csrf)
    return html, key


def _event(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def stream(panel: Panel, request: Request, once: bool) -> AsyncIterator[str]:
    """Events: `live` with the section's HTML at each change, `done` when a job ends."""
    last_key = ""
    running: set[str] = set()
    quiet = 0.0
    while True:
        html, key = render_live(panel)
        if key != last_key:
            last_key = key
            yield _event("live", {"html": html})
            now_running = {i.id for i in panel.live() if i.state == "running"}
            if running - now_running:
                yield _event("done", {"ended": sorted(running - now_running)})
            running = now_running
            quiet = 0.0
        if once or panel.stopping.is_set():
            return
        await asyncio.sleep(POLL)
        quiet += POLL
        if quiet >= BEAT:
            quiet = 0.0
            yield ": still here\n\n"
        if await request.is_disconnected():
            return


async def keep_watch(panel: Panel, every: float) -> None:
    """Look at every job now and then and send the desktop notices that are due."""
    while True:
        try:
            cfg, err = panel.config()
            if err is None:
                statuses = await run_in_threadpool(
                    gather, cfg, State(panel.state_root), SystemClock(), fingerprint)
                panel.watch.look(statuses, panel.live())
        except (TwofoldError, OSError):
            pass  # the page shows the error; the watch tries again later
        await asyncio.sleep(every)


def routes(panel: Panel) -> list[BaseRoute]:
    """The event stream and cancel."""

    async def events(request: Request) -> Response:
        once = request.query_params.get("once") == "1"
        return StreamingResponse(stream(panel, request, once), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def cancel(request: Request) -> Response:
        live_id = request.path_params["id"]
        if request_cancel(panel.state_root, live_id):
            return panel.back("/", "warn", "Asked the job to stop; it stops at the next "
                              "safe point and keeps everything already done")
        return panel.back("/", "bad", "That job is not running any more")

    return [Route("/events", events), Route("/live/{id}/cancel", cancel, methods=["POST"])]
