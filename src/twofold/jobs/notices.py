"""Desktop notices while a front end keeps watch: a job that fails or becomes overdue,
and a due job's drive plugged in, each said once when it happens (not at every look);
nothing is sent when there is no desktop session."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from twofold.jobs.live import LiveState
from twofold.jobs.status import JobStatus, desktop_present

Send = Callable[[str, str], bool]


def send_desktop(title: str, body: str) -> bool:
    """One freedesktop notification through notify-send; False when none was shown."""
    if not desktop_present():
        return False
    r = subprocess.run(["notify-send", "--app-name=twofold", title, body],
                       capture_output=True, check=False, timeout=30)
    return r.returncode == 0


@dataclass
class Watch:
    """Remembers what was last seen, so that each change is told once."""

    send: Send = send_desktop
    attention: dict[str, str] = field(default_factory=dict)  # job: state last told
    connected: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)  # live ids already told
    primed: bool = False

    def look(self, statuses: list[JobStatus], live: list[LiveState]) -> list[tuple[str, str]]:
        """The notices this look brings (title, body), each also sent. The first look
        only learns what is there, except for failures and overdue jobs."""
        notices: list[tuple[str, str]] = []
        for s in statuses:
            state = s.verdict.state if s.verdict.attention else ""
            if state and self.attention.get(s.name) != state:
                notices.append((f"twofold: {s.name} is {state}", s.verdict.reason))
            self.attention[s.name] = state
            if s.location is not None:
                if self.primed and s.name not in self.connected and s.verdict.due:
                    notices.append((f"twofold: the drive of {s.name} is connected",
                                    f"{s.name} is due: {s.verdict.reason}"))
                self.connected.add(s.name)
            else:
                self.connected.discard(s.name)
        for item in live:
            if item.state == "running" or item.id in self.finished:
                continue
            self.finished.add(item.id)
            if self.primed and item.state == "failed":
                notices.append((f"twofold: {item.title} failed", item.detail))
        self.primed = True
        for title, body in notices:
            self.send(title, body)
        return notices
