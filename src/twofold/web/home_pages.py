"""Home (am I protected?), Runs with their logs, and Drives: the pages that show what
`twofold status`, `runs`, `log` and `drives` show, with their buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from twofold.backup.inspect import list_runs
from twofold.core.errors import TwofoldError
from twofold.core.schedule import ago
from twofold.jobs.clock import SystemClock
from twofold.jobs.config import Config, drive_of
from twofold.jobs.drives import Drive, eject, list_drives, locate
from twofold.jobs.osprobe import fingerprint
from twofold.jobs.state import State
from twofold.jobs.status import JobStatus, gather
from twofold.web.app import Panel, form_text


def statuses(panel: Panel, cfg: Config) -> list[JobStatus]:
    """Every job's status, as `twofold status` computes it."""
    return gather(cfg, State(panel.state_root), SystemClock(), fingerprint)


def _last(s: JobStatus, now: int) -> str:
    if s.last_ok_ns is None:
        return "never"
    return f"{ago(now - s.last_ok_ns)} ago"


def _drive(s: JobStatus) -> str:
    if s.target is None:
        return "no target set"
    if s.location:
        return f"connected at {s.location}"
    if s.drive_seen_ns:
        return f"not connected; last seen {ago(SystemClock().now_ns() - s.drive_seen_ns)} ago"
    return "not connected; never seen"


def routes(panel: Panel) -> list[BaseRoute]:
    """The routes of these pages."""

    def home(request: Request) -> Response:
        cfg, _ = panel.config()
        found = statuses(panel, cfg)
        now = SystemClock().now_ns()
        running = {i.job for i in panel.live() if i.state == "running"}
        rows = [{"s": s, "last": _last(s, now), "drive": _drive(s),
                 "running": s.name in running} for s in found]
        attention = [s for s in found if s.verdict.attention]
        return panel.page(request, "home.html", "Am I protected?", rows=rows,
                          attention=attention, config_path=panel.config_file)

    async def run_job(request: Request) -> Response:
        name = request.path_params["name"]
        cfg, err = panel.config()
        job = cfg.job(name)
        if err is not None or job is None:
            return panel.back("/", "bad", f"no job named {name!r} in {panel.config_file}")
        if panel.runner.busy(name):
            return panel.back("/", "warn", f"{name} is already running")
        if job.target is None:
            return panel.back("/", "bad", f"{name} has no target; set one in Settings")
        if await run_in_threadpool(locate, job.target) is None:
            return panel.back("/", "bad", f"the drive {job.target} of {name} is not "
                              "connected or not mounted: connect it and try again")
        panel.runner.start_job(name)
        what = "Backup" if job.kind == "backup" else "Image"
        return panel.back("/", "good", f"{what} of {name} started; its progress shows "
                          "below as it runs")

    async def eject_drive(request: Request) -> Response:
        form = await request.form()
        target = form_text(form, "target")
        back = form_text(form, "back") or "/drives"
        back = back if back in ("/", "/drives") else "/drives"
        try:
            done = await run_in_threadpool(eject, target)
        except TwofoldError as err:
            return panel.back(back, "bad", str(err))
        return panel.back(back, "good", f"{done.device} ({target}) is safe to unplug: "
                          f"{done.note}")

    def runs(request: Request) -> Response:
        cfg, _ = panel.config()
        state = State(panel.state_root)
        sets: list[dict[str, Any]] = []
        for conf in cfg.sets.values():
            location = locate(conf.target) if conf.target else None
            entry: dict[str, Any] = {"name": conf.name, "location": location, "runs": [],
                                     "error": None,
                                     "logs": [p.name for p in reversed(state.logs(conf.name))]}
            if location:
                try:
                    entry["runs"] = list(reversed(list_runs(location, conf.name)))
                except TwofoldError as err:
                    entry["error"] = str(err)
            sets.append(entry)
        images = [{"name": j.name, "logs": [p.name for p in reversed(state.logs(j.name))]}
                  for j in cfg.images.values()]
        return panel.page(request, "runs.html", "Runs", sets=sets, images=images)

    def log(request: Request) -> Response:
        job, name = request.path_params["job"], request.path_params["file"]
        logs = {p.name: p for p in State(panel.state_root).logs(job)}
        path: Path | None = logs.get(name)
        if path is None:
            return panel.back("/runs", "bad", f"no log {name} of {job}")
        text = path.read_text(encoding="utf-8", errors="replace")
        return panel.page(request, "log.html", f"Log of {job}, {name}", text=text)

    def drives(request: Request) -> Response:
        cfg, _ = panel.config()
        error = None
        found: list[Drive] = []
        try:
            found = [d for d in list_drives() if d.external and d.fstype]
        except (TwofoldError, OSError) as err:
            error = str(err)
        rows = []
        for d in found:
            users = [j.name for j in cfg.jobs() if _uses(j.target, d)]
            rows.append({"d": d, "jobs": users})
        return panel.page(request, "drives.html", "Drives", rows=rows, error=error)

    return [Route("/", home), Route("/jobs/{name}/run", run_job, methods=["POST"]),
            Route("/drives/eject", eject_drive, methods=["POST"]), Route("/runs", runs),
            Route("/runs/{job}/log/{file}", log), Route("/drives", drives)]


def _uses(target: str | None, d: Drive) -> bool:
    drive = drive_of(target)
    if drive is None:
        mp = d.mountpoint
        return bool(target and mp and (target == mp or target.startswith(mp.rstrip("/") + "/")))
    kind, value = drive
    return (d.uuid or "").lower() == value.lower() if kind == "uuid" else d.label == value
