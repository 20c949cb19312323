"""Settings: each set's folders, target, excludes, schedule and retention, each image job's
schedule, the excludes of every set, and the whole file as text; written into the same
TOML file with its comments kept (jobs/settings.py), checked before it is saved."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from twofold.core.errors import ConfigError
from twofold.jobs.settings import edit_exclude, edit_job, read_text, save
from twofold.web.app import Panel, form_text

SET_FIELDS = ("sources", "target", "exclude", "schedule", "keep_daily", "keep_weekly",
              "keep_monthly")
IMAGE_FIELDS = ("source", "target", "schedule", "compression")
NAME = re.compile(r"[A-Za-z0-9_-]+")


def routes(panel: Panel) -> list[BaseRoute]:
    """The routes of Settings."""

    def settings(request: Request, text: str | None = None,
                 error: ConfigError | None = None) -> Response:
        cfg, cfg_error = panel.config()
        raw = text if text is not None else read_text(panel.config_file)
        return panel.page(request, "settings.html", "Settings", cfg=cfg, raw=raw, lines=lines,
                          path=panel.config_file, save_error=error,
                          config_error=error or cfg_error)

    async def save_job(request: Request) -> Response:
        form = await request.form()
        kind, name = form_text(form, "kind"), form_text(form, "name").strip()
        fields = SET_FIELDS if kind == "sets" else IMAGE_FIELDS
        values: dict[str, str] = {k: form_text(form, k) for k in fields if k in form}
        if kind == "sets":
            values["default_excludes"] = "true" if form.get("default_excludes") else "false"
        text = read_text(panel.config_file)
        try:
            if not NAME.fullmatch(name):
                raise ConfigError(f"{name!r} cannot name a job",
                                  "use letters, digits, '-' and '_'")
            save(panel.config_file, edit_job(text, kind, name, values))
        except ConfigError as err:
            return settings(request, None, err)
        what = "set" if kind == "sets" else "image job"
        return panel.back("/settings", "good", f"Saved {what} {name} to {panel.config_file}")

    async def save_exclude(request: Request) -> Response:
        form = await request.form()
        try:
            save(panel.config_file, edit_exclude(read_text(panel.config_file),
                                                 form_text(form, "exclude")))
        except ConfigError as err:
            return settings(request, None, err)
        return panel.back("/settings", "good", "Saved what every set leaves out")

    async def save_raw(request: Request) -> Response:
        form = await request.form()
        text = form_text(form, "text").replace("\r\n", "\n")
        try:
            save(panel.config_file, text)
        except ConfigError as err:
            return settings(request, text, err)
        return panel.back("/settings", "good", f"Saved {panel.config_file}")

    def page(request: Request) -> Response:
        return settings(request)

    return [Route("/settings", page), Route("/settings/job", save_job, methods=["POST"]),
            Route("/settings/exclude", save_exclude, methods=["POST"]),
            Route("/settings/raw", save_raw, methods=["POST"])]


def lines(values: Any) -> str:
    """A list as one item per line, for a text area."""
    return "\n".join(str(v) for v in values or [])
