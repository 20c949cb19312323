"""The guided restore of the rescue system: plain text questions that work alike on a
screen, a terminal and a serial console, over the image engine (and an unattended mode
driven by the kernel command line or an answer file)."""

from __future__ import annotations

import fcntl
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from twofold import __version__
from twofold.core.errors import TwofoldError, UsageError
from twofold.core.humanize import size, when
from twofold.core.models import Issue
from twofold.jobs import rescue_scan as scan
from twofold.jobs.clock import SystemClock

LOCK = "/run/twofold/guide.lock"


class Console(Protocol):
    """Where the guide talks and listens."""

    def say(self, text: str) -> None: ...

    def ask(self, prompt: str) -> str: ...


class PlainConsole:
    """stdin and stdout; EOF on stdin ends the guide."""

    def say(self, text: str) -> None:
        """Print a line at once (a serial console shows it as it comes)."""
        print(text, flush=True)

    def ask(self, prompt: str) -> str:
        """One line typed by the user."""
        return input(prompt + " ").strip()


class LineProgress:
    """A Progress sink that prints a line per 10 % (no cursor tricks, for serial lines)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.name, self.total, self.done, self.shown = "", 0, 0, -1

    def phase(self, name: str, total_files: int | None = None,
              total_bytes: int | None = None) -> None:
        """A new stage."""
        self.name, self.total, self.done, self.shown = name, total_bytes or 0, 0, -1
        self.console.say(f"  {name}...")

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        """Print the share done when it passes a tenth."""
        self.done += nbytes
        if self.total:
            tenth = self.done * 10 // self.total
            if tenth > self.shown:
                self.shown = tenth
                self.console.say(f"  {self.name} {tenth * 10:3d} %  {size(self.done)} of "
                                 f"{size(self.total)}")

    def issue(self, issue: Issue) -> None:
        """Show it."""
        self.console.say(f"  note: {issue.message}")

    def finish(self) -> None:
        """Nothing to clear."""


@dataclass
class Answers:
    """Unattended mode: what to restore where, without questions."""

    store: str = "auto"  # auto (the first found), a device, a folder or a URL
    image: str = "latest"
    disk: str = ""
    yes: bool = False
    after: str = "shell"  # reboot, poweroff or shell

    @classmethod
    def parse(cls, values: dict[str, object]) -> Answers:
        """From kernel options or an answer file; UsageError on unknown keys."""
        known = {"store", "image", "disk", "yes", "after"}
        wrong = sorted(set(values) - known - {"answers", "shell"})
        if wrong:
            raise UsageError(f"unknown unattended setting(s): {', '.join(wrong)}",
                             "use store, image, disk, yes and after")
        a = cls()
        a.store = str(values.get("store", a.store))
        a.image = str(values.get("image", a.image))
        a.disk = str(values.get("disk", ""))
        a.yes = str(values.get("yes", "0")).lower() in ("1", "true", "yes")
        a.after = str(values.get("after", a.after))
        if a.after not in ("reboot", "poweroff", "shell"):
            raise UsageError(f"bad after={a.after}", "use reboot, poweroff or shell")
        return a


def make_guide(boot: bool, answer_file: str | None = None,
               only: list[str] | None = None) -> Guide:
    """The guide on stdin and stdout; with `boot`, as the rescue system's start screen,
    taking unattended settings from the kernel command line's twofold.* options."""
    cmdline = scan.kernel_options() if boot else {}
    return Guide(PlainConsole(), boot=boot, only=only,
                 answers=answers_from(cmdline, answer_file or cmdline.get("answers")))


def answers_from(cmdline: dict[str, str], answer_file: str | None) -> Answers | None:
    """Unattended answers from an answer file (TOML) or the kernel command line."""
    if answer_file:
        try:
            with open(answer_file, "rb") as f:
                return Answers.parse(tomllib.load(f))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UsageError(f"cannot read the answer file {answer_file}: {e}",
                             'it is TOML: store = "...", image = "...", disk = "..."'
                             ) from None
    if "disk" in cmdline:
        return Answers.parse(dict(cmdline))
    return None


