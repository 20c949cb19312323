"""`rescue build`: the stages of the rescue ISO, a cache keyed by its content, and an
output that appears whole or not at all (a reaper process cleans up if the build is
killed)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from twofold import __version__
from twofold.core.clock import Clock
from twofold.core.holders import pid_alive
from twofold.core.progress import Progress
from twofold.rescue import host, iso, recipe, system
from twofold.rescue.reaper import Reaper

BUILD_CODE = ("host.py", "system.py", "iso.py", "build.py")
KEEP = 3  # ISOs kept in the cache


@dataclass
class BuildResult:
    """What `rescue build` made."""

    path: str
    key: str
    size: int
    cached: bool
    seconds: float = 0.0
    stages: list[tuple[str, float]] = field(default_factory=list)


def default_cache() -> Path:
    """/var/cache/twofold/rescue as root, else ~/.cache/twofold/rescue."""
    if os.geteuid() == 0:
        return Path("/var/cache/twofold/rescue")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "twofold/rescue"


def _code_text() -> str:
    here = Path(__file__).parent
    return "".join((here / name).read_text() for name in BUILD_CODE)


def _clear_stale(folder: Path, prefix: str) -> None:
    """Remove temp files and work folders left by killed builds (their pid is gone)."""
    if not folder.is_dir():
        return
    for p in folder.glob(prefix + "*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            if p.is_dir():
                system.remove_tree(p)
            else:
                p.unlink(missing_ok=True)


def _publish(src: Path, out: Path, reaper: Reaper) -> None:
    """Copy `src` to `out` through a temp name in the same folder and a rename."""
    tmp = reaper.path(out.with_name(f".{out.name}.tmp-{os.getpid()}"))
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


class _Stages:
    """Times each stage and reports it to the progress sink."""

    def __init__(self, progress: Progress, clock: Clock, result: BuildResult) -> None:
        self.progress, self.clock, self.result = progress, clock, result
        self.name: str | None = None
        self.started = 0

    def start(self, name: str) -> None:
        self.stop()
        self.name, self.started = name, self.clock.now_ns()
        self.progress.phase(name)

    def stop(self) -> None:
        if self.name is not None:
            self.result.stages.append((self.name, (self.clock.now_ns() - self.started) / 1e9))
            self.name = None


def build(out: str, source: str | None, cache: Path | None, progress: Progress,
          clock: Clock) -> BuildResult:
    """Build (or take from the cache) the rescue ISO and publish it at `out`."""
    begun = clock.now_ns()
    host.require_tools()
    checkout = host.checkout(source)
    cache = cache or default_cache()
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(out_path.parent, f".{out_path.name}.tmp-")
    for sub in ("work", "isos"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    _clear_stale(cache / "work", "build-")
    _clear_stale(cache / "isos", ".tmp-")
    result = BuildResult(str(out_path), "", 0, False)
    stages = _Stages(progress, clock, result)
    reaper = Reaper()  # cleans up if this process dies (kill -9 included)
    host.STEP_WATCHERS.append(reaper.tell)
    work = reaper.path(cache / "work" / f"build-{os.getpid()}")
    try:
        stages.start("wheels")
        wheels = work / "wheels"
        host.build_wheels(checkout, wheels)
        codename = host.release()
        sources = host.sources(codename)
        digests = sorted(f"{w.name}={host.wheel_digest(w)}" for w in wheels.glob("*.whl"))
        result.key = recipe.key(codename, *sources, *digests, _code_text())
        cached = cache / "isos" / f"twofold-rescue-{result.key}.iso"
        if cached.exists():
            result.cached = True
        else:
            _make(work, wheels, codename, sources, cache, cached, stages, reaper)
        stages.start("publish")
        _publish(cached, out_path, reaper)
        stages.stop()
    finally:
        system.remove_tree(work)
        host.STEP_WATCHERS.remove(reaper.tell)
        reaper.done()
    result.size = out_path.stat().st_size
    result.seconds = (clock.now_ns() - begun) / 1e9
    return result


def _make(work: Path, wheels: Path, codename: str, sources: list[str], cache: Path,
          cached: Path, stages: _Stages, reaper: Reaper) -> None:
    root, tree = work / "root", work / "iso"
    stages.start("packages")
    system.bootstrap(root, codename, sources, cache / "apt", work / "conf")
    stages.start("twofold")
    system.install_twofold(root, wheels)
    system.customize(root)
    stages.start("squashfs")
    (tree / "live").mkdir(parents=True)
    vmlinuz, initrd = system.kernel_files(root)
    shutil.copy(vmlinuz, tree / "live/vmlinuz")
    shutil.copy(initrd, tree / "live/initrd.img")
    system.squash(root, tree / "live/filesystem.squashfs")
    system.remove_tree(root)
    stages.start("boot")
    esp = iso.boot_files(tree, __version__)
    stages.start("iso")
    tmp = reaper.path(cached.with_name(f".tmp-{cached.name}-{os.getpid()}"))
    try:
        iso.make_iso(tree, esp, tmp)
        os.replace(tmp, cached)
    finally:
        tmp.unlink(missing_ok=True)
    kept = sorted(cached.parent.glob("twofold-rescue-*.iso"), key=lambda p: p.stat().st_mtime)
    for old in kept[:-KEEP]:  # the newest few stay (other checkouts, other branches)
        old.unlink(missing_ok=True)
