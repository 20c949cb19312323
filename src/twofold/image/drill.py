"""`image drill`: restore an image to a scratch file, boot it in QEMU and watch each stage
of the boot come (or fail), then keep what was seen in the store. The store and the real
disks are only read; the scratch copy is removed afterwards."""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from twofold.core.clock import Clock
from twofold.core.errors import UsageError
from twofold.core.models import Issue
from twofold.core.progress import Progress
from twofold.fsinfo.blockio import FileReader
from twofold.fsinfo.efiboot import ensure_fallback_loader
from twofold.fsinfo.parttable import PartitionTable, parse_table
from twofold.image.drillprep import Prepared, prepare
from twofold.image.drillrecord import DrillRecord, StageTime, save_record
from twofold.image.manifest import Manifest
from twofold.image.repo import Target, all_manifests, load_manifest, open_objects
from twofold.image.restore import restore
from twofold.vm.qemu import FAIL_PATTERNS, Drive, Vm, VmSpec, find_ovmf, find_qemu

FIRMWARE_STAGE = "firmware found boot code"
KERNEL_STAGE = "kernel started"
ROOT_STAGE = "root file system mounted"
INIT_STAGE = "init came up"
LAST_STAGE = "login prompt or display settled"
STAGES = (FIRMWARE_STAGE, KERNEL_STAGE, ROOT_STAGE, INIT_STAGE, LAST_STAGE)
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
_SEEN = {
    FIRMWARE_STAGE: r"Booting from 0000:7c00|BdsDxe: starting Boot",
    KERNEL_STAGE: r"Linux version \d",
    ROOT_STAGE: r"EXT4-fs \(\S+\): mounted filesystem|VFS: Mounted root|"
                r"XFS \(\S+\): Ending clean mount|BTRFS info \(device \S+\): (enabling|using)",
    LAST_STAGE: r"login: ",
}
KVM_GRACE = 30.0  # seconds for a kernel to start under KVM before trying TCG instead
SETTLE = 5.0  # seconds the screen must stay put (but for a blinking cursor)
SCRATCH_MARGIN = 256 << 20  # bytes a boot may write into the scratch copy


@dataclass
class DrillOptions:
    """How to run a drill."""

    timeout: float = 600.0  # for the boot, after the restore
    accel: str = "auto"
    memory_mb: int = 1024
    workdir: Path | None = None  # where the scratch copy goes (a temp folder inside)
    secure_boot: bool = False  # UEFI with Secure Boot on (Microsoft's keys enrolled)


def firmware_for(table: dict[str, object] | None) -> str:
    """uefi for a GPT disk with an ESP and no BIOS boot partition, else bios."""
    if not table or table.get("kind") != "gpt":
        return "bios"
    parts = table.get("partitions")
    types = {str(p.get("type", "")).upper() for p in parts if isinstance(p, dict)} \
        if isinstance(parts, list) else set()
    return "uefi" if ESP in types and BIOS_BOOT not in types else "bios"


def _pick(target: Target, image: str | None) -> Manifest:
    objects = open_objects(target)
    if image is not None:
        m = load_manifest(objects, image)
        if m.kind != "disk":
            raise UsageError(f"image {m.name} holds one {m.kind}, not a whole disk: only a "
                             "disk (partition table and boot code) can boot",
                             "drill a disk image (twofold image list shows the kind)")
        return m
    found = [m for m in all_manifests(objects) if m.kind == "disk"]
    if not found:
        raise UsageError(f"no disk image in {objects.describe()} to drill",
                         "make one with `twofold image create DISK --to ...`")
    return found[-1]


def _static_check(scratch: Path, table: PartitionTable, firmware: str) -> str:
    """Why firmware cannot find boot code on the restored disk, or ""."""
    if firmware == "bios":
        with open(scratch, "rb") as f:
            mbr = f.read(512)
        if mbr[510:512] != b"\x55\xaa":
            return "the first sector has no boot signature: this disk has no BIOS boot code"
        if not any(mbr[:440]):
            return "the first sector's boot code is blank: this disk has no BIOS boot code"
        return ""
    got = ensure_fallback_loader(str(scratch))
    if got.status in ("present", "added"):
        return ""
    return got.note or "the disk has no EFI system partition with a boot loader"


