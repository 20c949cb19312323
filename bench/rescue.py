"""Rescue media: ISO build time with a cold and a warm apt cache, ISO size, and boot time to
the guided restore's first screen in QEMU (TCG; KVM aborts on the machines we measured on).

    sudo .venv/bin/python bench/rescue.py [--cold] [--boots 2] [--firmware bios uefi-secure]
    sudo .venv/bin/python bench/rescue.py --iso twofold-rescue.iso --boots 3   # boots only

Each boot is timed to the guide's first screen and to its first question (udev settled,
drives scanned), with its stages: firmware and GRUB, kernel and initramfs (the rescue
init prints the kernel's uptime as it starts), init and Python to the first screen, and
udev settle plus the drive scan.

--cold also builds with empty caches (downloads every .deb again). The warm build keeps
the apt cache and drops only the finished ISO, so everything but the downloads is timed.
The anchor: Debian's own live ISO measured here (207 MiB, 29 s to a shell under TCG).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from twofold.core.progress import NullProgress
from twofold.jobs.clock import SystemClock
from twofold.rescue.build import build, default_cache
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Hit, Vm, VmSpec

FIRST_SCREEN = r"twofold rescue [0-9.]+: guided restore"
ANCHOR = "Debian live (mmdebstrap + live-boot, python3): 207 MiB, 29 s to a shell (TCG, BIOS CD)"


def timed_build(out: Path, cache: Path) -> tuple[float, int, list[tuple[str, float]]]:
    """Seconds, ISO bytes and per-stage seconds of one build."""
    started = time.monotonic()
    r = build(str(out), None, cache, NullProgress(), SystemClock())
    return time.monotonic() - started, r.size, r.stages


STARTED = r"twofold rescue: system started ([0-9.]+) s after the kernel"
QUESTION = r"Store\?"


@dataclass
class Boot:
    """Seconds from QEMU's start to each mark of one boot."""

    kernel: float  # the kernel started (firmware and boot loader done)
    system: float  # the rescue system's init started (kernel, initramfs, live-boot done)
    screen: float  # the guide's first screen
    question: float  # its first question (udev settled, drives scanned)

    def stages(self) -> str:
        """The time of each stage."""
        return (f"firmware+GRUB {self.kernel:.1f}, kernel+initramfs "
                f"{self.system - self.kernel:.1f}, init+Python to the first screen "
                f"{self.screen - self.system:.1f}, udev settle+drive scan "
                f"{self.question - self.screen:.1f}")


def boot_seconds(iso: Path, firmware: str, medium: str, work: Path) -> Boot:
    """The marks of one boot to the guided restore's first question, on the serial line."""
    spec = VmSpec([Drive(iso, medium, snapshot=medium == "usb")],
                  firmware=firmware, memory_mb=1024, accel="tcg")
    marks: list[Hit] = []
    with Vm(spec, work) as vm:
        vm.start()
        for mark in (STARTED, FIRST_SCREEN, QUESTION):
            hit = vm.wait_for_text({"mark": mark, **FAIL_PATTERNS}, 600)
            if hit is None or hit.name != "mark":
                raise SystemExit(f"{firmware}/{medium}: no {mark!r}:\n"
                                 + vm.serial_text()[-2000:])
            marks.append(hit)
    found = re.search(STARTED, marks[0].text)
    after_kernel = float(found.group(1)) if found else 0.0
    return Boot(marks[0].seconds - after_kernel, marks[0].seconds, marks[1].seconds,
                marks[2].seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also build with empty caches")
    ap.add_argument("--boots", type=int, default=2, help="boots per firmware (median)")
    ap.add_argument("--firmware", nargs="*", default=["bios", "uefi", "uefi-secure"])
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--iso", type=Path, help="boot this ISO only (no builds)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rescue-"))
    iso = args.iso or work / "twofold-rescue.iso"
    rows = [("load average (1, 5, 15 min) at the start", _load())]
    if not args.iso:
        rows += _builds(iso, args.cache, args.cold, work)
    size = iso.stat().st_size
    rows.append(("ISO size", f"{size / (1 << 20):.0f} MiB ({size:,} bytes); goal <= 250 MB"))
    for fw, medium in [*((fw, "cdrom") for fw in args.firmware), ("bios", "usb")]:
        boots = sorted((boot_seconds(iso, fw, medium, work / f"vm-{fw}-{medium}-{i}")
                        for i in range(args.boots)), key=lambda b: b.question)
        mid = boots[len(boots) // 2]
        rows.append((f"boot to the guide, {fw} {medium} (TCG)",
                     f"first screen {mid.screen:.1f} s, first question {mid.question:.1f} s "
                     f"(median of {len(boots)}: {[round(b.question, 1) for b in boots]}); "
                     "goal <= 40 s"))
        rows.append(("  its stages (s)", mid.stages()))
        rows.append(("  load average after it", _load()))
    rows.append(("anchor", ANCHOR))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    shutil.rmtree(work, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _builds(iso: Path, cache: Path, cold: bool, work: Path) -> list[tuple[str, str]]:
    """Build with empty caches (with `cold`), with the apt cache only, and unchanged."""
    rows = []
    if cold:
        cold_cache = work / "cold-cache"
        secs, _, stages = timed_build(iso, cold_cache)
        rows.append(("build, cold apt cache", f"{secs:.0f} s ({_stages(stages)})"))
        shutil.rmtree(cold_cache, ignore_errors=True)
    for old in (cache / "isos").glob("twofold-rescue-*.iso"):
        old.unlink()  # warm: the .debs stay, the ISO is built again
    secs, _, stages = timed_build(iso, cache)
    rows.append(("build, warm apt cache", f"{secs:.0f} s ({_stages(stages)})"))
    secs, _, _ = timed_build(iso, cache)
    rows.append(("rebuild, unchanged (cache hit)", f"{secs:.1f} s"))
    return rows


def _stages(stages: list[tuple[str, float]]) -> str:
    return ", ".join(f"{n} {s:.0f} s" for n, s in stages)


if __name__ == "__main__":
    main()