@dataclass
class Guide:
    """One run of the guided restore."""

    console: Console
    base: Path = field(default_factory=lambda: scan.MOUNT_BASE / str(os.getpid()))
    only: list[str] | None = None
    boot: bool = False  # running as the rescue system: offer reboot and power off
    answers: Answers | None = None
    stores: list[scan.FoundStore] = field(default_factory=list)
    power: Callable[[str], None] = scan.power
    held: bool = False  # this guide holds the restore lock

    def run(self) -> int:
        """The guide from the first screen to the end; the exit code."""
        say = self.console.say
        say(f"twofold rescue {__version__}: guided restore")
        if self.boot:
            say(f"firmware: {scan.firmware()}")
        say("Answer with the number or letter shown; Enter takes the [default].")
        if self.boot:
            scan.settle()  # the console came up while udev still loads drivers
        try:
            if self.answers is not None and self.boot and not scan.on_main_console():
                say(f"An unattended restore runs on {scan.main_console()}; this console "
                    "shows a shell.")
                return 0
            if self.answers is not None:
                return self._unattended(self.answers)
            return self._menu()
        except EOFError:
            return 0
        finally:
            scan.release(self.stores)

    def _rescan(self) -> None:
        scan.release(self.stores)
        self.console.say("Looking for drives with twofold images or backups...")
        self.stores = scan.scan(self.base, self.only)

    def _menu(self) -> int:
        from twofold.cli.rescue_steps import restore_image_steps, restore_set_steps

        self._rescan()
        while True:
            say = self.console.say
            if not self.stores:
                say("No store on any drive. Connect the drive with twofold-images/ and "
                    "choose r to look again, or n to type a network store or folder.")
            for i, s in enumerate(self.stores, 1):
                say(f"  {i}) {s.title()}")
            say("  r) look again   n) network store or folder   q) quit")
            pick = self.console.ask("Store?" + (" [1]" if self.stores else ""))
            if pick == "" and self.stores:
                pick = "1"
            if pick == "q":
                return self._leave()
            if pick == "r":
                self._rescan()
                continue
            if pick == "n":
                typed = self._typed_store()
                if typed is None:
                    continue
                store = typed
            elif pick.isdigit() and 1 <= int(pick) <= len(self.stores):
                store = self.stores[int(pick) - 1]
            else:
                say(f"'{pick}' is not one of the choices")
                continue
            try:
                if store.sets and (not store.images or self.console.ask(
                        "Restore i) a disk image or f) backed-up folders? [i]") == "f"):
                    done = restore_set_steps(self, store)
                else:
                    done = restore_image_steps(self, store)
            except TwofoldError as e:
                say(f"error: {e.message}")
                if e.hint:
                    say(f"  {e.hint}")
                continue
            if done:
                return self._leave()

    def _typed_store(self) -> scan.FoundStore | None:
        text = self.console.ask("Store (a folder, sftp://user@host/path or "
                                "s3://bucket/prefix; empty: back)?")
        if not text:
            return None
        if "://" in text:
            if self.boot:
                scan.network_up()
            return scan.FoundStore(text, about="network store", images=True)
        if not os.path.isdir(text):
            self.console.say(f"{text} is not a folder")
            return None
        return scan.look(scan.FoundStore(text))

    def _leave(self) -> int:
        if not self.boot:
            return 0
        pick = self.console.ask("r) reboot   p) power off   s) shell [s]")
        if pick in ("r", "p"):
            scan.release(self.stores)
            self.power("reboot" if pick == "r" else "poweroff")
        return 0

    @contextmanager
    def restoring(self) -> Iterator[bool]:
        """The restore lock (one console restores at a time): yields False when another
        console holds it."""
        if self.held:
            yield True
            return
        os.makedirs(os.path.dirname(LOCK), exist_ok=True)
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            yield False
            return
        self.held = True
        try:
            yield True
        finally:
            self.held = False
            os.close(fd)

    def _unattended(self, a: Answers) -> int:
        from twofold.cli.rescue_steps import unattended

        with self.restoring() as mine:
            if not mine:
                self.console.say("An unattended restore runs on another console.")
                return 0
            try:
                code = unattended(self, a)
            except TwofoldError as e:
                self.console.say(f"error: {e.message}")
                if e.hint:
                    self.console.say(f"  {e.hint}")
                code = int(e.exit_code)
        self.console.say(f"twofold rescue: unattended restore finished with exit code {code}")
        if self.boot and a.after in ("reboot", "poweroff"):
            scan.release(self.stores)
            self.power(a.after)
        return code


def image_line(i: int, name: str, created_ns: int, host: str, source: str,
               nbytes: int) -> str:
    """One image in the list: name, date, host (when its manifest names one), source and
    size."""
    where = f"{host}:{source}" if host else source
    return f"  {i}) {name}   {when(created_ns)}   from {where}   {size(nbytes)}"


CLOCK = SystemClock()
