"""What the panel starts: a job's run as the CLI's own `run-due --job NAME --force` in a
process of its own (so a timer's run and the panel's are the same thing, and the panel can
stop without stopping it), and short tasks (verify, restore, delete) in a thread. Both
publish through jobs/live.py, which the event stream reads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from twofold.core.errors import TwofoldError
from twofold.jobs.live import Cancelled, LiveProgress, listing

Work = Callable[[LiveProgress], str]  # returns the detail shown when it ends well


@dataclass
class Runner:
    """Starts and keeps track of what the panel runs."""

    state_root: Path
    config_path: Path | None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def busy(self, job: str) -> bool:
        """True while a run of `job` is going on (started by anyone)."""
        return any(i.job == job and i.running for i in listing(self.state_root))

    def start_job(self, job: str) -> None:
        """Run job `job` now, whether due or not, as `twofold run-due` does."""
        cmd = [sys.executable, "-m", "twofold"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += ["run-due", "--job", job, "--force"]
        env = {**os.environ, "TWOFOLD_STATE_DIR": str(self.state_root)}
        said = tempfile.TemporaryFile()  # noqa: SIM115 (the reaper closes it)
        child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=said,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(child)
        reaper = threading.Thread(target=self._reap, args=(job, child, said), daemon=True)
        self.threads.append(reaper)
        reaper.start()

    def _reap(self, job: str, child: subprocess.Popen[bytes], said: IO[bytes]) -> None:
        code = child.wait()  # a finished child must not stay a zombie that looks alive
        if not any(i.pid == child.pid for i in listing(self.state_root)):
            # It ended before a run began (the drive went away, a config error): say so
            # where the panel shows runs, in the CLI's own words.
            said.seek(0)
            lines = [ln.strip() for ln in said.read().decode(errors="replace").splitlines()]
            words = next((ln for ln in reversed(lines) if ln), f"exit code {code}")
            LiveProgress(self.state_root, job, "backup", f"Run {job}").done("failed", words)
        said.close()
        self.children.remove(child)

    def start_task(self, job: str, kind: str, title: str, work: Work) -> LiveProgress:
        """Run `work` in a thread, published as a live entry of `job`."""
        live = LiveProgress(self.state_root, job, kind, title)

        def run() -> None:
            try:
                detail = work(live)
            except TwofoldError as err:
                live.done("failed", err.message + (f" ({err.hint})" if err.hint else ""))
            except OSError as err:
                live.done("failed", f"{err.strerror or err}" +
                          (f": {err.filename}" if err.filename else ""))
            except Cancelled:
                live.done("cancelled", "stopped by the user")
            except Exception as err:  # shown, never a dead panel
                live.done("failed", f"{type(err).__name__}: {err}")
            else:
                partial = live.item.issues > 0
                live.done("partial" if partial else "ok", detail)

        thread = threading.Thread(target=run, name=f"task-{job}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return live

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the tasks and children started so far (tests, shutdown)."""
        for t in list(self.threads):
            t.join(timeout)
        for c in list(self.children):
            c.wait(timeout)
