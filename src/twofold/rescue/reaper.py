"""Cleans up after a `rescue build` that dies, kill -9 included: a small process started
beside the build, in its own session, that reads on a pipe what the build has under way
(each step's process group, each temp file and work folder). When the pipe closes without
the word "done", the build is gone: the reaper kills those steps (mmdebstrap and its dpkg,
mksquashfs, xorriso would run on otherwise), unmounts what they left mounted and removes
the temp paths, so no half ISO, work tree or mount stays behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GROUP_WAIT_S = 60.0  # how long killed steps get to leave before their files are removed


class Reaper:
    """The build's side: starts the reaper process and tells it what to clean."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twofold.rescue.reaper"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            text=True)

    def tell(self, kind: str, value: object) -> None:
        """One fact: ("group", pid), ("ungroup", pid) or ("path", path)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps([kind, value]) + "\n")
        self.proc.stdin.flush()

    def path(self, path: Path) -> Path:
        """Remove `path` (a file or a work folder) if the build dies; returns it."""
        self.tell("path", str(path))
        return path

    def done(self) -> None:
        """The build ended by itself (and cleaned up): the reaper leaves without work."""
        try:
            self.tell("done", None)
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # the reaper is gone already; the build cleaned up itself
        self.proc.wait()


def _members(group: int) -> list[int]:
    """Living (not zombie) processes of a process group."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(entry.name))
    return found


def kill_groups(groups: set[int]) -> None:
    """SIGKILL every process of these groups and wait (a while) until they are gone."""
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + GROUP_WAIT_S
    while any(_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.2)


def clean(groups: set[int], paths: list[str]) -> None:
    """Kill the steps, then unmount below and remove each temp path, newest first."""
    from twofold.rescue.system import remove_tree

    kill_groups(groups)
    for path in reversed(paths):
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            remove_tree(p)
        else:
            p.unlink(missing_ok=True)


def main() -> None:
    """Read what the build tells until it says done or dies; clean up if it died."""
    groups: set[int] = set()
    paths: list[str] = []
    for line in sys.stdin:
        try:
            kind, value = json.loads(line)
        except ValueError:
            break  # a torn last line: the build died while writing it
        if kind == "done":
            return
        if kind == "group":
            groups.add(int(value))
        elif kind == "ungroup":
            groups.discard(int(value))
        elif kind == "path":
            paths.append(str(value))
    clean(groups, paths)


if __name__ == "__main__":
    main()
