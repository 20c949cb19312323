"""Child process for the backup tests: one backup run, optionally SIGKILLed at its Nth I/O call.

Usage: python childrun.py '<json>' with keys sources, target, set, start_ns, and optionally
cli (run the `twofold backup` command in this process rather than the Python API; it
reads the system clock), kill_at (0 or absent: never), log (a file that receives one line
per counted call, or the line of the fatal call), batch_files and batch_bytes (the
engine's batch limits, made small so that a run of a few hundred files spans many
batches), stop (at call N, stop with SIGSTOP instead, for a test to look at the run
half-way), thread (start an idle thread first, so that helper processes come from a fork
server, as under the CLI's progress bar). Prints the run's result as JSON.

No production code has hooks: this process wraps os.rename, os.replace, os.link,
os.symlink, os.write, os.unlink, os.mkdir, the renames that never replace (ops.rename_new,
renameat2 through ctypes, counted as "rename") and the catalog's commits from outside,
counts the calls, and kills itself before call N.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import twofold.backup.apply as apply_mod
import twofold.backup.ops as ops_mod
from twofold.backup.engine import BackupOptions, backup
from twofold.core.errors import TwofoldError
from twofold.core.progress import NullProgress
from twofold.sets.catalog import Catalog

WRAPPED = ("rename", "replace", "link", "symlink", "write", "unlink", "mkdir")


class Clock:
    """A fake clock, as in the tests."""

    def __init__(self, start_ns: int) -> None:
        self.t = start_ns

    def now_ns(self) -> int:
        t = self.t
        self.t += 60 * 10**9
        return t


def main() -> int:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    kill_at = int(cfg.get("kill_at", 0))
    stop = bool(cfg.get("stop"))  # at call kill_at, stop (SIGSTOP) rather than die
    if cfg.get("thread"):  # a second thread: helper processes then come from a fork server
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    real_write = os.write
    log_fd = os.open(cfg.get("log", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lock = threading.Lock()
    count = 0
    seen: list[str] = []

    main_pid = os.getpid()

    def tick(kind: str) -> None:
        nonlocal count
        if os.getpid() != main_pid:
            return  # copy workers only write .tmp/; the run itself is what gets killed
        with lock:  # held while dying, so no other thread gets past its next call
            count += 1
            if kill_at == 0:
                seen.append(kind)
            elif count == kill_at:
                real_write(log_fd, f"{count} {kind}\n".encode())
                os.kill(os.getpid(), signal.SIGSTOP if stop else signal.SIGKILL)

    def wrap(name: str, module: Any = os, kind: str = "") -> None:
        real: Callable[..., Any] = getattr(module, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            tick(kind or name)
            return real(*args, **kwargs)

        setattr(module, name, counted)

    real_transaction = Catalog.transaction

    @contextmanager
    def transaction(self: Catalog) -> Iterator[None]:
        with real_transaction(self):
            yield
            tick("commit")  # everything done in the transaction, COMMIT not yet
        tick("committed")

    apply_mod.BATCH_FILES = int(cfg.get("batch_files", apply_mod.BATCH_FILES))
    apply_mod.BATCH_BYTES = int(cfg.get("batch_bytes", apply_mod.BATCH_BYTES))
    for name in WRAPPED:
        wrap(name)
    wrap("rename_new", ops_mod, "rename")
    Catalog.transaction = transaction  # type: ignore[method-assign]

    try:
        if cfg.get("cli"):
            code = _cli(cfg)
        else:
            result = backup(cfg["sources"], cfg["target"], cfg["set"], BackupOptions(),
                            Clock(int(cfg["start_ns"])), NullProgress())
            print(json.dumps({"run_id": result.run_id, "stats": result.stats.as_dict(),
                              "issues": [[i.kind, os.fsdecode(i.path), i.message]
                                         for i in result.stats.issues]}))
            code = 0
    except TwofoldError as err:
        print(json.dumps({"error": type(err).__name__, "message": str(err)}))
        code = 1
    if kill_at == 0:
        real_write(log_fd, "".join(f"{k}\n" for k in seen).encode())
    os.close(log_fd)
    return code


def _cli(cfg: dict[str, Any]) -> int:
    """`twofold backup SRC... --to TARGET --set NAME --json`, in this process."""
    from twofold.cli.app import main as cli_main

    sys.argv = ["twofold", "backup", *cfg["sources"], "--to", cfg["target"],
                "--set", cfg["set"], "--json"]
    try:
        cli_main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
