"""Browse and restore: a set's folders as of any run, a file's versions, download one
file, restore a file or folder to its place (what is there kept aside) or elsewhere."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from twofold.backup.inspect import list_runs
from twofold.core.asof import resolve_as_of
from twofold.core.errors import TwofoldError, UsageError
from twofold.jobs.browse import clean_relative, list_folder, restore_item, version_file, versions
from twofold.jobs.drives import locate
from twofold.jobs.live import LiveProgress
from twofold.sets.catalog import Run
from twofold.web.app import Panel, form_text

RESTORABLE = ("complete",)
PAGE = 200  # entries a page shows; a browser draws 10,000 table rows in seconds


def _tz() -> Any:
    return datetime.now().astimezone().tzinfo


def _where(panel: Panel, set_name: str) -> str:
    cfg, _ = panel.config()
    conf = cfg.sets.get(set_name)
    if conf is None:
        raise UsageError(f"no set named {set_name!r} in the config")
    location = locate(conf.target) if conf.target else None
    if location is None:
        raise UsageError(f"the drive of set {set_name} ({conf.target}) is not connected",
                         "connect it and reload the page")
    return location


def _run(runs: list[Run], spec: str | None) -> Run:
    rid = resolve_as_of([(r.id, r.finished_ns, r.state) for r in runs], spec or None, _tz())
    return next(r for r in runs if r.id == rid)


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [(p, "/".join(parts[:n + 1])) for n, p in enumerate(parts)]


def routes(panel: Panel) -> list[BaseRoute]:
    """The routes of Browse and restore."""

    def browse(request: Request) -> Response:
        q = request.query_params
        cfg, _ = panel.config()
        sets = list(cfg.sets)
        set_name = q.get("set") or (sets[0] if sets else "")
        context: dict[str, Any] = {"sets": sets, "set_name": set_name, "items": [],
                                   "runs": [], "run": None, "path": "", "error": None}
        if not set_name:
            return panel.page(request, "browse.html", "Browse and restore", **context)
        try:
            location = _where(panel, set_name)
            runs = [r for r in list_runs(location, set_name) if r.state in RESTORABLE]
            spec = q.get("asof") or q.get("run")
            run = _run(runs, spec)
            path = clean_relative(q.get("path", ""))
            items = list_folder(location, set_name, path, run.id)
            pages = max(1, -(-len(items) // PAGE))
            page = min(max(1, int(q.get("page", "1") or 1)), pages)
            context.update(runs=list(reversed(runs)), run=run, path=path,
                           crumbs=_crumbs(path), total=len(items), page=page, pages=pages,
                           page_size=PAGE,
                           first=(page - 1) * PAGE + 1,
                           items=items[(page - 1) * PAGE:page * PAGE])
        except TwofoldError as err:
            context["error"] = err
        except ValueError:
            context["error"] = UsageError("the page number must be a number")
        return panel.page(request, "browse.html", "Browse and restore", **context)

    def history(request: Request) -> Response:
        q = request.query_params
        set_name, path = q.get("set", ""), q.get("path", "")
        context: dict[str, Any] = {"set_name": set_name, "path": path, "versions": [],
                                   "error": None}
        try:
            context["versions"] = list(reversed(versions(_where(panel, set_name), set_name,
                                                         path)))
        except TwofoldError as err:
            context["error"] = err
        return panel.page(request, "versions.html", f"Versions of {path}", **context)

    def download(request: Request) -> Response:
        q = request.query_params
        set_name, path = q.get("set", ""), q.get("path", "")
        try:
            file = version_file(_where(panel, set_name), set_name, path, int(q.get("run", 0)))
        except (TwofoldError, ValueError) as err:
            return panel.back("/browse", "bad", str(err))
        return FileResponse(file, filename=os.path.basename(path),
                            content_disposition_type="attachment")

    def restore_form(request: Request) -> Response:
        q = request.query_params
        return panel.page(request, "restore.html", f"Restore {q.get('path', '')}",
                          set_name=q.get("set", ""), path=q.get("path", ""),
                          run=q.get("run", ""), home=os.path.expanduser("~"))

    async def restore(request: Request) -> Response:
        form = await request.form()
        set_name, path = form_text(form, "set"), form_text(form, "path")
        spec, where = form_text(form, "run"), form_text(form, "where")
        here = "/browse?" + urlencode({"set": set_name, "run": spec,
                                       "path": os.path.dirname(path)})
        try:
            rel = clean_relative(path)
            folder = None if where == "place" else form_text(form, "folder").strip()
            if folder == "":
                raise UsageError("give the folder to restore into")
            location = _where(panel, set_name)
            run = _run(list_runs(location, set_name), spec)
        except TwofoldError as err:
            return panel.back(here, "bad", str(err))

        def work(live: LiveProgress) -> str:
            result, out, kept = restore_item(location, set_name, run, rel, folder, live, _tz())
            aside = f"; what was there is kept as {kept}" if kept else ""
            return f"{rel} restored as of run {result.run_id} to {out}{aside}"

        panel.runner.start_task(f"restore-{set_name}", "restore", f"Restore {rel}", work)
        return panel.back(here, "good", f"Restoring {rel} as of run {run.id}; the result "
                          "shows under Running and just finished")

    return [Route("/browse", browse), Route("/versions", history),
            Route("/download", download), Route("/restore", restore_form),
            Route("/restore", restore, methods=["POST"])]
