"""Run a headless QEMU PC: disks, CD, USB stick; BIOS, UEFI or UEFI with Secure Boot.

The serial console and the firmware's debug port go to files that can be read while the
machine runs; a QMP socket takes screenshots and powers it off. QEMU dies with us.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from twofold.core.errors import TwofoldError
from twofold.vm.qmp import Qmp, QmpError

OVMF_DIR = Path("/usr/share/OVMF")
#: firmware kind -> (code, template of the variable store)
OVMF_FILES = {
    "uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "uefi-secure": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}
FIRMWARES = ("bios", "uefi", "uefi-secure")
INTERFACES = ("nvme", "virtio", "sata", "usb", "cdrom")
#: Text that means the boot has failed, whatever is being booted.
FAIL_PATTERNS = {
    "grub rescue": r"grub rescue>",
    "kernel panic": r"Kernel panic",
    "emergency shell": r"emergency mode|Give root password for maintenance|"
                       r"\(initramfs\) |You are in emergency mode",
    "secure boot refused": r"Access Denied",
    "no boot loader found": r"No bootable device|Boot failed: not a bootable disk|"
                            r"\bShell> ",
}

_KVM_FAILED: set[str] = set()  # once KVM failed in this process, go straight to TCG


class VmUnavailable(TwofoldError):
    """QEMU or its firmware is not installed, or the machine would not start."""


@dataclass(frozen=True)
class Drive:
    """One disk, CD or stick attached to the machine."""

    path: Path
    interface: str = "nvme"
    fmt: str = "raw"
    readonly: bool = False
    snapshot: bool = False  # writes go to a temporary file QEMU throws away


@dataclass
class VmSpec:
    """What machine to start."""

    drives: list[Drive]
    firmware: str = "bios"
    memory_mb: int = 512
    cpus: int = 2
    accel: str = "auto"  # auto (KVM if it works, else TCG), kvm or tcg
    extra: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    """Which pattern was seen, where (serial or firmware log) and when."""

    name: str
    text: str
    seconds: float


def find_qemu() -> str:
    """The path of qemu-system-x86_64, or a clear error naming the Debian package."""
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise VmUnavailable("QEMU is not installed (qemu-system-x86_64 not found).",
                            "Install the Debian package qemu-system-x86 "
                            "(apt install qemu-system-x86 qemu-utils).")
    return found


def find_ovmf(firmware: str) -> tuple[Path, Path]:
    """The OVMF code and variable template for a UEFI firmware kind."""
    code, varstore = (OVMF_DIR / n for n in OVMF_FILES[firmware])
    if not code.is_file() or not varstore.is_file():
        raise VmUnavailable(f"UEFI firmware not found ({code}).",
                            "Install the Debian package ovmf (apt install ovmf).")
    return code, varstore


def kvm_usable() -> bool:
    """True when /dev/kvm can be opened and KVM has not already failed in this process."""
    if _KVM_FAILED or os.environ.get("TWOFOLD_QEMU_ACCEL") == "tcg":
        return False
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def mark_kvm_failed() -> None:
    """Remember that KVM hung or aborted here, so later machines start under TCG."""
    _KVM_FAILED.add("kvm")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: QEMU never outlives twofold


class Vm:
    """A running QEMU; use as a context manager so it is always stopped."""

    def __init__(self, spec: VmSpec, workdir: Path | None = None) -> None:
        self.spec = spec
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="twofold-vm-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = self.dir / "serial.log"
        self.firmware_log = self.dir / "firmware.log"
        self.qmp_path = self.dir / "qmp.sock"
        self.accel = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._qmp: Qmp | None = None

    # -- starting ---------------------------------------------------------------
    def command(self, accel: str) -> list[str]:
        """The QEMU command line for this machine under `accel` (kvm or tcg)."""
        s = self.spec
        if s.firmware not in FIRMWARES:
            raise ValueError(f"unknown firmware {s.firmware!r}")
        machine = "q35,smm=on" if s.firmware == "uefi-secure" else "q35"
        cmd = [find_qemu(), "-machine", machine, "-accel", accel, "-m", str(s.memory_mb),
               "-smp", str(s.cpus), "-display", "none", "-vga", "std", "-nic", "none",
               "-no-reboot", "-monitor", "none", "-no-user-config",
               "-chardev", f"file,id=ser0,path={self.serial_log}", "-serial", "chardev:ser0",
               "-chardev", f"file,id=dbg0,path={self.firmware_log}",
               "-device", "isa-debugcon,iobase=0x402,chardev=dbg0",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if s.firmware != "bios":
            code, template = find_ovmf(s.firmware)
            varstore = self.dir / "OVMF_VARS.fd"
            if not varstore.exists():
                shutil.copyfile(template, varstore)
            cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={varstore}"]
            if s.firmware == "uefi-secure":
                cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        usb = False
        for i, d in enumerate(s.drives):
            opts = f"file={d.path},if=none,id=d{i},format={d.fmt}"
            opts += ",readonly=on" if d.readonly or d.interface == "cdrom" else ""
            opts += ",snapshot=on" if d.snapshot else ""
            opts += ",media=cdrom" if d.interface == "cdrom" else ""
            cmd += ["-drive", opts]
            boot = f",bootindex={i}"
            if d.interface == "nvme":
                cmd += ["-device", f"nvme,drive=d{i},serial=twofold{i}{boot}"]
            elif d.interface == "virtio":
                cmd += ["-device", f"virtio-blk-pci,drive=d{i}{boot}"]
            elif d.interface == "sata":
                cmd += ["-device", f"ide-hd,drive=d{i},bus=ide.{i}{boot}"]
            elif d.interface == "cdrom":
                cmd += ["-device", f"ide-cd,drive=d{i},bus=ide.{i}{boot}"]
            elif d.interface == "usb":
                if not usb:
                    cmd += ["-device", "qemu-xhci,id=xhci"]
                    usb = True
                cmd += ["-device", f"usb-storage,bus=xhci.0,drive=d{i},removable=on{boot}"]
            else:
                raise ValueError(f"unknown interface {d.interface!r}")
        return cmd + s.extra

    def start(self, accel: str | None = None) -> None:
        """Start QEMU (under `accel`, else KVM when usable, else TCG); logs start empty."""
        self.stop()
        want = accel or self.spec.accel
        self.accel = ("kvm" if kvm_usable() else "tcg") if want == "auto" else want
        for p in (self.serial_log, self.firmware_log, self.qmp_path):
            p.unlink(missing_ok=True)
        self.serial_log.touch()
        self.firmware_log.touch()
        cmd = self.command(self.accel)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "qemu.err", "wb"),  # noqa: SIM115
                                     preexec_fn=_die_with_parent)  # noqa: PLW1509 (prctl only)
        self.started = time.monotonic()

    def start_probing_kvm(self, probe: Sequence[str], grace: float = 30.0) -> Hit | None:
        """Start under KVM where usable; if `probe` text is not seen within `grace`
        seconds (QEMU aborted or the guest hung), start again under TCG.

        Returns the probe hit under KVM, or None when the machine now runs under TCG.
        """
        if self.spec.accel != "auto" or not kvm_usable():
            self.start()
            return None
        self.start("kvm")
        hit = self.wait_for_text({"probe": "|".join(f"(?:{p})" for p in probe)}, grace)
        if hit is not None:
            return hit
        mark_kvm_failed()
        self.start("tcg")
        return None

    # -- watching ---------------------------------------------------------------
    def serial_text(self) -> str:
        """Everything the guest wrote to its serial console so far."""
        return self.serial_log.read_bytes().decode("utf-8", "replace")

    def firmware_text(self) -> str:
        """Everything the firmware wrote to its debug port so far (SeaBIOS, OVMF)."""
        return self.firmware_log.read_bytes().decode("utf-8", "replace")

    def running(self) -> bool:
        """True while QEMU runs."""
        return self.proc is not None and self.proc.poll() is None

    def elapsed(self) -> float:
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started

    def wait_for_text(self, patterns: dict[str, str], timeout: float,
                      poll: float = 0.2) -> Hit | None:
        """Wait until one of the regular expressions (name -> pattern) appears on the
        serial console or the firmware log; None on timeout or when QEMU exits first."""
        compiled = {name: re.compile(p) for name, p in patterns.items()}
        deadline = time.monotonic() + timeout
        while True:
            alive = self.running()
            text = self.serial_text() + "\n" + self.firmware_text()
            for name, rx in compiled.items():
                m = rx.search(text)
                if m:
                    return Hit(name, m.group(0), self.elapsed())
            if not alive or time.monotonic() >= deadline:
                return None
            time.sleep(poll)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for QEMU to exit by itself (the guest powered off); its code or None."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def error_text(self) -> str:
        """What QEMU itself printed on stderr (why it would not start)."""
        p = self.dir / "qemu.err"
        return p.read_text(errors="replace").strip() if p.exists() else ""

    # -- QMP --------------------------------------------------------------------
    def qmp(self) -> Qmp:
        """The QMP connection (opened on first use)."""
        if self._qmp is None:
            deadline = time.monotonic() + 10
            while not self.qmp_path.exists() and self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
            self._qmp = Qmp(self.qmp_path)
        return self._qmp

    def screendump(self, png: Path) -> bool:
        """Save the screen as a PNG; False when the machine is gone or has no screen."""
        if not self.running():
            return False
        try:
            self.qmp().command("screendump", filename=str(png), format="png")
        except (QmpError, OSError):
            return False
        return png.is_file() and png.stat().st_size > 0

    # -- stopping ---------------------------------------------------------------
    def stop(self, grace: float = 5.0) -> None:
        """Power off through QMP, then kill after `grace` seconds; always leaves no QEMU."""
        if self._qmp is not None:
            if self.running():
                with contextlib.suppress(QmpError, OSError):
                    self._qmp.command("quit")
            self._qmp.close()
            self._qmp = None
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(grace if grace > 0 else 0.01)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def kill(self) -> None:
        """Stop at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.stop(grace=0)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
