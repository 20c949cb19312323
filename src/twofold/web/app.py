"""The panel's Starlette application: what every page shares (the config as read now, a
config error shown rather than raised, notes after an action, the live jobs) and the list
of routes, whose handlers live in one module per page."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from twofold.core.errors import ConfigError
from twofold.core.humanize import size, when
from twofold.jobs.config import Config, default_path, load
from twofold.jobs.live import LiveState, listing
from twofold.jobs.notices import Watch
from twofold.web.runner import Runner
from twofold.web.security import Guard, Secret

HERE = Path(__file__).parent
NAV = [("/", "Home"), ("/runs", "Runs"), ("/browse", "Browse and restore"),
       ("/images", "Images"), ("/drives", "Drives"), ("/settings", "Settings")]


@dataclass
class Panel:
    """One running panel: its config file, state folder, secret and what it started."""

    config_path: Path | None
    state_root: Path
    secret: Secret
    runner: Runner = field(init=False)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    watch: Watch = field(default_factory=Watch)
    templates: Jinja2Templates = field(init=False)
    stopping: threading.Event = field(default_factory=threading.Event)  # event streams end
    unlocked: dict[str, Any] = field(default_factory=dict)  # encrypted stores opened with a
    # passphrase typed in the Images page: folder -> its ObjectStore (memory only)

    def __post_init__(self) -> None:
        self.runner = Runner(self.state_root, self.config_path)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(size=size, when=when)

    @property
    def config_file(self) -> Path:
        """The config file pages read and Settings writes."""
        return self.config_path or default_path()

    def config(self) -> tuple[Config, ConfigError | None]:
        """The config as it is now; an empty one and the error when it cannot be read."""
        try:
            return load(self.config_path), None
        except ConfigError as err:
            return Config(self.config_file), err

    def live(self) -> list[LiveState]:
        """Live entries, running first."""
        items = listing(self.state_root)
        return sorted(items, key=lambda i: (i.state != "running", -i.started_ns))

    def note(self, level: str, text: str) -> str:
        """Keep a note for the next page; its key goes in the redirect."""
        key = secrets.token_hex(4)
        self.notes[key] = (level, text)
        if len(self.notes) > 50:
            self.notes.pop(next(iter(self.notes)))
        return key

    def back(self, path: str, level: str, text: str) -> Response:
        """Redirect (after a POST) to `path`, showing the note there."""
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{sep}note={self.note(level, text)}", status_code=303)

    def page(self, request: Request, template: str, title: str, **context: Any) -> Response:
        """A full page with what every page shows."""
        cfg_error = context.pop("config_error", None)
        if cfg_error is None:
            cfg_error = self.config()[1]
        key = request.query_params.get("note")
        notes = [self.notes[key]] if key in self.notes else []
        return self.templates.TemplateResponse(request, template, {
            "title": title, "nav": NAV, "here": request.url.path, "csrf": self.secret.csrf,
            "config_error": cfg_error, "notes": notes, "live": self.live(), **context})


def form_text(form: Any, key: str) -> str:
    """A text field of a submitted form ('' when absent)."""
    value = form.get(key)
    return value if isinstance(value, str) else ""


def create_app(panel: Panel, watch_every: float = 60.0) -> Starlette:
    """The ASGI application of `panel`, behind its guard."""
    from twofold.web import browse_pages, events, home_pages, image_pages, settings_pages

    routes: list[BaseRoute] = [
        *home_pages.routes(panel), *events.routes(panel), *browse_pages.routes(panel),
        *image_pages.routes(panel), *settings_pages.routes(panel),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(events.keep_watch(panel, watch_every))
        try:
            yield
        finally:
            task.cancel()

    app = Starlette(routes=routes, lifespan=lifespan if watch_every > 0 else None)
    app.add_middleware(Guard, secret=panel.secret)
    return app