class _Watch:
    """Stage by stage: what has been seen, and the first failure."""

    def __init__(self, vm: Vm, prep: Prepared, scratch: Path, progress: Progress) -> None:
        self.vm, self.prep, self.scratch, self.progress = vm, prep, scratch, progress
        self.stages = [StageTime(n) for n in STAGES]
        self.failed: str | None = None
        self.reason = ""
        self.shots: list[tuple[float, bytes]] = []  # (seconds, hash of a screenshot)

    def _next(self) -> int:
        return next((i for i, s in enumerate(self.stages) if s.seconds is None), len(STAGES))

    def _seen(self, name: str, text: str) -> str:
        if name == INIT_STAGE:
            return self.prep.marker if self.prep.marker in text else ""
        if name == ROOT_STAGE:
            part = self.prep.mounted(self.scratch)
            if part is not None:
                return f"the superblock of partition {part} shows a new mount"
        if name == LAST_STAGE and self.stages[3].seconds is not None and not \
                re.search(_SEEN[LAST_STAGE], text):
            return self._settled()
        m = re.search(_SEEN[name], text) if name in _SEEN else None
        return m.group(0) if m else ""

    def _settled(self) -> str:
        """The screen shows at most two pictures (a blinking cursor) for SETTLE seconds."""
        png = self.vm.dir / "settle.png"
        if not self.vm.screendump(png):
            return ""
        now = self.vm.elapsed()
        self.shots.append((now, hashlib.sha256(png.read_bytes()).digest()))
        while len(self.shots) > 1 and now - self.shots[1][0] >= SETTLE:
            self.shots.pop(0)  # keep just over SETTLE seconds of pictures
        if now - self.shots[0][0] >= SETTLE and len({h for _, h in self.shots}) <= 2:
            return f"the screen stayed the same for {SETTLE:.0f} s"
        return ""

    def step(self) -> bool:
        """Look once; True when done (passed or failed)."""
        text = self.vm.serial_text() + "\n" + self.vm.firmware_text()
        at = self._next()
        for label, pattern in FAIL_PATTERNS.items():
            m = re.search(pattern, text)
            if m:
                self.failed = STAGES[min(at, len(STAGES) - 1)]
                self.reason = f"{label}: {m.group(0).strip()!r} on the console"
                return True
        seen = {i: self._seen(STAGES[i], text) for i in range(at, len(STAGES))}
        last = max((i for i, e in seen.items() if e), default=None)
        if last is not None:  # a later stage implies the earlier ones
            now = round(self.vm.elapsed(), 1)
            for i in range(at, last + 1):
                self.stages[i].seconds = now
                self.stages[i].evidence = seen[i] or "implied by a later stage"
                self.progress.phase(f"{STAGES[i]}: {now:.1f} s")
        if self._next() == len(STAGES):
            return True
        if not self.vm.running():
            self.failed = STAGES[self._next()]
            self.reason = "the machine stopped (it powered off, rebooted or crashed)"
            return True
        return False

    def timed_out(self, timeout: float) -> None:
        self.failed = STAGES[self._next()]
        self.reason = f"not seen within {timeout:.0f} s"


def _room_for(m: Manifest, workdir: Path | None) -> None:
    """Refuse before any work when the scratch folder cannot hold the restored disk (a
    sparse file: the image's used bytes, plus a margin for what the boot writes)."""
    where = Path(workdir or tempfile.gettempdir())
    if not where.is_dir():
        raise UsageError(f"the scratch folder {where} does not exist",
                         "give an existing folder with --scratch DIR")
    need = m.used_bytes + SCRATCH_MARGIN
    free = shutil.disk_usage(where).free
    if free < need:
        raise UsageError(
            f"the scratch folder {where} has {free / 1e9:.1f} GB free; the drill of "
            f"{m.name} needs about {need / 1e9:.1f} GB there",
            "give a folder on a bigger drive with --scratch DIR")


def _boot(vm: Vm, prep: Prepared, scratch: Path, progress: Progress,
          timeout: float) -> _Watch:
    progress.phase("booting")
    vm.start_probing_kvm([_SEEN[KERNEL_STAGE], *FAIL_PATTERNS.values()],
                         min(KVM_GRACE, timeout))
    watch = _Watch(vm, prep, scratch, progress)
    deadline = time.monotonic() + timeout
    while not watch.step():
        if time.monotonic() >= deadline:
            watch.timed_out(timeout)
            break
        time.sleep(0.5)
    return watch


def drill(target: Target, image: str | None, progress: Progress, clock: Clock,
          opts: DrillOptions | None = None) -> DrillRecord:
    """Restore `image` (the newest disk image when None) to a scratch file, boot it and
    record the result in the store; the record says passed or the stage that failed."""
    opts = opts or DrillOptions()
    started, t0 = clock.now_ns(), time.monotonic()
    m = _pick(target, image)
    firmware = firmware_for(m.table)
    if opts.secure_boot:
        if firmware != "uefi":
            raise UsageError(f"image {m.name} boots through BIOS; Secure Boot is UEFI only",
                             "drill it without --secure-boot")
        firmware = "uefi-secure"
    find_qemu()
    if firmware != "bios":
        find_ovmf(firmware)
    _room_for(m, opts.workdir)
    tmp = Path(tempfile.mkdtemp(prefix="twofold-drill-", dir=opts.workdir))
    try:
        scratch = tmp / "scratch.raw"
        restored = restore(target, m.name, str(scratch), None, progress, clock, readback=False)
        with FileReader(str(scratch)) as reader:
            table = parse_table(reader)
        rec = DrillRecord(m.name, started, False, None, "", firmware, "", [
            StageTime(n) for n in STAGES], restore_seconds=round(restored.seconds, 1))
        if restored.boot_note:
            rec.notes.append(restored.boot_note)
        why = _static_check(scratch, table, firmware)
        png = b""
        if why:
            rec.failed_stage, rec.reason = FIRMWARE_STAGE, why
        else:
            progress.phase("preparing the scratch copy")
            prep = prepare(scratch, table, secrets.token_hex(8))
            rec.notes += prep.notes
            with Vm(VmSpec([Drive(scratch, "nvme")], firmware, opts.memory_mb,
                           accel=opts.accel), tmp / "vm") as vm:
                watch = _boot(vm, prep, scratch, progress, opts.timeout)
                rec.accel, rec.stages = vm.accel, watch.stages
                rec.failed_stage, rec.reason = watch.failed, watch.reason
                rec.boot_seconds = round(vm.elapsed(), 1)
                shot = tmp / "screen.png"
                png = shot.read_bytes() if vm.screendump(shot) else b""
                rec.console_tail = "\n".join(vm.serial_text().splitlines()[-40:])
        rec.passed = rec.failed_stage is None
        if not rec.passed:
            progress.issue(Issue(m.name.encode(), "failed",
                                 f"{rec.failed_stage}: {rec.reason}"))
        rec.seconds = round(time.monotonic() - t0, 1)
        progress.phase("recording the drill")
        save_record(open_objects(target), rec, png or None)
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
