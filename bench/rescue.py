"""Rescue media: ISO build time with a cold and a warm apt cache, ISO size, and boot time to
the guided restore's first screen in QEMU (TCG; KVM aborts on the machines we measured on).

    sudo .venv/bin/python bench/rescue.py [--cold] [--boots 2] [--firmware bios uefi-secure]

--cold also builds with empty caches (downloads every .deb again). The warm build keeps
the apt cache and drops only the finished ISO, so everything but the downloads is timed.
The anchor: Debian's own live ISO measured here (207 MiB, 29 s to a shell under TCG).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from twofold.core.progress import NullProgress
from twofold.jobs.clock import SystemClock
from twofold.rescue.build import build, default_cache
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec

FIRST_SCREEN = r"twofold rescue [0-9.]+: guided restore"
ANCHOR = "Debian live (mmdebstrap + live-boot, python3): 207 MiB, 29 s to a shell (TCG, BIOS CD)"


def timed_build(out: Path, cache: Path) -> tuple[float, int, list[tuple[str, float]]]:
    """Seconds, ISO bytes and per-stage seconds of one build."""
    started = time.monotonic()
    r = build(str(out), None, cache, NullProgress(), SystemClock())
    return time.monotonic() - started, r.size, r.stages


def boot_seconds(iso: Path, firmware: str, medium: str, work: Path) -> float:
    """Seconds from QEMU's start to the guided restore's first screen on the serial line."""
    spec = VmSpec([Drive(iso, medium, snapshot=medium == "usb")],
                  firmware=firmware, memory_mb=1024, accel="tcg")
    with Vm(spec, work) as vm:
        vm.start()
        hit = vm.wait_for_text({"screen": FIRST_SCREEN, **FAIL_PATTERNS}, 600)
        if hit is None or hit.name != "screen":
            raise SystemExit(f"{firmware}/{medium}: no first screen:\n"
                             + vm.serial_text()[-2000:])
        return hit.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also build with empty caches")
    ap.add_argument("--boots", type=int, default=2, help="boots per firmware (median)")
    ap.add_argument("--firmware", nargs="*", default=["bios", "uefi", "uefi-secure"])
    ap.add_argument("--cache", type=Path, default=default_cache())
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rescue-"))
    iso = work / "twofold-rescue.iso"
    rows: list[tuple[str, str]] = []
    if args.cold:
        cold_cache = work / "cold-cache"
        secs, _, stages = timed_build(iso, cold_cache)
        rows.append(("build, cold apt cache", f"{secs:.0f} s ({_stages(stages)})"))
        shutil.rmtree(cold_cache, ignore_errors=True)
    for old in (args.cache / "isos").glob("twofold-rescue-*.iso"):
        old.unlink()  # warm: the .debs stay, the ISO is built again
    secs, size, stages = timed_build(iso, args.cache)
    rows.append(("build, warm apt cache", f"{secs:.0f} s ({_stages(stages)})"))
    secs, _, _ = timed_build(iso, args.cache)
    rows.append(("rebuild, unchanged (cache hit)", f"{secs:.1f} s"))
    rows.append(("ISO size", f"{size / (1 << 20):.0f} MiB ({size:,} bytes); goal <= 250 MB"))
    for fw in args.firmware:
        times = sorted(boot_seconds(iso, fw, "cdrom", work / f"vm-{fw}-{i}")
                       for i in range(args.boots))
        rows.append((f"boot to the guide, {fw} CD (TCG)",
                     f"{times[len(times) // 2]:.1f} s median of {times}; goal <= 40 s"))
    usb = boot_seconds(iso, "bios", "usb", work / "vm-usb")
    rows.append(("boot to the guide, bios USB stick (TCG)", f"{usb:.1f} s"))
    rows.append(("anchor", ANCHOR))
    rows.append(("load average (1, 5, 15 min) at the end",
                 " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    shutil.rmtree(work, ignore_errors=True)


def _stages(stages: list[tuple[str, float]]) -> str:
    return ", ".join(f"{n} {s:.0f} s" for n, s in stages)


if __name__ == "__main__":
    main()
